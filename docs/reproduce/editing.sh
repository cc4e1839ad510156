#!/usr/bin/env bash
# The editing table of docs/editing.md: 50 edit requests per kind (insert, remove) on the
# FULL scifact (5,183 documents, 300 judged test queries) and nfcorpus (3,633 documents,
# 323 judged test queries) corpora, the default model, texts cut to 128 tokens, the last
# layer (5). Each run is resumable (rerun the script to continue).
# Writes docs/results/editing.json.
set -euo pipefail
OUT=${OUT:-results/edit}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run() {  # DATASET EDITOR KIND [N]
  irlens edit --data ../shared/data/$1 --editor $2 --kind $3 --n ${4:-50} --layer 5 \
      --max-length 128 --device cpu --out $OUT/$1-$2-$3
}
# rank-one (ROME): about 15-25 min per run on 2 CPU cores (a shared machine)
for d in scifact nfcorpus; do for k in insert remove; do run $d rome $k; done; done
# FT-L and knowledge neurons (fewer requests: see docs/editing.md)
for d in scifact nfcorpus; do for k in insert remove; do
  run $d ft $k ${FT_N:-20}
  run $d kn $k ${KN_N:-10}
done; done
python docs/editing_tables.py $OUT --json docs/results/editing.json
