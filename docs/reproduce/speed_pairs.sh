#!/usr/bin/env bash
# docs/pairs-patching.md speed table: integrated Jacobians vs one backward per embedding
# dimension and step (timed on 32 of the 384 dimensions, scaled by 12), one SciFact pair,
# 1 Gauss-Legendre step, 1 thread, best of 3.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_pairs.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/pairs.json. About 20 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
IRLENS_DATA=$DATA python benchmarks/pairs.py --repeats 3 --steps 1 --loop-dims 32
