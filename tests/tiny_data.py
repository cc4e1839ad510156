"""A tiny BEIR folder written on demand, for tests that need data they can break."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

CORPUS = {
    "d1": ("Cats", "cats are small carnivores that eat mice and fish"),
    "d2": ("Dogs", "dogs are loyal animals that eat meat and bones"),
    "d3": ("", "the stock market fell sharply on monday morning"),
    "d4": ("Fish", "salmon swim upstream to spawn in cold rivers"),
    "d5": ("Mice", "mice eat grain and seeds and hide from cats"),
    "d6": ("Weather", "heavy rain and strong wind are expected tomorrow"),
}
QUERIES = {
    "q1": "what do cats eat",
    "q2": "where do salmon spawn",
    "q3": "stock market news",
    "q9": "a query judged only in train",
}
QRELS = {
    "test": [("q1", "d1", 2), ("q1", "d5", 1), ("q1", "d2", 0), ("q2", "d4", 1), ("q3", "d3", 1)],
    "train": [("q9", "d6", 1)],
}


def write_beir(folder: Path, gz: bool = False) -> Path:
    """Write :data:`CORPUS`, :data:`QUERIES` and :data:`QRELS` in the BEIR layout."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = "".join(
        json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n"
        for doc_id, (title, text) in CORPUS.items()
    )
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt") as fh:
            fh.write(corpus)
    else:
        (folder / "corpus.jsonl").write_text(corpus)
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in QUERIES.items())
    )
    for split, rows in QRELS.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder
