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
# rank-one 50 requests per kind, then knowledge neurons 20 and FT-L 10 per kind (fewer: see
# docs/editing.md). Measured here on 2 CPU cores shared with ~30 other busy threads:
# scifact's corpus encode about 15 min, its layer-5 states about 75 min (about 5 GB of
# memory), then 0.5-4 min per rank-one edit; expect several hours for the whole script
# on such a machine (far less on a quiet one). nfcorpus (3,633 documents) about 0.7x that.
# st:KIND:1 checks the first rank-one edit of KIND with sentence-transformers' own encode over the
# whole corpus (not yet reached in this session; the sampled check is editing_st_check.sh)
# (save the edited model, encode the whole corpus: about 15 min each here).
python docs/reproduce/editing_runs.py ../shared/data/scifact $OUT rome:insert:50 rome:remove:50 \
    st:insert:1 st:remove:1 kn:insert:20 kn:remove:20 ft:insert:10 ft:remove:10
python docs/reproduce/editing_runs.py ../shared/data/nfcorpus $OUT rome:insert:50 rome:remove:50 \
    kn:insert:20 kn:remove:20 ft:insert:10 ft:remove:10
python docs/editing_tables.py $OUT --json docs/results/editing.json
