"""The editing table of docs/editing.md from `irlens edit` output folders.

Usage: python docs/editing_tables.py RESULTS_DIR [--json docs/results/editing.json]
(folders named DATASET-EDITOR-KIND). Reads each folder's finished jobs (so a run still in
progress shows what it has done), prints the markdown table and, with --json, writes the
results file of the table (docs/reproduce/editing.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from irlens._io import write_json
from irlens.editing import summarise

COLUMNS = ["dataset", "editor", "kind", "edits", "efficacy", "median rank before",
           "median rank after", "generalisation (edits with other judged queries)",
           "robustness (shuffled / word dropped)", "mean ΔnDCG@10 (other queries)",
           "max abs ΔnDCG@10", "top-10 pairs changed", "doc cosine", "median s / edit"]


def load(folder: Path) -> pd.DataFrame:
    """Every finished job's rows of one run."""
    parts = [pd.read_parquet(p) for p in sorted(folder.glob("jobs/*/table.parquet"))]
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "editor", folder.name.split("-")[1])
    return frame


def rows(root: Path) -> list[list]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "jobs").is_dir()):
        name = folder.name.split("-")
        if len(name) != 3 or name[0] == "pipe" or not any(folder.glob("jobs/*/table.parquet")):
            continue
        frame = load(folder)
        seconds = frame.groupby("kind")["seconds"].median()  # the first edit builds the cache
        for r in summarise(frame).itertuples():
            gen = ("-" if r.generalisation_edits == 0 else
                   f"{r.generalisation:.2f} ({r.generalisation_edits})")
            out.append([name[0], r.editor, r.kind, int(r.edits), f"{r.efficacy:.0%}",
                        f"{r.median_rank_before:g}", f"{r.median_rank_after:g}", gen,
                        f"{r.robustness:.2f}", f"{r.delta_ndcg10_mean:+.4f}",
                        f"{r.delta_ndcg10_max_abs:.4f}", f"{r.top10_changes_mean:.1f}",
                        f"{r.doc_cosine_mean:.5f}", f"{seconds[r.kind]:.0f}"])
    return out


def main(root: Path, json_path: Path | None = None) -> None:
    table = rows(root)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in table:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if json_path is not None:
        write_json(json_path, {
            "title": "Editing the default model on the full scifact and nfcorpus corpora "
                     "(last layer, 128 tokens, requests drawn with seed 0)",
            "command": "docs/reproduce/editing.sh",
            "runtime": "scifact: about 80 min for the corpus's layer states, then about 1 "
                       "min per rank-one edit, on 2 CPU cores shared with other jobs",
            "columns": COLUMNS, "rows": table,
            "notes": "Locality is over every other judged test query, per edit; "
                     "generalisation is over other test queries judging the document "
                     "relevant (where the edit has work to do), averaged over the edits "
                     "that have any (their count in brackets); robustness is the edit "
                     "query with its words shuffled and with one word dropped. The edits column "
                     "counts the requests finished (the runs are resumable; the table is "
                     "rebuilt from whatever has finished)."})


if __name__ == "__main__":
    args = sys.argv[1:]
    out = Path(args[args.index("--json") + 1]) if "--json" in args else None
    main(Path(args[0]), out)
