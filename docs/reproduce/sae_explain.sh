#!/usr/bin/env bash
# Keyword explanations of the held-out SAE (sae_heldout.sh part B, k=64, 128 tokens) vs a
# shuffled control (docs/results/sae_explain.json): 100 latents spread over firing
# frequencies, described on the documents of scifact and nfcorpus; each latent's example
# documents and terms come from 80% of the documents, the embedding scorer uses only the
# other 20%. Run sae_heldout.sh first. ~15 min on 2 busy CPU cores.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
irlens sae explain --sae "$OUT/B/held/k64/sae" -d "$DATA/scifact" -d "$DATA/nfcorpus" \
  --latents 100 --max-length 128 -o "$OUT/B/explain" --json > "$OUT/B/explain.json"
python docs/reproduce/sae_tables.py sae_explain --held "$OUT/B/explain/scores.json" \
  --out docs/results/sae_explain.json --runtime "about 15 min on 2 busy CPU cores"
