#!/usr/bin/env bash
# SAE fidelity on a collection left out of training, k=64 (docs/results/sae_loco.json): for
# each of the four collections, an SAE trained on the other three (documents + train/dev
# queries, sae_heldout.sh's recipe and corpora), evaluated on the left-out one's test
# queries. Run sae_heldout.sh first (its subsets, encodings and eval-held.json). Run from the
# repository root; DATA defaults to ../shared/data.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
declare -A PATHS=([scifact]="$DATA/scifact" [nfcorpus]="$DATA/nfcorpus"
                  [arguana]="$OUT/data/arguana" [msmarco-dl19]="$OUT/data/msmarco-dl19")
ALL=(scifact nfcorpus arguana msmarco-dl19)
RECIPE=(--expansion 8 --lr 2e-3 --batch-size 256 --epochs 12 --balance)
for c in "${ALL[@]}"; do  # ~5 min each: 3 min training, 2 min evaluation
  D=()
  for d in "${ALL[@]}"; do if [ "$d" != "$c" ]; then D+=(-d "${PATHS[$d]}"); fi; done
  irlens sae train "${D[@]}" -o "$OUT/loco-$c" --queries train,dev --k 64 "${RECIPE[@]}"
  irlens sae eval --sae "$OUT/loco-$c" -d "${PATHS[$c]}" -o "$OUT/eval-loco-$c" --json \
    > "$OUT/eval-loco-$c.json"
done
python docs/reproduce/sae_tables.py sae_loco --held "$OUT/eval-held.json" \
  --loco "$OUT"/eval-loco-{scifact,nfcorpus,arguana,msmarco-dl19}.json \
  --out docs/results/sae_loco.json --runtime "about 20 min on 2 CPU cores"
