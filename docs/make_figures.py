"""Regenerate the two README figures under docs/ (small PNGs, committed).

- ``docs/explain.png``: the ``irlens explain`` page of a real scifact pair with the
  default model (IG, the document side with the query fixed, ``[MASK]`` baseline, the
  baseline's percentile among the query's scores against 100 scifact documents), rendered
  in headless Chromium (playwright driving the system browser).
- ``docs/pruning.png``: the pruning curve of the default bi-encoder: relevance neurons
  found on scifact (NIG, Vast et al., ICTIR 2024), pruned at several p against random
  units, reranking each query's BM25 top 20 (a small run; its folders under
  ``results/figures`` are resumed if present).

Usage: ``python docs/make_figures.py [--data ../shared/data] [--only explain|pruning]``.
About 10 minutes on two CPU cores; everything runs on the CPU, one thread.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
CHROMIUM = "/usr/bin/chromium"


def explain_figure(data: Path, out: Path) -> Path:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from irlens import load_model
    from irlens.attribution import make_method, reference
    from irlens.attribution.html import save_html
    from irlens.data import load_dataset, sample_pairs

    model = load_model("default", device="cpu")
    dataset = load_dataset(data / "scifact")
    [(qid, doc_id)] = sample_pairs(dataset, 1, seed=0)
    query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
    method = make_method("ig", model, n_steps=24, target="doc", max_doc_tokens=96)
    [result] = method.attribute(query, doc)
    scores = reference.candidate_scores(model, result.query,
                                        reference.corpus_sample(dataset, 100), None, 96)
    pct = {"baseline": reference.score_percentile(result.baseline_score, scores),
           "score": reference.score_percentile(result.score, scores), "n_docs": len(scores),
           "corpus": "scifact"}
    page = save_html([result], REPO / "results" / "figures" / "explain.html",
                     title=f"irlens explain: scifact query {qid}, document {doc_id}",
                     percentiles=[pct])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 600})
            tab.goto(page.as_uri())
            png = tab.screenshot(full_page=True)
        finally:
            browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.quantize(colors=256)  # a small file: flat colours, text
    image.save(out, optimize=True)
    print(f"explain: score {result.score:.4f}, baseline {result.baseline_score:.4f} "
          f"({pct['baseline']:.1f}th percentile; the pair {pct['score']:.1f}th), gap "
          f"{result.relative_gap:.2%} -> {out}", file=sys.stderr)
    return out


def pruning_figure(data: Path, out: Path) -> Path:
    from matplotlib.figure import Figure

    from irlens import load_model
    from irlens.neurons import PruningConfig, evaluate_pruning, run_study
    from irlens.neurons.study import StudyConfig

    model = load_model("default", device="cpu")
    work = REPO / "results" / "figures"
    study = run_study(model, data / "scifact", work / "neurons-scifact",
                      StudyConfig(n_triplets=8, n_steps=8, max_length=128, shard_size=4),
                      progress=True)
    config = PruningConfig(ps=(0.5, 1.0, 2.0, 5.0), seeds=3, layer_p=None, pool="bm25",
                           depth=20, max_length=128, max_queries=30, metrics=("nDCG@10",))
    result = evaluate_pruning(model, data / "scifact", study, config,
                              out_dir=work / "pruning", progress=True)
    summary = result.summary()
    curve = summary[summary["experiment"] == "curve"].sort_values("p")
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.subplots()
    metric = "nDCG@10"
    ax.axhline(curve[f"{metric} intact"].iloc[0], ls="--", c="gray", label="intact")
    ax.plot(curve["p"], curve[f"{metric} relevance"], "o-", c="tab:red",
            label="relevance neurons")
    mean, std = curve[f"{metric} random"], curve[f"{metric} random std"].fillna(0)
    ax.plot(curve["p"], mean, "s-", c="tab:blue", label="random neurons (3 seeds)")
    ax.fill_between(curve["p"], mean - std, mean + std, color="tab:blue", alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(curve["p"].to_numpy(), [f"{v:g}" for v in curve["p"]])
    ax.minorticks_off()
    ax.set_xlabel("FFN units pruned (%)")
    ax.set_ylabel(f"{metric} (scifact, 30 queries)")
    ax.set_title("all-MiniLM-L6-v2: pruning relevance neurons", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    for _, row in curve.iterrows():
        print(f"p={row['p']:g}%: relevance {row[f'{metric} relevance']:.4f}, random "
              f"{row[f'{metric} random']:.4f}, intact {row[f'{metric} intact']:.4f}, "
              f"excess {row[f'{metric} excess']:+.4f} [{row[f'{metric} excess lo']:+.4f}, "
              f"{row[f'{metric} excess hi']:+.4f}] {row[f'{metric} verdict']}",
              file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--only", choices=["explain", "pruning"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    if args.only in (None, "explain"):
        explain_figure(args.data, DOCS / "explain.png")
    if args.only in (None, "pruning"):
        pruning_figure(args.data, DOCS / "pruning.png")


if __name__ == "__main__":
    main()
