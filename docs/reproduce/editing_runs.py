"""The editing table's runs on one dataset, sharing one measurement bench.

Each run is exactly ``irlens edit --data DATA --editor E --kind K --n N --layer 5
--max-length 128 --out OUT/NAME-E-K`` (the same :func:`irlens.editing.run_edits`, the same
resumable output folder); run in one process, the corpus's layer-5 states are computed
once for all of them instead of once per run. Usage:

    python docs/reproduce/editing_runs.py ../shared/data/scifact results/edit rome:insert:50 \\
        rome:remove:50 ft:insert:10 st:insert:1

(``st:KIND:N``: the first N rank-one requests of KIND fitted, measured, saved and ranked
again by sentence-transformers' own ``encode``: docs/reproduce/editing_st_check.py.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from irlens.editing import EditBench
from irlens.editing.study import EditConfig, edit_data, run_edits
from irlens.models import load_model


def main(data: str, out: str, runs: list[str]) -> None:
    model = load_model("default", device="cpu", max_length=128)
    bench = None
    for run in runs:
        editor, kind, n = run.split(":")
        config = EditConfig(editor="rome" if editor == "st" else editor, kind=kind,
                            n=int(n), layer=5)
        if bench is None:
            bench = EditBench(model, edit_data(data, config), progress=True)
        if editor == "st":  # the saved models' ranks in plain sentence-transformers
            sys.path.insert(0, str(Path(__file__).parent))
            from editing_st_check import check

            check(model, bench.dataset, bench, kind, int(n),
                  Path(out) / f"st-check-{Path(data).name}-{kind}.json")
            continue
        folder = Path(out) / f"{Path(data).name}-{editor}-{kind}"
        frame = run_edits(model, data, folder, config, bench=bench)
        print(f"{folder.name}: {len(frame)} edits, efficacy {frame.efficacy.mean():.0%}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
