#!/bin/bash
# Relevance-neuron pruning on the clean cross-encoder (docs/reproduce/cross_encoder.sh makes
# it): NIG on 40 dl19 triplets (grade >= 2, correctly ordered kept, 21 points, 128 tokens, FFN
# units after the activation), top p% pruned vs 5 random draws; BM25 top 20 re-scored at
# 128 tokens; dl19 43 queries, scifact the first 30, nfcorpus the first 50.
# Run from the repository root. Expected run time on the 2 shared CPU cores: about 25 min
# at load ~20, 60 min at load 30.
set -euo pipefail
DATA=${IRLENS_DATA:-../shared/data}
RESULTS=${RESULTS:-results/reproduce}
MODELS=${MODELS:-models}
CE=${CE:-$MODELS/ce-clean}  # the model docs/reproduce/cross_encoder.sh writes
N=$RESULTS/ce-clean-neurons
# ~15 min
irlens neurons --model "$CE" --data "$DATA/msmarco-dl19" --min-relevance 2 \
    --triplets 40 --max-length 128 --out "$N"
# ~10 min each
irlens prune --neurons "$N" --data "$DATA/scifact" --p 1 --seeds 5 --layer-p 0 --depth 20 \
    --max-length 128 --max-queries 30 --out "$RESULTS/prune-ce-scifact"
irlens prune --neurons "$N" --data "$DATA/nfcorpus" --p 1 --seeds 5 --layer-p 0 --depth 20 \
    --max-length 128 --max-queries 50 --out "$RESULTS/prune-ce-nfcorpus"
# ~10 min: dl19 without the queries of the 40 sampled triplets (held out)
irlens prune --neurons "$N" --data "$DATA/msmarco-dl19" --p 1 --seeds 5 --layer-p 0 \
    --depth 20 --max-length 128 --held-out --out "$RESULTS/prune-ce-dl19-heldout"
# ~10 min: dl19, all 43 queries (the old table's setting; shares queries with the
# triplets); only p=1 (the old table also had 0.1, 0.5, 2 and 5: cut for time)
irlens prune --neurons "$N" --data "$DATA/msmarco-dl19" --p 1 --seeds 5 \
    --layer-p 0 --depth 20 --max-length 128 --out "$RESULTS/prune-ce-dl19"
python docs/reproduce/pruning_table.py docs/results/pruning_ce.json \
    "Model: $(basename "$CE"). nDCG@10 of each query's BM25 top 20 re-scored (documents cut to 128 tokens); drop = intact minus pruned; random = mean ± sd over 5 seeds; excess = relevance drop minus mean random drop, 95% t interval over the seeds. scifact and nfcorpus are collections the units were not chosen on; 'msmarco-dl19 (all)' rows share queries with the 40 NIG triplets; 'msmarco-dl19 (held out)' leaves those queries out (--held-out)." \
    "msmarco-dl19 (held out)=$RESULTS/prune-ce-dl19-heldout" "scifact=$RESULTS/prune-ce-scifact" \
    "nfcorpus=$RESULTS/prune-ce-nfcorpus" "msmarco-dl19 (all)=$RESULTS/prune-ce-dl19"
