"""Turn the outputs of the reproduce scripts into docs/results/<table>.json.

    python docs/reproduce/convert.py retrieval OUT      # irlens evaluate --json files
    python docs/reproduce/convert.py retrieval OUT --partial   # keep rows not rerun
    python docs/reproduce/convert.py finetuned OUT      # irlens train bi-encoder's JSON
    python docs/reproduce/convert.py faithfulness OUT   # irlens faithfulness --json files
    python docs/reproduce/convert.py study OUT          # irlens study's report.json

Each converter reads what the commands wrote under OUT and rewrites the results files
(title, command and run time stay as below); ``python docs/tables.py`` then renders them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "docs" / "results"


def write(name: str, columns: list[str], rows: list[list[Any]], **fields: Any) -> Path:
    """Write ``docs/results/NAME.json``, keeping fields the converter does not set."""
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    data = {"title": old.get("title", name), "command": old.get("command", ""),
            "runtime": old.get("runtime", ""), "columns": columns, "rows": rows,
            "notes": old.get("notes", "")}
    data.update(fields)
    if "align" in old and len(old["align"]) == len(columns):
        data.setdefault("align", old["align"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run the reproduce script first")
    return json.loads(path.read_text())


# README "Retrieval, measured on this CPU": (dataset, label, model, reference)
RETRIEVAL = [
    ("scifact", "default (all-MiniLM-L6-v2)", "default", "MTEB 64.51"),
    ("scifact", "BM25", "bm25", 'Anserini "BM25 flat" 0.679'),
    ("nfcorpus", "default", "default", "MTEB 31.59"),
    ("nfcorpus", "BM25", "bm25", ""),
    ("msmarco-dl19", "default", "default", "not comparable to full-collection figures"),
    ("msmarco-dl19", "BM25", "bm25", ""),
]


def retrieval_rows(out: Path, old: list[list[str]] | None = None) -> list[list[str]]:
    """The README retrieval rows from ``OUT/<model>-<dataset>.json`` (evaluate --json);
    with ``old`` (the current rows), a missing output keeps its old row."""
    rows = []
    for i, (dataset, label, model, reference) in enumerate(RETRIEVAL):
        if old is not None and not (out / f"{model}-{dataset}.json").is_file():
            rows.append(old[i])
            continue
        found = read(out / f"{model}-{dataset}.json")
        if found["dataset"] != dataset or found["model"] != model or found["split"] != "test":
            raise SystemExit(f"error: {out}/{model}-{dataset}.json holds {found['model']} on "
                             f"{found['dataset']} ({found['split']})")
        name = dataset
        if dataset == "msmarco-dl19":
            name = f"msmarco-dl19 ({found['n_docs']:,}-passage pool)"
        rows.append([name, label, f"{found['aggregate']['nDCG@10']:.4f}", reference])
    return rows


def retrieval(out: Path, partial: bool = False) -> None:
    """``partial``: keep the current row of each run not finished under ``out`` (and say
    which in the notes)."""
    current = json.loads((RESULTS / "retrieval.json").read_text())["rows"] if partial else None
    rows = retrieval_rows(out, current)
    kept = [f"{m} on {d}" for d, _, m, _ in RETRIEVAL if not (out / f"{m}-{d}.json").is_file()]
    fields = {}
    if partial:
        fields["notes"] = ("Rows not rerun in the last run, kept from the run before: "
                           + ", ".join(kept) + "." if kept else "")
    write("retrieval", ["data (test split)", "retriever", "nDCG@10", "reference"], rows,
          **fields)


def finetuned(out: Path) -> None:
    """``irlens train bi-encoder``'s JSON: the training.md table and the README row."""
    found = read(out / "train.json")["evaluation"]
    before, after = found["before"], found["after"]
    write("bi_encoder_nfcorpus", ["model", "nDCG@10", "RR@10"], [
        ["default (all-MiniLM-L6-v2)", f"{before['nDCG@10']:.4f}", f"{before['RR@10']:.4f}"],
        ["fine-tuned on nfcorpus train (2,386 queries)", f"{after['nDCG@10']:.4f}",
         f"{after['RR@10']:.4f}"]])
    write("retrieval_finetuned", ["data (test split)", "retriever", "nDCG@10", "reference"],
          [["nfcorpus", "default fine-tuned on nfcorpus train", f"{after['nDCG@10']:.4f}",
            "[training](docs/training.md)"]])


FAITHFULNESS = ["data", "method", "log-odds ↓", "comp ↑", "suff ↓", "comp (score) ↑",
                "suff (score) ↓", "rank+ comp ↑", "s/pair"]


def _pm(row: dict, metric: str) -> str:
    se = row.get(f"{metric}_se")
    return f"{row[metric]:.3f}" if se is None else f"{row[metric]:.3f} ± {se:.3f}"


def faithfulness(out: Path) -> None:
    """``irlens faithfulness --json`` of scifact, dl19 and the 6 SIG pairs of dl19."""
    rows = []
    runs = (("scifact", "scifact", None), ("dl19", "dl19", None),
            ("dl19, 6 pairs", "dl19-sig", {"sig-mask", "occlusion-mask"}))
    for label, file, keep in runs:
        for row in read(out / f"{file}.json")["summary"]:
            if keep is not None and row["method"] not in keep:
                continue
            rows.append([label, row["method"], f"{row['log_odds']:.2f}",
                         _pm(row, "comprehensiveness"), _pm(row, "sufficiency"),
                         _pm(row, "comprehensiveness_score"), _pm(row, "sufficiency_score"),
                         f"{row['rank_change_comprehensiveness']:.1f}",
                         f"{row['seconds']:.1f}"])
    write("faithfulness", FAITHFULNESS, rows)


def _ci(cell: Any, digits: int = 3) -> str:
    if isinstance(cell, dict):
        return f"{cell['mean']:.{digits}f} [{cell['lo']:.{digits}f}, {cell['hi']:.{digits}f}]"
    return f"{cell:.{digits}f}" if isinstance(cell, float) else str(cell)


def _mean(cell: Any, digits: int = 3) -> str:
    value = cell["mean"] if isinstance(cell, dict) else cell
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def study(out: Path) -> None:
    """The three tables of docs/study-ray.md from ``OUT/report.json``."""
    sections = read(out / "report.json")["sections"]
    rows = [[r["dataset"], r["system"], _ci(r["nDCG@10"]), _mean(r["RR@10"]),
             _mean(r["R@100"])] for r in sections["evaluate"]["rows"]]
    write("study_evaluate", ["dataset", "system", "nDCG@10 (95% CI)", "RR@10", "R@100"], rows)
    rows = [[r["dataset"], r["method"], r["pairs"], _ci(r["comprehensiveness"]),
             _mean(r["sufficiency"]), _mean(r["log_odds"])]
            for r in sections["faithfulness"]["rows"]]
    write("study_faithfulness", ["dataset", "method", "pairs", "comprehensiveness (95% CI)",
                                 "sufficiency", "log-odds"], rows)
    rows = []
    for r in sections["prune"]["rows"]:
        rows.append([r["dataset"], f"{r['p']:g}%", r["units"], _mean(r["nDCG@10 intact"], 4),
                     _mean(r["nDCG@10 top-p"], 4), _ci(r["nDCG@10 random"])])
    write("study_prune", ["dataset", "pruned", "units", "nDCG@10 intact", "top 1% pruned",
                          "random 1% (3 seeds, 95% CI)"], rows)


CONVERTERS = {"retrieval": retrieval, "finetuned": finetuned, "faithfulness": faithfulness,
              "study": study}


def main(argv: list[str]) -> int:
    partial = "--partial" in argv
    argv = [a for a in argv if a != "--partial"]
    if len(argv) != 2 or argv[0] not in CONVERTERS or (partial and argv[0] != "retrieval"):
        print(f"usage: convert.py {{{','.join(CONVERTERS)}}} OUT  (retrieval: [--partial])",
              file=sys.stderr)
        return 2
    if partial:
        retrieval(Path(argv[1]), partial=True)
    else:
        CONVERTERS[argv[0]](Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
