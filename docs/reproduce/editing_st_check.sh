#!/usr/bin/env bash
# Saved rank-one edits in plain sentence-transformers: the first two insert requests and the
# first removal of the editing table (scifact, seed 0, 128 tokens, layer 5). About 30 min
# on 2 CPU cores shared with other jobs. Writes docs/results/editing_st_check.json.
set -euo pipefail
OUT=${OUT:-results/edit}
mkdir -p $OUT
python docs/reproduce/editing_st_sample.py ../shared/data/scifact insert 2 $OUT/st-sample-scifact-insert.json
python docs/reproduce/editing_st_sample.py ../shared/data/scifact remove 1 $OUT/st-sample-scifact-remove.json
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = []
for kind in ("insert", "remove"):
    for r in json.loads((Path(sys.argv[1]) / f"st-sample-scifact-{kind}.json").read_text()):
        rows.append([kind, r["query_id"], r["doc_id"], r["rank_before_full_corpus"],
                     r["irlens_rank_among_101"], r["st_rank_among_101"],
                     r["max_abs_vector_difference"]])
Path("docs/results/editing_st_check.json").write_text(json.dumps({
    "title": "Saved rank-one edits checked with sentence-transformers' own encode (scifact)",
    "command": "docs/reproduce/editing_st_check.sh",
    "runtime": "about 30 min on 2 CPU cores shared with other jobs",
    "columns": ["kind", "query", "document", "full-corpus rank before",
                "irlens rank among the query's top 100 + the document",
                "sentence-transformers rank among them", "largest vector difference"],
    "rows": rows,
    "notes": "Edits fitted on the request's own rivals (as a bench-less --save does); "
             "vectors by irlens with the edit applied vs SentenceTransformer.encode on the "
             "saved folder, 128 tokens."}, indent=2) + "\n")
PY
