#!/usr/bin/env bash
# docs/studies-cli.md pruning table (and docs/pruning.png): the default bi-encoder,
# relevance neurons from NIG on 8 scifact triplets, pruned at 0.5/1/2/5% against 3 random
# draws, 30 queries reranking their BM25 top 20. The table is what `irlens report`
# prints (copied into docs/results/pruning_curve.json).
# About 20 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
python docs/make_figures.py --data "$DATA" --only pruning       # about 20 min, resumable
irlens report --pruning results/figures/pruning -o results/figures/pruning-report
