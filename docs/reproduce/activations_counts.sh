#!/usr/bin/env bash
# docs/probes-activations.md "Active units": knowledge-neuron counts, default vs the model
# fine-tuned on nfcorpus train (docs/reproduce/bi_encoder_nfcorpus.sh makes it). The table
# is assembled from the three runs' --json summaries (copied into
# docs/results/activations_counts.json; no converter yet).
# About 15 min on 2 CPU cores: 9 min for the fine-tune (skipped when it exists), then about
# 1-2 min per dataset.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/activations_counts}
FT=results/reproduce/bi_encoder_nfcorpus/bi-nfcorpus-full
[ -d "$FT" ] || bash docs/reproduce/bi_encoder_nfcorpus.sh
mkdir -p "$OUT"
for d in nfcorpus scifact msmarco-dl19; do
  extra=(); [ "$d" = msmarco-dl19 ] && extra=(--min-relevance 2)
  irlens activations -m default -m "$FT" -d "$DATA/$d" "${extra[@]}" --examples 30 --steps 4 \
      --rule gausslegendre --max-length 64 -o "$OUT/act-$d" --json > "$OUT/act-$d.json"
done
