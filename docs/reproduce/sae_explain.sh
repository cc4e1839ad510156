#!/usr/bin/env bash
# Keyword explanations of the held-out scifact SAE (sae_heldout.sh part A, k=64) vs a
# shuffled control (docs/results/sae_explain.json): 100 latents spread over firing
# frequencies, described on scifact's documents; each latent's example documents and terms
# come from 80% of the documents, the embedding scorer uses only the other 20%. Run
# sae_heldout.sh first. ~10 min on 2 CPU cores shared with ~10 other jobs.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
irlens sae explain --sae "$OUT/A/held/k64/sae" -d "$DATA/scifact" --latents 100 \
  -o "$OUT/A/explain" --json > "$OUT/A/explain.json"
python docs/reproduce/sae_tables.py sae_explain --held "$OUT/A/explain/scores.json" \
  --out docs/results/sae_explain.json --runtime "about 10 min on 2 CPU cores shared with ~10 other jobs"
