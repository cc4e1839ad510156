#!/usr/bin/env bash
# docs/probes-activations.md speed table: knowledge-neuron attribution (suffix passes) vs
# Dai et al.'s loop per example and layer, real default model, SciFact, 20 steps.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_activations.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/activations.json. About 3 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
export IRLENS_DATA=$DATA
OMP_NUM_THREADS=2 python benchmarks/activations.py --threads 2 --queries 2 --docs 1 --steps 20 --max-length 64
