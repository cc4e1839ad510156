"""Write a docs/results table from `irlens patch --ablate-top` folders.

python docs/reproduce/ablate_table.py OUT.json TITLE COMMAND RUNTIME NOTES LABEL=FOLDER...
Each FOLDER holds ablate-top.csv; one row per (label, condition)."""

import json
import sys
from pathlib import Path

import pandas as pd


def _names(components: str) -> str:
    return ", ".join(c.replace("ffn", " FFN").replace("H", " H")
                     for c in str(components).split(";") if c and c != "nan")


def main(out: str, title: str, command: str, runtime: str, notes: str, *runs: str) -> None:
    rows = []
    for run in runs:
        label, folder = run.split("=", 1)
        table = pd.read_csv(Path(folder) / "ablate-top.csv")
        study = json.loads((Path(folder) / "summary.json").read_text()) \
            if (Path(folder) / "summary.json").is_file() else {}
        for r in table.to_dict("records"):
            rows.append([label, study.get("pairs", ""), int(r["pairs"]), int(r["queries"]),
                         r["condition"], _names(r["components"]),
                         f"{r['axiom_holds']:.0%}", f"{r['mean_delta']:.4f}",
                         f"{r['nDCG@10']:.3f}"])
    payload = {"title": title, "command": command, "runtime": runtime,
               "columns": ["run", "patched pairs", "held-out pairs", "held-out queries",
                           "ablated", "components", "TFC1 holds", "mean clean - corrupted",
                           "nDCG@10"],
               "rows": rows, "notes": notes}
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
