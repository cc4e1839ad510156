#!/usr/bin/env bash
# docs/studies-cli.md baseline table: where each explanation baseline scores, 8 scifact
# pairs. Writes docs/results/explain_baselines.json. About 3 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
python docs/reproduce/explain_baselines.py "$DATA/scifact"   # about 3 min
python docs/tables.py
