"""The path engine against its rivals, in one run: a table and ``results/engine.json``.

Runs ``benchmarks/attribution.py`` (IG vs Captum with frozen parameters, SIG vs
time-interpret, bi-encoder query side vs the best Captum wrapper) and
``benchmarks/neurons.py`` (NIG vs a naive per-step loop, equal work). Every row: sides
alternate ``--rounds`` times (best of each kept), each run in its own process with its
peak resident memory. Sizes are small so that a shared 2-core machine can run them;
``--full`` uses the scripts' full sizes.

Usage: python benchmarks/engine.py [--rounds 3] [--threads 1] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--full", action="store_true")
    p.add_argument("--skip", default="", help="attribution and/or neurons, comma-separated")
    a = p.parse_args()
    py = sys.executable
    skip = set(a.skip.split(","))
    if "attribution" not in skip:
        _run([py, str(REPO / "benchmarks/attribution.py"), "--sections",
              "cross-ig,cross-sig,bi-query", "--rounds", str(a.rounds), "--threads",
              str(a.threads), *([] if a.full else ["--quick"])])
    if "neurons" not in skip:
        _run([py, str(REPO / "benchmarks/neurons.py"), "--rounds", str(a.rounds),
              "--threads", str(a.threads), *([] if a.full else ["--pairs", "2"])])
    attr = json.loads((RESULTS / "attribution.json").read_text())["sections"]
    nig = json.loads((RESULTS / "neurons.json").read_text())
    rows = []
    for key, rival, name in (("cross-ig", "captum_lig", "IG vs Captum LIG (frozen)"),
                             ("cross-sig", "time_interpret", "SIG vs time-interpret"),
                             ("bi-query", "captum_doc_encoded_once",
                              "bi-encoder query IG vs Captum")):
        if key in attr and rival in attr[key]:
            r = attr[key]
            rows.append({"comparison": name, "config": r["config"], "measured": r["measured"],
                         "irlens_pairs_per_s": r["irlens"]["pairs_per_s"],
                         "rival_pairs_per_s": r[rival]["pairs_per_s"],
                         "speed_ratio": r["speed_ratio"],
                         "irlens_peak_mb": r["irlens"]["peak_memory_mb"],
                         "rival_peak_mb": r[rival]["peak_memory_mb"],
                         "max_abs_diff": r["max_abs_diff"]})
    rows.append({"comparison": "NIG vs naive per-step loop", "config": nig["config"],
                 "measured": nig["measured"],
                 "irlens_pairs_per_s": nig["engine"]["pairs_per_s"],
                 "rival_pairs_per_s": nig["naive"]["pairs_per_s"],
                 "speed_ratio": nig["speed_ratio"],
                 "irlens_peak_mb": nig["engine"]["peak_memory_mb"],
                 "rival_peak_mb": nig["naive"]["peak_memory_mb"],
                 "max_abs_diff": nig["max_rel_diff_engine_vs_naive"]})
    report = {"what": "irlens path engine vs rivals (best of alternating runs, own processes)",
              "rounds": a.rounds, "threads": a.threads, "full": a.full,
              "written": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    from irlens._io import write_json

    write_json(RESULTS / "engine.json", report)
    print(f"\n{'comparison':<34}{'irlens p/s':>11}{'rival p/s':>11}{'speed':>7}"
          f"{'irlens MB':>10}{'rival MB':>10}{'max|diff|':>10}")
    for r in rows:
        print(f"{r['comparison']:<34}{r['irlens_pairs_per_s']:>11.3f}"
              f"{r['rival_pairs_per_s']:>11.3f}{r['speed_ratio']:>7.2f}"
              f"{r['irlens_peak_mb']:>10.0f}{r['rival_peak_mb']:>10.0f}"
              f"{r['max_abs_diff']:>10.1e}")
    print(f"wrote {RESULTS / 'engine.json'}")


if __name__ == "__main__":
    main()
