"""Deletion faithfulness of token pairs on real data, resumable one pair at a time.

For each sampled relevant pair and each query word, delete from the document the word
the query word matched most (integrated Jacobians, Moeller, Nikolaev & Pado, EMNLP 2023),
the document's top word by per-token Integrated Gradients (Sundararajan et al., ICML
2017), or a random word, and record the drop of the score
(:func:`irlens.attribution.pairs_faithfulness.pair_deletion_table`).

Each finished pair is an artefact in an :class:`irlens.artifacts.Store` (config, model and
data fingerprints), so a rerun skips finished pairs and a changed setting is refused.

    python docs/pairs_faithfulness.py run scifact 50 --out /work/results/pairs2/deletion
    python docs/pairs_faithfulness.py report /work/results/pairs2/deletion \
        --old /work/results/pairs/deletion-n.csv

``run`` writes ``<out>/<dataset>/`` (the store) and ``<out>/<dataset>.csv`` (all rows so
far); ``report`` prints the tables (means with 95% t intervals over pairs, paired tests)
and, with ``--old``, compares the first pairs with an earlier run's rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume

DATA = Path(os.environ.get("IRLENS_DATA", "../shared/data"))  # BEIR folders
CHOICES = ("pairs", "ig", "random")


@dataclass(repr=False)
class DeletionRows(Artifact):
    """One pair's deletion rows (query word x choice) and its completeness gap."""

    kind: ClassVar[str] = "pair-deletion-rows"
    records: list[dict[str, Any]]
    relative_gap: float
    seconds: float
    manifest: Manifest = field(default_factory=lambda: Manifest("pair-deletion-rows"))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)

    def summary(self) -> str:
        return f"{len(self.records)} rows, gap {self.relative_gap:.1%}"


def run(name: str, n: int, out: Path, steps: int, max_doc_tokens: int) -> pd.DataFrame:
    """Score the first ``n`` pairs of ``sample_pairs(seed=0)``; finished pairs are kept."""
    import torch

    from irlens.attribution.pairs import IntegratedJacobians
    from irlens.attribution.pairs_faithfulness import pair_deletion_table
    from irlens.data import load_dataset, sample_pairs
    from irlens.models import load_model

    torch.set_num_threads(1)
    min_relevance = 2 if "dl19" in name or "dl20" in name else 1
    ds = load_dataset(DATA / name)
    model = load_model("default", device="cpu")
    pairs = sample_pairs(ds, n, seed=0, min_relevance=min_relevance)
    # n is not in the config: 50 pairs extend a 10-pair run (sample_pairs keeps the prefix)
    config = {"steps": steps, "max_doc_tokens": max_doc_tokens, "seed": 0,
              "min_relevance": min_relevance, "rule": "gauss-legendre"}
    store = Store(out / name, make_manifest("pair-deletion", config, model=model, data=ds))
    method = IntegratedJacobians(model, n_steps=steps, max_doc_tokens=max_doc_tokens)

    def job(k: int, qid: str, doc_id: str):
        def go() -> DeletionRows:
            t = time.perf_counter()
            q, d = ds.queries[qid], ds.corpus[doc_id].contents
            [r] = method.attribute([q], [d])
            f = pair_deletion_table(model, [q], [d], n_steps=steps, pairs=[r], first_pair=k)
            f["qid"], f["doc_id"] = qid, doc_id
            seconds = time.perf_counter() - t
            print(f"{name} pair {k}: {seconds:.0f}s, gap {r.relative_gap:.1%}",
                  file=sys.stderr, flush=True)
            return DeletionRows(f.to_dict("records"), float(r.relative_gap), seconds,
                                make_manifest("pair-deletion-rows", config, model=model,
                                              data=ds))
        return go

    jobs = {f"{k:04d}": job(k, qid, doc_id) for k, (qid, doc_id) in enumerate(pairs)}
    done = resume(store, jobs, DeletionRows, progress=True, desc=f"deletion {name}")
    frame = pd.concat([r.to_frame().assign(relative_gap=r.relative_gap, seconds=r.seconds)
                       for r in done.values()], ignore_index=True)
    frame["dataset"] = name
    tmp = out / f".{name}.csv.tmp"
    frame.to_csv(tmp, index=False)
    tmp.replace(out / f"{name}.csv")
    return frame


def finished_frame(folder: Path, name: str) -> pd.DataFrame:
    """All pairs finished so far in ``folder/name`` (also while ``run`` is going)."""
    frames = []
    jobs = folder / name / "jobs"
    for job in sorted(jobs.iterdir()) if jobs.is_dir() else []:
        if job.name.startswith("."):  # a job being written
            continue
        r = DeletionRows.load(job)
        frames.append(r.to_frame().assign(relative_gap=r.relative_gap, seconds=r.seconds))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ci(values: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    mean = float(np.mean(values))
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, (hi - lo) / 2


def report(frame: pd.DataFrame, label: str) -> str:
    """Per choice: the drop over query words (mean ± s.e., share > 0), the mean of the
    per-pair mean drops with a 95% t interval; then paired tests over pairs."""
    from scipy import stats

    per_pair = frame.groupby(["pair", "choice"])["drop"].mean().unstack("choice")
    n_pairs, n_words = len(per_pair), int((frame["choice"] == "pairs").sum())
    lines = [f"### {label}: {n_pairs} pairs ({n_words} query words)", "",
             "| deleted word | drop over query words (mean ± s.e.) | share > 0 "
             "| mean of per-pair means (95% t CI) |", "|---|---:|---:|---:|"]
    for c in CHOICES:
        d = frame.loc[frame["choice"] == c, "drop"].to_numpy()
        m, h = _ci(per_pair[c].to_numpy())
        lines.append(f"| {c} | {d.mean():.3f} ± {stats.sem(d):.3f} | {np.mean(d > 0):.0%} "
                     f"| {m:.3f} [{m - h:.3f}, {m + h:.3f}] |")
    lines += ["", "| paired over pairs | mean difference (95% t CI) | t-test p "
              "| Wilcoxon p | pairs where the first is larger |", "|---|---:|---:|---:|---:|"]
    for other in ("ig", "random"):
        diff = (per_pair["pairs"] - per_pair[other]).to_numpy()
        m, h = _ci(diff)
        t = stats.ttest_rel(per_pair["pairs"], per_pair[other])
        w = stats.wilcoxon(per_pair["pairs"], per_pair[other])
        lines.append(f"| pairs - {other} | {m:+.3f} [{m - h:+.3f}, {m + h:+.3f}] "
                     f"| {t.pvalue:.2g} | {w.pvalue:.2g} | {np.mean(diff > 0):.0%} |")
    gaps = frame.groupby("pair")["relative_gap"].first()
    secs = frame.groupby("pair")["seconds"].first()
    lines += ["", f"Completeness gap: median {gaps.median():.1%}, max {gaps.max():.1%}; "
              f"seconds per pair: median {secs.median():.0f}, max {secs.max():.0f}.", ""]
    return "\n".join(lines)


def compare_old(frame: pd.DataFrame, old: pd.DataFrame, name: str) -> str:
    """Do the first pairs reproduce an earlier run's words and drops?"""
    old = old[old["dataset"] == name]
    new = frame[frame["pair"].isin(set(old["pair"]))]
    keys = ["pair", "query_word", "choice"]
    old = old.assign(k=old.groupby(keys).cumcount())
    new = new.assign(k=new.groupby(keys).cumcount())
    both = old.merge(new, on=[*keys, "k"], suffixes=("_old", "_new"))
    if len(both) == 0:
        return f"{name}: no rows in common with the old run"
    same = np.mean(both["word_old"] == both["word_new"])
    diff = np.abs(both["drop_old"] - both["drop_new"]).max()
    return (f"{name}: {len(both)} of {len(old)} old rows matched; same word in {same:.0%}, "
            f"largest drop difference {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--max-doc-tokens", type=int, default=24)
    r = sub.add_parser("report")
    r.add_argument("out", type=Path)
    r.add_argument("--old", type=Path)
    a = parser.parse_args()
    if a.cmd == "run":
        run(a.dataset, a.n, a.out, a.steps, a.max_doc_tokens)
        return
    old = pd.read_csv(a.old) if a.old else None
    for name in ("scifact", "msmarco-dl19"):
        frame = finished_frame(a.out, name)
        if frame.empty:
            continue
        print(report(frame, name))
        if old is not None:
            print(compare_old(frame, old, name) + "\n")


if __name__ == "__main__":
    main()
