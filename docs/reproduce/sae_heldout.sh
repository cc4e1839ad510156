#!/usr/bin/env bash
# SAE fidelity with the test queries held out, next to an in-sample SAE of the same recipe
# (docs/results/sae_heldout.json). Run from the repository root; DATA defaults to
# ../shared/data. TopK k=64, 8x (3,072 latents), lr 2e-3, batch 256, 12 epochs, balanced.
#   A. scifact alone at the model's 256 tokens;
#   B. scifact + nfcorpus, documents cut at 128 tokens (--max-length 128).
# Held out: every document + the train/dev queries (scifact train 807, nfcorpus train+dev
# 2,910; train queries repeating a test query's text dropped). In-sample: the same + the
# test queries. Times on 2 CPU cores shared by ~10 other jobs (about 10x slower than idle).
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
S=(-d "$DATA/scifact"); N=(-d "$DATA/nfcorpus")
R=(--expansion 8 --lr 2e-3 --batch-size 256 --epochs 12 --balance --k 64)
# A: ~20 min with scifact in the embedding cache at 256 tokens
irlens sae train "${S[@]}" -o "$OUT/A/held" --queries train,dev "${R[@]}"
irlens sae train "${S[@]}" -o "$OUT/A/in" --queries train,dev,test "${R[@]}"
irlens sae eval --sae "$OUT/A/held" "${S[@]}" -o "$OUT/A/eval-held" --json > "$OUT/A/eval-held.json"
irlens sae eval --sae "$OUT/A/in" "${S[@]}" -o "$OUT/A/eval-in" --json > "$OUT/A/eval-in.json"
# B: ~25 min with both corpora in the embedding cache at 128 tokens (encoding them: ~1 h)
irlens sae train "${S[@]}" "${N[@]}" -o "$OUT/B/held" --queries train,dev "${R[@]}" --max-length 128
irlens sae train "${S[@]}" "${N[@]}" -o "$OUT/B/in" --queries train,dev,test "${R[@]}" --max-length 128
irlens sae eval --sae "$OUT/B/held" "${S[@]}" "${N[@]}" -o "$OUT/B/eval-held" --max-length 128 \
  --json > "$OUT/B/eval-held.json"
irlens sae eval --sae "$OUT/B/in" "${S[@]}" "${N[@]}" -o "$OUT/B/eval-in" --max-length 128 \
  --json > "$OUT/B/eval-in.json"
python docs/reproduce/sae_tables.py sae_heldout \
  --pair "scifact, 256 tokens" "$OUT/A/eval-held.json" "$OUT/A/eval-in.json" \
  --pair "scifact + nfcorpus, 128 tokens" "$OUT/B/eval-held.json" "$OUT/B/eval-in.json" \
  --out docs/results/sae_heldout.json --runtime "about 45 min on 2 busy CPU cores (encoding not counted)"
