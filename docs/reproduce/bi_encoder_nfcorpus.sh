#!/usr/bin/env bash
# docs/training.md "the default model fine-tuned on all of nfcorpus train" and the README's
# fine-tuned row: trains, evaluates the full test split before and after, writes
# docs/results/bi_encoder_nfcorpus.json and retrieval_finetuned.json.
# About 9 min on 2 CPU cores. The model is what docs/reproduce/activations_counts.sh compares.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/bi_encoder_nfcorpus}
mkdir -p "$OUT"
# about 9 min: 75 steps of 32 plus both evaluations (resumes from its checkpoints)
irlens train bi-encoder --base default --data "$DATA/nfcorpus" \
    --out "$OUT/bi-nfcorpus-full" --batch-size 32 --hard-negatives 1 \
    --max-seq-length 128 --epochs 1 --lr 2e-5 --save-steps 20 > "$OUT/train.json.tmp"
mv "$OUT/train.json.tmp" "$OUT/train.json"
python docs/reproduce/convert.py finetuned "$OUT"
python docs/tables.py
