#!/usr/bin/env bash
# SAE fidelity on a collection left out of training (docs/results/sae_loco.json), k=64, the
# recipe of sae_heldout.sh part B (128 tokens): an SAE trained on nfcorpus alone (documents
# + train/dev queries) evaluated on scifact, and one trained on scifact (documents + train
# queries) evaluated on nfcorpus; next to part B's SAE, which saw both collections'
# documents. Run sae_heldout.sh first. ~25 min on 2 busy CPU cores.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
R=(--expansion 8 --lr 2e-3 --batch-size 256 --epochs 12 --balance --k 64 --max-length 128)
irlens sae train -d "$DATA/nfcorpus" -o "$OUT/B/loco-scifact" --queries train,dev "${R[@]}"
irlens sae train -d "$DATA/scifact" -o "$OUT/B/loco-nfcorpus" --queries train,dev "${R[@]}"
irlens sae eval --sae "$OUT/B/loco-scifact" -d "$DATA/scifact" -o "$OUT/B/eval-loco-scifact" \
  --max-length 128 --json > "$OUT/B/eval-loco-scifact.json"
irlens sae eval --sae "$OUT/B/loco-nfcorpus" -d "$DATA/nfcorpus" -o "$OUT/B/eval-loco-nfcorpus" \
  --max-length 128 --json > "$OUT/B/eval-loco-nfcorpus.json"
python docs/reproduce/sae_tables.py sae_loco --held "$OUT/B/eval-held.json" \
  --loco "$OUT/B/eval-loco-scifact.json" "$OUT/B/eval-loco-nfcorpus.json" \
  --out docs/results/sae_loco.json --runtime "about 25 min on 2 busy CPU cores"
