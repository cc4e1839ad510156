#!/bin/bash
# Issue 20 §2 on real data: kill -9 `irlens evaluate` mid-encode, shift the rows of the
# partial matrix (np.roll, same shape), rerun twice; irlens before the chunk checksums
# (commit ed7dff8) vs this tree; then a clean run. Writes docs/results/partial-cache-shift.json.
# Default model, SciFact's first 10 judged queries with 100 documents (their judged ones plus
# distractors), batch 8 (saved chunks of 8, 16, 32... documents).
# Expected time: about 25 min on 2 busy CPU cores (5 encodings of 100 documents).
set -e
cd "$(dirname "$0")/../.."
W=$(mktemp -d)
mkdir -p "$W/old" && git archive ed7dff8 irlens | tar -x -C "$W/old"
ARGS="--model default --data ../shared/data/scifact --device cpu --metrics nDCG@10 --max-docs 100 --max-queries 10 --batch-size 8"
ndcg() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['aggregate']['nDCG@10'])" "$1"; }
for v in old new; do
  code=$([ $v = old ] && echo "$W/old" || pwd); c="$W/cache-$v"
  PYTHONPATH=$code python -m irlens evaluate $ARGS --cache-dir "$c" > /dev/null 2>&1 &
  pid=$!
  until f=$(ls "$c"/embeddings/*/progress.json 2>/dev/null) && \
      [ "$(python -c "import json;print(json.load(open('$f'))['done'])" 2>/dev/null || echo 0)" -ge 24 ]; do
    sleep 2
  done
  kill -9 $pid; wait $pid 2>/dev/null || true
  python -c "
import glob, sys, numpy as np
from numpy.lib.format import open_memmap
[p] = glob.glob(sys.argv[1] + '/embeddings/*/partial.npy')
m = open_memmap(p, mode='r+'); m[:] = np.roll(np.array(m), 1, axis=0); m.flush()" "$c"
  for i in 1 2; do
    PYTHONPATH=$code python -m irlens evaluate $ARGS --cache-dir "$c" > "$W/$v-$i.json"
  done
done
python -m irlens evaluate $ARGS --cache-dir "$W/cache-clean" > "$W/clean.json"
python - "$W" <<'PY'
import json, sys
w = sys.argv[1]
get = lambda name: round(json.load(open(f"{w}/{name}.json"))["aggregate"]["nDCG@10"], 4)
rows = [["before the fix (ed7dff8)", get("old-1"), get("old-2")],
        ["with chunk checksums", get("new-1"), get("new-2")],
        ["clean run (empty cache)", get("clean"), get("clean")]]
json.dump({"title": "nDCG@10 after a killed encode whose partial matrix was shifted by one row",
           "command": "docs/reproduce/partial-cache-shift.sh",
           "runtime": "about 25 min on 2 busy CPU cores",
           "columns": ["irlens", "rerun 1 nDCG@10", "rerun 2 nDCG@10"], "rows": rows,
           "notes": "default model, SciFact first 10 judged queries, 100 documents, batch 8; "
                    "the encode was killed (kill -9) after 24 documents were saved, then "
                    "np.roll(partial, 1, axis=0)"},
          open("docs/results/partial-cache-shift.json", "w"), indent=1)
print(rows)
PY
