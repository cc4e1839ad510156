"""Pruning evaluation: irlens ``prune`` (hooks on the live model) vs zeroing weights.

The named baseline is the obvious alternative to hook-based ablation: edit a copy of the
model (here the process's own) and zero the FFN output-layer columns of the selected units (the same
function: a post-activation unit set to zero contributes nothing through that layer).
Both sides then rerank the same BM25 top ``--depth`` of the same ``--queries`` SciFact
queries with the default bi-encoder and score nDCG@10 with ir_measures; only the time of
the ablated evaluation is counted (model loading is not), and the two nDCG@10 values
must agree.

Each run is its own process (peak resident memory, ``ru_maxrss``, is its own); the sides
alternate, best of ``--repeats``. Results: ``benchmarks/results/studies.json``.

Usage: python benchmarks/studies.py [--queries 30] [--depth 20] [--p 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact"
SIDES = ("irlens prune (hooks)", "zeroed weights (copy)")


def _selection(model, p: float, seed: int = 0):
    """p% of all FFN units, drawn at random (seeded): the timing does not depend on
    which units are chosen."""
    import numpy as np

    from irlens.hooks import hook_points
    from irlens.neurons.selection import Selection

    points = {n: h for n, h in hook_points(model, "doc").items() if n.endswith("ffn.post")}
    per_layer = next(iter(points.values())).units
    total = per_layer * len(points)
    chosen = np.random.default_rng(seed).choice(total, round(total * p / 100), replace=False)
    units: dict[str, list[int]] = {}
    for flat in sorted(chosen.tolist()):
        units.setdefault(f"layer.{flat // per_layer}.ffn.post", []).append(flat % per_layer)
    return Selection(units, "random", p, "ffn", total)


def worker(side: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from irlens import load_model
    from irlens.data import load_dataset
    from irlens.evaluation import evaluate
    from irlens.neurons import prune
    from irlens.retrieval import bm25_search, rerank

    dataset = load_dataset(DATA, max_queries=args.queries)
    candidates = bm25_search(dataset, k=args.depth, progress=False)
    model = load_model("default", device="cpu")
    model.max_length = 128
    sel = _selection(model, args.p)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if side == SIDES[1]:
        edited = model  # this process's own copy: its weights are edited in place
        body = edited.doc_encoder
        start = time.perf_counter()
        with torch.no_grad():
            for hook, units in sel.units.items():
                layer = body.encoder.layer[int(hook.split(".")[1])]
                layer.output.dense.weight[:, units] = 0
        run = rerank(edited, dataset, candidates, depth=args.depth, batch_size=64,
                     progress=False)
    else:
        start = time.perf_counter()
        with prune(model, sel):
            run = rerank(model, dataset, candidates, depth=args.depth, batch_size=64,
                         progress=False)
    ndcg = evaluate(run, dataset.qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"side": side, "seconds": seconds, "nDCG@10": ndcg, "peak_rss_mb": peak / 1024,
            "rss_above_load_mb": (peak - base_rss) / 1024, "units": sel.n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--p", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=SIDES)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1"}
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    for i in range(args.repeats):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):  # alternate who goes first
            cmd = [sys.executable, __file__, "--worker", side, "--queries", str(args.queries),
                   "--depth", str(args.depth), "--p", str(args.p), "--threads",
                   str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"run {i + 1} {side}: {runs[side][-1]['seconds']:.2f} s", file=sys.stderr)
    best = {s: min(r, key=lambda x: x["seconds"]) for s, r in runs.items()}
    ours, rival = best[SIDES[0]], best[SIDES[1]]
    result = {
        "what": f"rerank BM25 top-{args.depth} of {args.queries} scifact queries with "
                f"{ours['units']} FFN units ({args.p:g}%) ablated, default bi-encoder, "
                "documents cut to 128 tokens, nDCG@10",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "threads": args.threads},
        "repeats": args.repeats, "best": best, "runs": runs,
        "speedup": rival["seconds"] / ours["seconds"],
        "same_ndcg": abs(ours["nDCG@10"] - rival["nDCG@10"]) < 1e-6,
    }
    path = REPO / "benchmarks" / "results" / "studies.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"| side | best s (of {args.repeats}) | peak RSS MB | nDCG@10 |")
    print("|---|---|---|---|")
    for side in SIDES:
        b = best[side]
        print(f"| {side} | {b['seconds']:.2f} | {b['peak_rss_mb']:.0f} | {b['nDCG@10']:.4f} |")
    print(f"speed-up of hooks over zeroed weights: {result['speedup']:.2f}x; same nDCG@10: "
          f"{result['same_ndcg']}")


if __name__ == "__main__":
    main()
