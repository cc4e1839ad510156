#!/usr/bin/env bash
# Keyword explanations of the held-out SAE at k=64 vs a shuffled control
# (docs/results/sae_explain.json): 100 latents spread over firing frequencies, described on
# the documents of scifact, nfcorpus and the dl19 subset; each latent's examples and terms
# come from 80% of the documents, the embedding scorer uses only the other 20%. Run
# sae_heldout.sh first. About 10 min on 2 busy CPU cores.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-heldout}
irlens sae explain --sae "$OUT/held/k64/sae" -d "$DATA/scifact" -d "$DATA/nfcorpus" \
  -d "$OUT/data/msmarco-dl19" --latents 100 -o "$OUT/explain" --json > "$OUT/explain.json"
python docs/reproduce/sae_tables.py sae_explain --held "$OUT/explain/scores.json" \
  --out docs/results/sae_explain.json --runtime "about 10 min on 2 CPU cores"
