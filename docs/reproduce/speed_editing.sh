#!/usr/bin/env bash
# docs/editing.md "Speed": the batched key covariance vs a per-document loop, and
# measuring an edit with the layer-state cache vs a full re-encode (layer 5).
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_editing_covariance and speed_editing_measure.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/editing.json. About 35 min on 2 CPU cores (the loop side
# dominates; on a loaded machine it took 520 s a round).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
# this benchmark reads scifact from ../shared/data beside the repository (not $IRLENS_DATA)
OMP_NUM_THREADS=2 python benchmarks/editing.py --docs 100 --edits 3 --rounds 3 --sections covariance,editors  # about 30 min
OMP_NUM_THREADS=2 python benchmarks/editing.py --docs 100 --edits 3 --rounds 3 --sections measure            # about 5 min, on its own
# the quiet-machine column (session 4) is the covariance section with --layer 2
