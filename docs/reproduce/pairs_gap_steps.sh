#!/usr/bin/env bash
# docs/pairs-patching.md "Completeness against steps". Writes
# docs/results/pairs_gap_steps.json. About 8 min on 2 CPU cores (one thread).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
python docs/reproduce/pairs_gap_steps.py "$DATA/scifact"   # about 8 min
python docs/tables.py
