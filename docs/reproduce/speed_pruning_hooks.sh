#!/usr/bin/env bash
# docs/studies-cli.md "pruning by hooks vs zeroed weights": 30 scifact queries, BM25 top 20
# reranked by the default bi-encoder, 92 random FFN units (1%) ablated, best of 3.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_pruning_hooks.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/studies.json. About 15 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
# this benchmark reads scifact from ../shared/data beside the repository (not $IRLENS_DATA)
python benchmarks/studies.py --queries 30 --depth 20 --p 1 --repeats 3 --threads 1
