"""Write docs/results/pruning_ce.json from `irlens prune` output folders (summary.json).

python docs/reproduce/pruning_table.py OUT.json NOTES LABEL=FOLDER..."""

import json
import sys
from pathlib import Path

M = "nDCG@10"


def main(out: str, notes: str, *runs: str) -> None:
    rows = []
    for run in runs:
        label, folder = run.split("=", 1)
        summary = json.loads((Path(folder) / "summary.json").read_text())
        n_queries = summary["parameters"][0]["n_queries"]
        for r in summary["summary"]:
            if r["experiment"] != "curve":
                continue
            rows.append([label, n_queries, f"{r['p']:g}", r["n_units"], f"{r[M + ' intact']:.4f}",
                         f"{r[M + ' relevance']:.4f}",
                         f"{r[M + ' random']:.4f} ± {r[M + ' random std']:.4f}",
                         f"{r[M + ' drop relevance']:+.4f} / {r[M + ' drop random']:+.4f}",
                         f"{r[M + ' excess']:+.4f} [{r[M + ' excess lo']:+.4f}, "
                         f"{r[M + ' excess hi']:+.4f}]"])
    payload = {"title": "Relevance-neuron pruning, clean cross-encoder (seed 000): top p% of "
                        "FFN units by NIG vs 5 random draws",
               "command": "docs/reproduce/pruning_ce.sh",
               "runtime": "about 25 min on 2 CPU cores at load ~20 (60 at load 30)",
               "columns": ["data", "queries", "p (%)", "units", "intact", "relevance pruned",
                           "random pruned (mean ± sd)", "drop rel / rand",
                           "excess [95% CI]"],
               "rows": rows, "notes": notes}
    Path(out).write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
