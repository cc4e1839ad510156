"""Turn `irlens sae eval --json` outputs into docs/results/<table>.json (see sae_*.sh)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _rows(path: str) -> list[dict]:
    return json.loads(Path(path).read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def heldout(pairs: list[tuple[str, list[dict], list[dict]]]) -> tuple[list[str], list[list]]:
    """One row per (setting, k, dataset): held-out and in-sample SAEs side by side."""
    columns = ["setting", "k", "dataset", "nDCG@10 original", "queries+docs recon. (test "
               "queries held out)", "kept, held out", "kept, in-sample (SAE saw the test "
               "queries)", "FVU held out / in-sample", "dead held out"]
    rows = []
    for label, held, insample in pairs:
        seen = {(r["k"], r["dataset"]): r for r in insample}
        for r in sorted(held, key=lambda r: (r["k"], r["dataset"])):
            assert r["held out"] == "queries held out", r
            other = seen.get((r["k"], r["dataset"]))
            if other is None:  # the in-sample run did not finish
                rows.append([label, r["k"], r["dataset"], f"{r['original nDCG@10']:.4f}",
                             f"{r['queries+docs nDCG@10']:.4f}", _pct(r["kept nDCG@10"]),
                             "not run", f"{r['fvu']:.3f} / -", _pct(r["dead"])])
                continue
            assert other["held out"] == "in-sample", other
            rows.append([label, r["k"], r["dataset"], f"{r['original nDCG@10']:.4f}",
                         f"{r['queries+docs nDCG@10']:.4f}", _pct(r["kept nDCG@10"]),
                         _pct(other["kept nDCG@10"]),
                         f"{r['fvu']:.3f} / {other['fvu']:.3f}", _pct(r["dead"])])
    return columns, rows


def loco(left_out: list[dict]) -> tuple[list[str], list[list]]:
    """One row per left-out collection."""
    columns = ["left-out collection", "trained on", "nDCG@10 original", "queries+docs recon.",
               "kept", "FVU", "L0", "dead"]
    rows = []
    for r in left_out:
        assert r["held out"] == "collection held out", r
        rows.append([r["dataset"], r.get("trained on", ""), f"{r['original nDCG@10']:.4f}",
                     f"{r['queries+docs nDCG@10']:.4f}", _pct(r["kept nDCG@10"]),
                     f"{r['fvu']:.3f}", f"{r['l0']:.1f}", _pct(r["dead"])])
    return columns, rows


def explain(summary: dict) -> tuple[list[str], list[list]]:
    """Keyword explanations vs their shuffled control (embedding scorer), and the
    interpretation confidence, from ``irlens sae explain``'s scores.json."""
    columns = ["explanation", "latents scored", "embedding AUROC mean", "q25", "median", "q75"]
    rows = []
    for name, key in (("keywords (top 8 log-odds terms)", "embedding_auroc_keywords"),
                      ("shuffled keywords (control)", "embedding_auroc_shuffled")):
        d = summary[key]
        rows.append([name, d["n"], *(f"{d[q]:.3f}" for q in ("mean", "q25", "median", "q75"))])
    d = summary["f1"]
    rows.append(["interpretation confidence F1 (terms predict firing)", d["n"],
                 *(f"{d[q]:.3f}" for q in ("mean", "q25", "median", "q75"))])
    return columns, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("table", choices=["sae_heldout", "sae_loco", "sae_explain"])
    parser.add_argument("--held", help="eval --json of the held-out SAEs, "
                        "or explain's scores.json")
    parser.add_argument("--pair", nargs=3, action="append", default=[],
                        metavar=("LABEL", "HELD", "INSAMPLE"),
                        help="a setting's eval --json of the held-out and in-sample SAEs")
    parser.add_argument("--loco", nargs="*", default=[], help="eval --json per left-out")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--notes", default="")  # filled in by hand after a run
    args = parser.parse_args()
    held = _rows(args.held) if args.held else []
    if args.table == "sae_explain":
        columns, rows = explain(held)
        title = ("Keyword explanations of the held-out SAE (k=64) vs a shuffled control, "
                 "scored on documents disjoint from those that chose them")
    elif args.table == "sae_heldout":
        columns, rows = heldout([(label, _rows(h), _rows(i) if Path(i).is_file() else [])
                                 for label, h, i in args.pair])
        title = ("SAE fidelity with test queries held out vs in-sample (TopK, 8x, balanced, "
                 "12 epochs)")
    else:
        columns, rows = loco([r for p in args.loco for r in _rows(p)])
        title = "SAE fidelity on a collection left out of training (k=64)"
    result = {"title": title, "command": f"docs/reproduce/{args.table}.sh",
              "runtime": args.runtime, "columns": columns, "rows": rows, "notes": args.notes}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
