#!/usr/bin/env bash
# docs/cache-models-data.md: encode_corpus with an empty cache vs sentence-transformers'
# encode + np.save, 120 scifact documents, batch 32, 4 alternating rounds, 1 thread.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_encode.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/fixes.json. About 6 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
python benchmarks/fixes.py --data "$DATA/scifact" --docs 120 --batch-size 32 --rounds 4
