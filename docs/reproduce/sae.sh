#!/bin/bash
# The IN-SAMPLE pool SAE of session 6 (docs/sae.md, tables sae_fidelity*, sae_interpretation,
# sae_explain_*, sae_steering, sae_prf): every document and TEST query of four collections,
# balanced. Held-out fidelity is made by sae_heldout.sh / sae_loco.sh. Run from the repo root.
# Expected run time on 2 idle CPU cores: encoding the four corpora ~60 min (dl19's 35,697
# passages most of it), training 4 SAEs ~6 min, eval ~10 min, keyword explanations ~5 min,
# the Gemma 3 270M explanations ~25 min, steering ~10 min.
# Not rerun in session 7: the tables hold session 6's figures, whose driver scripts lived
# outside the repository; these are the documented commands that made them.
set -euo pipefail
DATA=${IRLENS_DATA:-../shared/data}
RESULTS=${RESULTS:-results/reproduce}
D="-d $DATA/scifact -d $DATA/nfcorpus -d $DATA/arguana -d $DATA/msmarco-dl19"
irlens sae train $D --queries test -o "$RESULTS/sae-pool" --k 64,16,32,128 --expansion 8 \
    --lr 2e-3 --batch-size 256 --epochs 12 --balance
irlens sae eval --sae "$RESULTS/sae-pool" $D -o "$RESULTS/sae-pool-eval" --json \
    > "$RESULTS/sae-pool-eval.json"
irlens sae explain --sae "$RESULTS/sae-pool/k64/sae" $D -o "$RESULTS/sae-pool-explain" \
    --latents 100 --json > "$RESULTS/sae-pool-explain.json"
irlens sae explain --sae "$RESULTS/sae-pool/k64/sae" $D -o "$RESULTS/sae-pool-explain-llm" \
    --latents 20 --local-llm --json > "$RESULTS/sae-pool-explain-llm.json"
irlens sae steer --sae "$RESULTS/sae-pool/k64/sae" -d "$DATA/scifact" -d "$DATA/nfcorpus" \
    -d "$DATA/msmarco-dl19" -o "$RESULTS/sae-pool-steer" --weighting mass,idf --json \
    > "$RESULTS/sae-pool-steer.json"
