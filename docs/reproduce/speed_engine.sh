#!/usr/bin/env bash
# docs/engine.md "Benchmarks (fair versions)" and the README's summary of it: irlens's path
# engine against Captum, time-interpret and a per-step NIG loop, 1 thread, best of 3
# alternating runs, each in its own process.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_engine.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/engine.json, attribution.json and neurons.json.
# About 25 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
# this benchmark reads scifact from ../shared/data beside the repository (not $IRLENS_DATA)
python benchmarks/engine.py --rounds 3 --threads 1 --budget 128MB             # about 15 min
# the cross-encoder IG and NIG rows were re-run with the final code:
python benchmarks/attribution.py --sections cross-ig --rounds 3 --budget 128MB --threads 1 --quick   # about 5 min
python benchmarks/neurons.py --rounds 3 --budget 128MB --threads 1 --pairs 2  # about 5 min
