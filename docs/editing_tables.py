"""Print the editing tables of docs/editing.md from `irlens edit` output folders.

Usage: python docs/editing_tables.py RESULTS_DIR   (folders named DATASET-EDITOR-KIND)

Reads each folder's finished jobs (so a run still in progress shows what it has done).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from irlens.editing import summarise

COLUMNS = ["dataset", "editor", "kind", "edits", "efficacy", "median_rank_before",
           "median_rank_after", "generalisation", "delta_ndcg10_mean",
           "delta_ndcg10_max_abs", "top10_changes_mean", "doc_cosine_mean",
           "seconds_per_edit"]


def load(folder: Path) -> pd.DataFrame:
    """Every finished job's rows of one run."""
    parts = [pd.read_parquet(p) for p in sorted(folder.glob("jobs/*/table.parquet"))]
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "editor", folder.name.split("-")[1])
    return frame


def main(root: Path) -> None:
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "jobs").is_dir()):
        name = folder.name.split("-")
        if len(name) != 3 or name[0] == "pipe":
            continue
        table = summarise(load(folder))
        table.insert(0, "dataset", name[0])
        rows.append(table)
    frame = pd.concat(rows, ignore_index=True)[COLUMNS]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for _, r in frame.iterrows():
        cells = [r.dataset, r.editor, r.kind, int(r.edits), f"{r.efficacy:.0%}",
                 f"{r.median_rank_before:g}", f"{r.median_rank_after:g}",
                 f"{r.generalisation:.2f}", f"{r.delta_ndcg10_mean:+.4f}",
                 f"{r.delta_ndcg10_max_abs:.4f}", f"{r.top10_changes_mean:.1f}",
                 f"{r.doc_cosine_mean:.5f}", f"{r.seconds_per_edit:.1f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
