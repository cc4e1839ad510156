#!/bin/bash
# TFC1 activation patching of the default bi-encoder at 100 pairs (scifact, dl19): the
# component and residual tables of docs/pairs-patching.md. Run from the repository root.
# Expected run time on 2 idle CPU cores: about 40 min (scifact) + 30 min (dl19).
# Not rerun in session 7 (the tables hold session 4's figures, made with these commands);
# the query-disjoint --ablate-top rows are made by patching_bi_tfc1.sh.
set -euo pipefail
DATA=${IRLENS_DATA:-../shared/data}
RESULTS=${RESULTS:-results/reproduce}
mkdir -p "$RESULTS"
irlens patch --model default --data "$DATA/scifact" --axiom tfc1 --pairs 100 \
    --resid roles --max-doc-words 30 --ablate-top 3 --ablate-pairs 50 \
    --out "$RESULTS/patch-scifact-tfc1" --json > "$RESULTS/patch-scifact-tfc1.json"
python docs/pairs_patch_tables.py "$RESULTS/patch-scifact-tfc1"   # the scifact tables
irlens patch --model default --data "$DATA/msmarco-dl19" --min-relevance 2 --axiom tfc1 \
    --pairs 100 --resid roles --max-doc-words 30 \
    --out "$RESULTS/patch-dl19-tfc1" --json > "$RESULTS/patch-dl19-tfc1.json"
python docs/pairs_patch_tables.py "$RESULTS/patch-dl19-tfc1"      # the dl19 tables
