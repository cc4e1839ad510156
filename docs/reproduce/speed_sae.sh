#!/usr/bin/env bash
# docs/sae.md "Speed": irlens train_sae vs sparsify's SparseCoder loop vs SAELens's
# SAETrainer on the first 35,328 real MiniLM vectors of the msmarco-dl19 pool, k=64,
# 3,072 latents, batch 512, one epoch, best of 3; and activation caching vs a plain encode.
# A speed benchmark: timings on the shared 2-core machine move up to 2x between runs, so
# the table is read by hand from the JSON the benchmark writes (docs/results/speed_sae.json
# keeps the figures quoted in the docs); rerun on a quiet machine before quoting.
# Writes benchmarks/results/sae.json. About 20 min on 2 CPU cores (plus about 10 min to
# encode the dl19 pool once, if docs/reproduce/retrieval.sh has not already).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/speed_sae}
mkdir -p "$OUT"
# the dl19 pool's vectors from the embedding cache (encodes them first if missing)
python -c "
import sys, numpy as np
from irlens.models import load_model; from irlens.data import load_dataset
from irlens.retrieval import encode_corpus
np.save(sys.argv[2], encode_corpus(load_model('default', device='cpu'), load_dataset(sys.argv[1])).numpy())
" "$DATA/msmarco-dl19" "$OUT/dl19.npy"
VECTORS=$OUT/dl19.npy
python benchmarks/sae.py --vectors "$VECTORS" --n 35328 --k 64 --expansion 8 --batch 512 \
    --epochs 1 --lr 2e-3 --cache-docs 192
