"""Write docs/results/cross_encoder.json from the files docs/reproduce/cross_encoder.sh wrote.

python docs/reproduce/cross_encoder_table.py RESULTS_DIR OUT.json"""

import json
import sys
from pathlib import Path


def _row(system: str, values: dict) -> list:
    return [system, f"{values['nDCG@10']:.4f}", f"{values['RR@10']:.4f}"]


def main(results: str, out: str) -> None:
    folder = Path(results)
    train = json.loads((folder / "ce-clean-train.json").read_text())["evaluation"]
    rows = [_row("BM25 (bm25s, Lucene k1 0.9 b 0.4)", train["bm25"])]
    epoch1 = folder / "ce-clean-epoch1-dl19.json"
    if epoch1.is_file():
        rows.append(_row("clean cross-encoder after epoch 1 (reported, not selected)",
                         json.loads(epoch1.read_text())["aggregate"]))
    rows.append(_row("clean cross-encoder (2 epochs: the model)", train["reranked"]))
    rows.append(_row("default bi-encoder reranking the same pool (the teacher)",
                     json.loads((folder / "teacher-dl19.json").read_text())["aggregate"]))
    payload = {
        "title": "Clean cross-encoder on msmarco-dl19: BM25 top 100 reranked "
                 f"({train['n_queries']} queries)",
        "command": "docs/reproduce/cross_encoder.sh",
        "runtime": "about 90 min on 2 CPU cores shared with other jobs "
                   "(training 77 min at load 20-34)",
        "columns": ["system", "nDCG@10", "RR@10"],
        "rows": rows,
        "notes": "Trained on the 1,000 MS MARCO training triples only (negatives from their "
                 "own 2,000 passages: teacher-ranked, BM25, random, plus each triple's "
                 "negative); no msmarco-dl19, scifact or nfcorpus file is read in training. "
                 "Pairs cut to 128 tokens.",
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
