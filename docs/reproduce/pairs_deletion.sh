#!/usr/bin/env bash
# docs/pairs-patching.md deletion faithfulness of token pairs (50 scifact + 50 dl19 pairs):
# the two tables docs/results/pairs_deletion.json and pairs_deletion_paired.json are what
# `report` prints (copied from its output; the script has no JSON output yet).
# About 40 min on 2 CPU cores (2-7 s per pair on free cores, up to 170 s loaded).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/pairs_deletion}
export IRLENS_DATA=$DATA
python docs/pairs_faithfulness.py run scifact 50 --out "$OUT"        # about 15 min, resumable
python docs/pairs_faithfulness.py run msmarco-dl19 50 --out "$OUT"   # about 25 min, resumable
python docs/pairs_faithfulness.py report "$OUT"                      # the two tables
