#!/usr/bin/env bash
# A token-level SAE on an FFN hook point of the default model (docs/results/sae_hook.json):
# layer.3.ffn.post (1,536 units after the GELU), every token of scifact's first 40 documents
# (documents only), TopK k=32, 2x = 3,072 latents, 2 epochs; FVU measured on the tokens of the
# next 20 documents, which it never saw. Run from the repository root; DATA defaults to
# ../shared/data. About 40 min on 2 CPU cores shared with ~10 other jobs.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/sae-hook}
python docs/reproduce/beir_subset.py "$DATA/scifact" "$OUT/data/scifact" 40 first
irlens sae train -d "$OUT/data/scifact" -o "$OUT/ffn" --hook layer.3.ffn.post --queries none \
  --k 32 --expansion 2 --lr 2e-3 --batch-size 256 --epochs 2 --json > "$OUT/train.json"
python docs/reproduce/sae_hook_fvu.py "$OUT/ffn/k32/sae" layer.3.ffn.post "$DATA/scifact" 40 60 \
  "$OUT/heldout-fvu.json"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
held = json.loads((out / "heldout-fvu.json").read_text())
train = json.loads((out / "train.json").read_text())
tr = train["saes"][0]
rows = [["layer.3.ffn.post", held["d_in"], f"{held['width']:,}", held["k"], f"{train['rows']:,}",
         f"{tr['fvu']:.3f}", f"{held['token_rows']:,}", f"{held['fvu']:.3f}",
         f"{held['l0']:.1f}", f"{100 * held['dead_share']:.1f}%"]]
Path("docs/results/sae_hook.json").write_text(json.dumps({
    "title": "Token-level SAE on an FFN hook point (default model, scifact documents)",
    "command": "docs/reproduce/sae_hook.sh", "runtime": "about 40 min on 2 CPU cores shared with ~10 other jobs",
    "columns": ["hook", "input width", "latents", "k", "training token rows",
                "FVU, last training batch", "held-out token rows (20 other documents)",
                "FVU held out", "L0 held out", "dead on held-out tokens"],
    "rows": rows,
    "notes": "TopK, lr 2e-3, batch 256, 2 epochs; the width is the hook's (the FFN's 1,536), "
             "taken before caching."}, indent=2) + "\n")
PY
