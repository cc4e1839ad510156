#!/usr/bin/env bash
# README "Scaling" and docs/study-ray.md "Scaling benchmark": the same encoding and NIG
# study jobs, plain vs 1 and 2 Ray workers, sides alternating, best of 3 rounds.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/scaling.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/scale.json. About 30 min on 2 CPU cores (20 to 35).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
python benchmarks/scale.py --data "$DATA/scifact"
