#!/usr/bin/env bash
# README "Retrieval, measured on this CPU": the default model and BM25 on the full test
# splits of scifact, nfcorpus and the msmarco-dl19 pool. Writes docs/results/retrieval.json.
# About 20 min on 2 CPU cores, nearly all of it encoding the corpora once (the embedding
# cache makes a rerun take about 2 min).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/retrieval}
mkdir -p "$OUT"
for d in scifact nfcorpus msmarco-dl19; do
  for m in bm25 default; do
    # bm25: seconds; default: scifact ~2 min, nfcorpus ~1 min, msmarco-dl19 ~10 min (35,697 passages)
    irlens evaluate --model "$m" --data "$DATA/$d" --json > "$OUT/$m-$d.json.tmp"
    mv "$OUT/$m-$d.json.tmp" "$OUT/$m-$d.json"
  done
done
python docs/reproduce/convert.py retrieval "$OUT"
python docs/tables.py
