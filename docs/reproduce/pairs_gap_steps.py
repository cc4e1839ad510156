"""docs/pairs-patching.md "Completeness against steps": the integrated-Jacobian pair
matrix's completeness gap and time at 8, 16 and 32 Gauss-Legendre steps.

    python docs/reproduce/pairs_gap_steps.py ../shared/data/scifact   # writes the results file

The default model on the first scifact pair of ``sample_pairs(seed=0)``, documents cut to
32 word pieces, one thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import write  # noqa: E402


def main(data: str) -> None:
    from irlens import load_model
    from irlens.attribution.pairs import IntegratedJacobians
    from irlens.data import load_dataset, sample_pairs

    torch.set_num_threads(1)
    model = load_model("default", device="cpu")
    dataset = load_dataset(data)
    [(qid, doc_id)] = sample_pairs(dataset, 1, seed=0)
    query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
    rows, shape = [], None
    for steps in (8, 16, 32):
        started = time.perf_counter()
        [r] = IntegratedJacobians(model, n_steps=steps, max_doc_tokens=32).attribute(query, doc)
        seconds = time.perf_counter() - started
        shape = tuple(r.matrix.shape)
        gap = 100 * abs(r.relative_gap)
        rows.append([steps, f"{gap:.2g}%" if gap < 0.1 else f"{gap:.2f}%", f"{seconds:.0f}"])
        print(steps, rows[-1], file=sys.stderr)
    write("pairs_gap_steps", ["steps", "completeness gap", "seconds"], rows,
          notes=f"scifact query {qid}, document {doc_id}: {shape[0]} x {shape[1]} tokens.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/scifact")
