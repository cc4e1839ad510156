#!/usr/bin/env bash
# The editing table of docs/editing.md: edit requests on the FULL scifact (5,183 documents,
# 300 judged test queries) and nfcorpus (3,633 documents, 323 judged test queries) corpora,
# the default model, texts cut to 128 tokens, the last layer (5), requests drawn with seed 0.
# Each run equals `irlens edit --data DATA --editor E --kind K --n N --layer 5
# --max-length 128 --out OUT/DATASET-E-K` (same function, same resumable folder); the
# driver runs a dataset's runs in one process so the corpus's layer states are computed
# once. Rerun to resume. Writes docs/results/editing.json.
set -euo pipefail
OUT=${OUT:-results/edit}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# rank-one, 50 requests per kind: about 40 min per dataset on 2 shared CPU cores (the corpus
# encode and the layer-5 states take most of it; about 10 s per edit after that)
python docs/reproduce/editing_runs.py ../shared/data/scifact $OUT rome:insert:50 rome:remove:50
python docs/reproduce/editing_runs.py ../shared/data/nfcorpus $OUT rome:insert:50 rome:remove:50
# FT-L and knowledge neurons re-run the whole last layer (FT-L) or all six (knowledge
# neurons' attribution) per edit on the full corpus: fewer requests (see docs/editing.md)
python docs/reproduce/editing_runs.py ../shared/data/scifact $OUT ft:insert:${FT_N:-10} \
    ft:remove:${FT_N:-10}
python docs/editing_tables.py $OUT --json docs/results/editing.json
# the saved models' ranks in plain sentence-transformers (about 5 min per edit)
python docs/reproduce/editing_st_check.py ../shared/data/scifact insert 3 $OUT/st-check-insert.json
python docs/reproduce/editing_st_check.py ../shared/data/scifact remove 2 $OUT/st-check-remove.json
