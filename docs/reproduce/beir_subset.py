"""Write a BEIR folder holding `load_dataset(SRC, split, max_docs=N)`'s documents (its
judged documents, then others in file order up to N) with every query and judgement of
SRC, so that several commands can share one smaller corpus:

    python docs/reproduce/beir_subset.py ../shared/data/arguana runs/data/arguana 2000

With a fourth argument ``first``, the first N documents of the file instead, and only
the judgements (and their queries) whose documents are among them; with ``queries Q``,
the first Q judged queries only, their judged documents, then others up to N (N = 1:
judged documents only).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from irlens.data import load_dataset


def main(src: str, dst: str, max_docs: int, mode: str = "judged", *extra: str,
         split: str = "test") -> None:
    max_queries = int(extra[0]) if mode == "queries" else None
    data = load_dataset(src, split, max_docs=None if mode == "first" else max_docs,
                        max_queries=max_queries)
    out = Path(dst)
    if mode == "first":
        data.corpus = dict(list(data.corpus.items())[:max_docs])
        data.qrels = {q: {d: g for d, g in judged.items() if d in data.corpus}
                      for q, judged in data.qrels.items()}
        data.qrels = {q: judged for q, judged in data.qrels.items() if judged}
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    tmp = out / "corpus.jsonl.tmp"
    tmp.write_text("".join(json.dumps({"_id": d, "title": doc.title, "text": doc.text}) + "\n"
                           for d, doc in data.corpus.items()))
    tmp.replace(out / "corpus.jsonl")
    shutil.copy(Path(src) / "queries.jsonl", out / "queries.jsonl")
    if mode in ("first", "queries"):
        (out / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t{g}\n" for q, judged in data.qrels.items() for d, g in judged.items()))
    else:
        for qrels in (Path(src) / "qrels").glob("*.tsv"):
            shutil.copy(qrels, out / "qrels" / qrels.name)
    print(f"{out}: {len(data.corpus)} documents", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
