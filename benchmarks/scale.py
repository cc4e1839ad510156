"""Scaling: corpus encoding and NIG throughput, plain single process vs 1 and 2 Ray workers.

The same study jobs (:mod:`irlens.study`: evaluate's corpus-encoding chunks, the
neurons section's NIG triplet shards) run three ways, each side in its own subprocess
(so each reports its own peak memory: the driver plus its Ray workers):

- ``plain``: the single-process runner, no Ray imported (the baseline);
- ``ray1`` / ``ray2``: :class:`irlens.distributed.WorkerPool` with 1 or 2 actors on a
  local Ray cluster (``num_cpus=2``), one model and one thread per actor.

Every side uses one thread per model. Start-up (Ray, actors, model loading, one warm-up
job per worker) is timed apart from the throughput. Sides alternate over ``--rounds``
rounds in rotating order; the best round of each side is reported. Ray's overhead at one
worker is ``1 - ray1 / plain`` (target <= 10%); the speed-up is ``ray2 / plain``.

Usage: python benchmarks/scale.py [--docs 48] [--pairs 4] [--steps 4] [--rounds 3]
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
SIDES = ("plain", "ray1", "ray2")


def _spec(data: Path, docs: int, pairs: int, steps: int):
    from irlens.study import parse_spec

    text = (f"model: default\ndevice: cpu\nbatch_size: 16\ndatasets:\n  scifact:\n"
            f"    path: {data}\n    max_docs: {docs}\n    max_queries: 20\nsections:\n"
            f"  evaluate:\n    chunk_size: 16\n  neurons:\n    triplets: {pairs}\n"
            f"    shard_size: 2\n    n_steps: {steps}\n    keep: all\n    attention: false\n"
            f"    max_length: 128\n")
    return parse_spec(text, "bench.yaml")


def _jobs(ctx, docs: int):
    """Encoding chunks (all documents) and NIG shards (all triplets)."""
    from irlens.study.sections import SECTIONS

    evaluate = SECTIONS["evaluate"].plan(ctx, "scifact", ctx.spec.sections["evaluate"])
    chunks = [j for j in next(evaluate) if j.part.startswith("chunk")]
    neurons = SECTIONS["neurons"].plan(ctx, "scifact", ctx.spec.sections["neurons"])
    [triplets] = next(neurons)
    ctx.results[triplets.key] = SECTIONS["neurons"].run(ctx, triplets)
    return chunks, next(neurons)


def side(name: str, args) -> dict:
    """Run one side in this process and return its measurements."""
    import torch

    from irlens.study.jobs import Context
    from irlens.study.sections import SECTIONS

    torch.set_num_threads(1)
    start = time.perf_counter()
    spec = _spec(args.data, args.docs, args.pairs, args.steps)
    ctx = Context(spec)
    chunks, shards = _jobs(ctx, args.docs)
    workers = 0 if name == "plain" else int(name[3:])
    if workers:
        import ray

        from irlens.distributed import WorkerPool

        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        pool = WorkerPool(spec, workers)
        list(pool.run(chunks[:workers]))  # warm-up: every actor has its model loaded

        def run(jobs):
            return [r for _, r in pool.run(jobs)]
    else:
        SECTIONS["evaluate"].run(ctx, chunks[0])

        def run(jobs):
            return [SECTIONS[j.section].run(ctx, j) for j in jobs]
    startup = time.perf_counter() - start
    out = {"side": name, "workers": workers, "startup_s": startup}
    for task, jobs, unit in (("encode", chunks, "docs"), ("nig", shards, "pairs")):
        t0 = time.perf_counter()
        results = run(jobs)
        seconds = time.perf_counter() - t0
        n = sum(len(j.payload.get("ids", j.payload.get("rows", []))) for j in jobs)
        out[task] = {"seconds": seconds, unit: n, "per_s": n / seconds,
                     "checksum": float(sum(float(abs(getattr(r, "vectors", None)
                                                     if r.vectors is not None
                                                     else r.ffn_relevant).sum())
                                           for r in results))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["driver_peak_rss_mb"] = rss / 2**20
    if workers:
        import ray

        peaks = ray.get([a.peak_rss.remote() for a in pool.actors])
        out["worker_peak_rss_mb"] = [p / 2**20 for p in peaks]
        pool.close()
        ray.shutdown()
    out["total_peak_rss_mb"] = out["driver_peak_rss_mb"] + sum(out.get("worker_peak_rss_mb",
                                                                       []))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/scale.json")
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    for r in range(args.rounds):
        order = SIDES[r % 3:] + SIDES[:r % 3]
        for name in order:
            cmd = [sys.executable, __file__, "--side", name, "--data", str(args.data),
                   "--docs", str(args.docs), "--pairs", str(args.pairs),
                   "--steps", str(args.steps)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: encode {runs[name][-1]['encode']['per_s']:.2f} "
                  f"docs/s, nig {runs[name][-1]['nig']['per_s']:.3f} pairs/s",
                  file=sys.stderr)
    best = {s: {t: max(x[t]["per_s"] for x in runs[s]) for t in ("encode", "nig")}
            for s in SIDES}
    table = []
    for s in SIDES:
        row = {"side": s, "encode_docs_per_s": best[s]["encode"],
               "nig_pairs_per_s": best[s]["nig"],
               "startup_s": min(x["startup_s"] for x in runs[s]),
               "peak_rss_mb": max(x["total_peak_rss_mb"] for x in runs[s]),
               "encode_vs_plain": best[s]["encode"] / best["plain"]["encode"],
               "nig_vs_plain": best[s]["nig"] / best["plain"]["nig"]}
        table.append(row)
    checks = {t: [x[t]["checksum"] for s in SIDES for x in runs[s]] for t in ("encode", "nig")}
    summary = {
        "ray_overhead_1_worker": {t: 1 - best["ray1"][t] / best["plain"][t]
                                  for t in ("encode", "nig")},
        "speedup_2_workers": {t: best["ray2"][t] / best["plain"][t] for t in ("encode", "nig")},
        "same_results": {t: max(v) - min(v) <= 1e-6 * max(1.0, abs(max(v)))
                         for t, v in checks.items()},
    }
    print(f"{'side':6} {'encode docs/s':>14} {'x plain':>8} {'NIG pairs/s':>12} "
          f"{'x plain':>8} {'start-up s':>11} {'peak RSS MB':>12}")
    for row in table:
        print(f"{row['side']:6} {row['encode_docs_per_s']:>14.2f} "
              f"{row['encode_vs_plain']:>8.2f} {row['nig_pairs_per_s']:>12.3f} "
              f"{row['nig_vs_plain']:>8.2f} {row['startup_s']:>11.1f} "
              f"{row['peak_rss_mb']:>12.0f}")
    print(json.dumps(summary, indent=2))
    load = os.getloadavg()
    payload = {"config": {k: str(v) for k, v in vars(args).items() if k != "side"},
               "machine": {"cpus": os.cpu_count(), "load_average": load,
                           "python": platform.python_version()},
               "table": table, "summary": summary, "runs": runs}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
