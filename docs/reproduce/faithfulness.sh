#!/usr/bin/env bash
# README faithfulness table: all-MiniLM-L6-v2, documents cut to 128 tokens, 10
# Gauss-Legendre steps, top 20% of document tokens, 50 relevant pairs per set (seed 0),
# and SIG-mask on the first 6 dl19 pairs. Writes docs/results/faithfulness.json.
# About 50 min on 2 CPU cores (one thread each; the runs resume from their folders).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/faithfulness}
mkdir -p "$OUT"
M=ig-pad,ig-mask,occlusion-mask,gxi,random
# about 15 min (about 18 s per pair)
irlens faithfulness --data "$DATA/scifact" --pairs 50 --methods $M --steps 10 \
    --max-doc-tokens 128 --out "$OUT/scifact" --json > "$OUT/scifact.json"
# about 12 min
irlens faithfulness --data "$DATA/msmarco-dl19" --min-relevance 2 --pairs 50 --methods $M \
    --steps 10 --max-doc-tokens 128 --out "$OUT/dl19" --json > "$OUT/dl19.json"
# about 20 min: SIG costs tokens x steps forward+backward rows (40-330 s per pair)
irlens faithfulness --data "$DATA/msmarco-dl19" --min-relevance 2 --pairs 6 \
    --methods sig-mask,occlusion-mask --steps 10 --max-doc-tokens 128 \
    --out "$OUT/dl19-sig" --json > "$OUT/dl19-sig.json"
python docs/reproduce/convert.py faithfulness "$OUT"
python docs/tables.py
