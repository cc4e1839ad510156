"""docs/studies-cli.md "Token attribution: what the default explains": where each
explanation baseline scores among the query's scores against 300 random scifact documents.

    python docs/reproduce/explain_baselines.py ../shared/data/scifact   # writes the results file

8 relevant pairs (``sample_pairs(seed=0)``), default model, documents cut to 128 tokens;
IG with 2 points (the baseline's score does not depend on the step count).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import write  # noqa: E402

CONFIGS = [("doc (new default)", "doc", "mask"), ("doc", "doc", "pad"), ("doc", "doc", "zero"),
           ("doc", "doc", "text:the"), ("both (old default)", "both", "mask"),
           ("both", "both", "pad")]


def main(data: str) -> None:
    from irlens import load_model
    from irlens.attribution import make_method, reference
    from irlens.data import load_dataset, sample_pairs

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # 2-point IG warns of its gap; only the baseline is read
    model = load_model("default", device="cpu")
    dataset = load_dataset(data)
    pairs = sample_pairs(dataset, 8, seed=0)
    sample = reference.corpus_sample(dataset, 300)
    queries = {qid: dataset.queries[qid] for qid, _ in pairs}
    others = {qid: reference.candidate_scores(model, q, sample, None, 128)  # per query, once
              for qid, q in queries.items()}
    rows, real = [], []
    for label, target, baseline in CONFIGS:
        method = make_method("ig", model, n_steps=2, target=target, baseline=baseline,
                             max_doc_tokens=128)
        scores, bases, pcts = [], [], []
        for qid, doc_id in pairs:
            [r] = method.attribute(queries[qid], dataset.corpus[doc_id].contents)
            scores.append(r.score)
            bases.append(r.baseline_score)
            pcts.append(reference.score_percentile(r.baseline_score, others[qid]))
            if len(real) < len(pairs):
                real.append(reference.score_percentile(r.score, others[qid]))
        lo, hi = min(pcts), max(pcts)
        spread = f"{lo:.0f}-{hi:.0f}" if lo == hi else f"{lo:.1f}-{hi:.1f}"
        rows.append([label, baseline, f"{np.mean(scores):.3f}", f"{np.mean(bases):.3f}",
                     f"{np.mean(pcts):.1f} ({spread})"])
    write("explain_baselines", ["target", "baseline", "mean pair score", "mean baseline score",
                                "baseline percentile (mean, min-max)"], rows,
          notes=f"The real pairs sit at the {np.mean(real):.1f}th percentile on average.")
    print(f"real pairs: mean percentile {np.mean(real):.1f}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/scifact")
