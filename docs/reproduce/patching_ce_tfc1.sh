#!/bin/bash
# TFC1 activation patching of the clean cross-encoder (docs/reproduce/cross_encoder.sh makes
# it), dl19 and scifact, 30 sampled pairs each (cut from 50 for time); --ablate-top 3 on
# 30 held-out pairs from queries disjoint from the patched ones. Run from the repository
# root. Expected run time on the 2 shared CPU cores: about 15 min at load ~20, 60 at 30.
set -euo pipefail
DATA=${IRLENS_DATA:-../shared/data}
RESULTS=${RESULTS:-results/reproduce}
MODELS=${MODELS:-models}
CE=${CE:-$MODELS/ce-clean}  # the model docs/reproduce/cross_encoder.sh writes
patch() {  # OUT, then irlens patch options; the JSON summary goes to OUT/summary.json
    local out=$RESULTS/$1; shift
    mkdir -p "$out"
    irlens patch "$@" --out "$out" --json > "$out/summary.json.part"
    mv "$out/summary.json.part" "$out/summary.json"
}
# ~8 min: 30 pairs of 16 queries; held-out pairs from the other 27
patch patch-ce-dl19-tfc1 --model "$CE" --data "$DATA/msmarco-dl19" \
    --min-relevance 2 --axiom tfc1 --pairs 30 --resid roles --max-doc-words 30 \
    --ablate-top 3 --ablate-pairs 30
# ~8 min
patch patch-ce-scifact-tfc1 --model "$CE" --data "$DATA/scifact" --axiom tfc1 \
    --pairs 30 --resid roles --max-doc-words 30 --ablate-top 3 --ablate-pairs 30
python docs/reproduce/ablate_table.py docs/results/patching_ce_tfc1.json \
    "TFC1: ablating the top 3 components of the clean cross-encoder vs 3 random sets (held-out queries)" \
    docs/reproduce/patching_ce_tfc1.sh "about 15 min on 2 CPU cores at load ~20 (60 at load 30)" \
    "Model: $(basename "$CE"). Top 3 by mean denoising effect over the patched pairs; held-out pairs are sampled (seed 1) only from queries with no patched pair; mean clean - corrupted is a logit; nDCG@10 reranks each held-out query's BM25 top 20." \
    "dl19=$RESULTS/patch-ce-dl19-tfc1" "scifact=$RESULTS/patch-ce-scifact-tfc1"
python docs/pairs_patch_tables.py "$RESULTS/patch-ce-dl19-tfc1" > "$RESULTS/patch-ce-dl19-tfc1/tables.md"
python docs/pairs_patch_tables.py "$RESULTS/patch-ce-scifact-tfc1" > "$RESULTS/patch-ce-scifact-tfc1/tables.md"
