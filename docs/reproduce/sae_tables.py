"""Turn `irlens sae eval --json` outputs into docs/results/<table>.json (see sae_*.sh)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _rows(path: str) -> list[dict]:
    return json.loads(Path(path).read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def heldout(held: list[dict], insample: list[dict]) -> tuple[list[str], list[list]]:
    """One row per (k, dataset): held-out and in-sample SAEs side by side."""
    seen = {(r["k"], r["dataset"]): r for r in insample}
    columns = ["k", "dataset", "nDCG@10 original", "queries+docs recon. (test queries "
               "held out)", "kept, held out", "kept, in-sample (SAE saw the test queries)",
               "FVU held out / in-sample", "dead held out"]
    rows = []
    for r in sorted(held, key=lambda r: (r["k"], r["dataset"])):
        other = seen[(r["k"], r["dataset"])]
        assert r["held out"] == "queries held out", r
        assert other["held out"] == "in-sample", other
        rows.append([r["k"], r["dataset"], f"{r['original nDCG@10']:.4f}",
                     f"{r['queries+docs nDCG@10']:.4f}", _pct(r["kept nDCG@10"]),
                     _pct(other["kept nDCG@10"]), f"{r['fvu']:.3f} / {other['fvu']:.3f}",
                     _pct(r["dead"])])
    return columns, rows


def loco(left_out: list[dict], held: list[dict]) -> tuple[list[str], list[list]]:
    """One row per left-out collection, next to the SAE that saw its documents."""
    base = {r["dataset"]: r for r in held if r["k"] == 64}
    columns = ["left-out collection", "nDCG@10 original", "queries+docs recon. (collection "
               "left out)", "kept, collection left out", "kept, documents trained on "
               "(test queries held out)", "FVU left out / trained on", "dead left out"]
    rows = []
    for r in left_out:
        assert r["held out"] == "collection held out", r
        b = base[r["dataset"]]
        rows.append([r["dataset"], f"{r['original nDCG@10']:.4f}",
                     f"{r['queries+docs nDCG@10']:.4f}", _pct(r["kept nDCG@10"]),
                     _pct(b["kept nDCG@10"]), f"{r['fvu']:.3f} / {b['fvu']:.3f}",
                     _pct(r["dead"])])
    return columns, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("table", choices=["sae_heldout", "sae_loco"])
    parser.add_argument("--held", required=True, help="eval --json of the held-out SAEs")
    parser.add_argument("--insample", help="eval --json of the in-sample SAEs")
    parser.add_argument("--loco", nargs="*", default=[], help="eval --json per left-out")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--notes", default="")  # filled in by hand after a run
    args = parser.parse_args()
    held = _rows(args.held)
    if args.table == "sae_heldout":
        columns, rows = heldout(held, _rows(args.insample))
        title = ("SAE fidelity with test queries held out vs in-sample (TopK, 8x, balanced, "
                 "12 epochs)")
    else:
        columns, rows = loco([r for p in args.loco for r in _rows(p)], held)
        title = "SAE fidelity on a collection left out of training (k=64)"
    result = {"title": title, "command": f"docs/reproduce/{args.table}.sh",
              "runtime": args.runtime, "columns": columns, "rows": rows, "notes": args.notes}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
