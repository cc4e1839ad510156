#!/usr/bin/env bash
# SAE fidelity with the test queries held out, next to an in-sample SAE of the same recipe
# (docs/results/sae_heldout.json). Run from the repository root; DATA defaults to
# ../shared/data. Corpora: scifact (5,183 documents, 300 test queries) and nfcorpus (3,633,
# 323) whole; arguana cut to its first 300 test queries, their judged documents and others up
# to 1,500, and the msmarco-dl19 pool to its first 15 queries and their 3,837 judged passages
# (beir_subset.py; the CPU time for the whole pools was not there), the same for training
# and evaluation.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
python docs/reproduce/beir_subset.py "$DATA/arguana" "$OUT/data/arguana" 1500 queries 300
python docs/reproduce/beir_subset.py "$DATA/msmarco-dl19" "$OUT/data/msmarco-dl19" 1 queries 15
D=(-d "$DATA/scifact" -d "$DATA/nfcorpus" -d "$OUT/data/arguana" -d "$OUT/data/msmarco-dl19")
RECIPE=(--expansion 8 --lr 2e-3 --batch-size 256 --epochs 12 --balance)
# 0. encode the four corpora (14,153 documents) once into the embedding cache
#    (~/.cache/irlens): about 60 min on 2 busy CPU cores, seconds when cached
for d in "$DATA/scifact" "$DATA/nfcorpus" "$OUT/data/arguana" "$OUT/data/msmarco-dl19"; do
  irlens evaluate --model default --data "$d" > /dev/null
done
# 1. held out: documents + train/dev queries (scifact train, nfcorpus train+dev; arguana and
#    dl19 have none), training queries whose text repeats a test query dropped: ~10 min
irlens sae train "${D[@]}" -o "$OUT/held" --queries train,dev --k 64,32,16 "${RECIPE[@]}" \
  --json > "$OUT/held-train.json"
# 2. in-sample: the same plus every test query: ~10 min
irlens sae train "${D[@]}" -o "$OUT/insample" --queries train,dev,test --k 64,32,16 \
  "${RECIPE[@]}" --json > "$OUT/insample-train.json"
# 3. fidelity on the test queries of the four collections: ~5 min each
irlens sae eval --sae "$OUT/held" "${D[@]}" -o "$OUT/eval-held" --json > "$OUT/eval-held.json"
irlens sae eval --sae "$OUT/insample" "${D[@]}" -o "$OUT/eval-insample" --json \
  > "$OUT/eval-insample.json"
python docs/reproduce/sae_tables.py sae_heldout --held "$OUT/eval-held.json" \
  --insample "$OUT/eval-insample.json" --out docs/results/sae_heldout.json \
  --runtime "about 35 min on 2 CPU cores once the corpora are encoded (70 min more if not)"
