"""Corpus encoding into the cache (memory map, one tokenisation, lock, checksum) against
sentence-transformers' own ``encode`` plus ``np.save``: time and peak memory.

Each side runs in its own process (so its peak resident memory is its own), the sides
alternate over ``--rounds`` rounds, and the best time of each is reported with the
highest peak RSS seen. Both wall time and CPU time (user + system, one thread) are
reported: on a shared machine the CPU time is the steadier of the two. Both sides encode
the same first ``--docs`` SciFact documents with the default model, on one thread;
irlens starts from an empty cache every time.

Usage: python benchmarks/fixes.py [--docs 200] [--rounds 3] [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = ("irlens", "sentence-transformers")


def _side(name: str, data: Path, docs: int, batch_size: int) -> None:
    """Encode once in this process; print seconds and peak RSS as JSON."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from irlens.data import Dataset, load_dataset
    from irlens.models import load_model, resolve_model_path

    full = load_dataset(data)
    ids = full.doc_ids[:docs]
    dataset = Dataset(f"{full.name}-first{len(ids)}", {d: full.corpus[d] for d in ids},
                      full.queries, full.qrels)
    texts = dataset.doc_texts()
    with tempfile.TemporaryDirectory() as cache:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        if name == "irlens":
            from irlens.retrieval import encode_corpus

            model = load_model("default", device="cpu")
            start = time.perf_counter()
            vectors = encode_corpus(model, dataset, batch_size=batch_size, cache_dir=cache,
                                    progress=False)
        else:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_model_path("default"), device="cpu")
            start = time.perf_counter()
            vectors = st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
            np.save(Path(cache) / "embeddings.npy", vectors)
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_mb,
                      "shape": list(np.asarray(vectors).shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/fixes.json")
    args = parser.parse_args()
    if args.side:
        _side(args.side, args.data, args.docs, args.batch_size)
        return

    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    env_cmd = [sys.executable, __file__, "--data", str(args.data), "--docs", str(args.docs),
               "--batch-size", str(args.batch_size)]
    for round_ in range(args.rounds):
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]  # alternate the sides
        for side in order:
            out = subprocess.run([*env_cmd, "--side", side], capture_output=True, text=True,
                                 check=True, env={**_env(), "OMP_NUM_THREADS": "1"})
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            last = runs[side][-1]
            print(f"round {round_ + 1}/{args.rounds} {side:<22} {last['seconds']:7.1f} s  "
                  f"cpu {last['cpu_seconds']:7.1f} s  {last['peak_rss_mb']:7.0f} MB",
                  file=sys.stderr, flush=True)

    best = {s: min(r["seconds"] for r in runs[s]) for s in SIDES}
    cpu = {s: min(r["cpu_seconds"] for r in runs[s]) for s in SIDES}
    peak = {s: max(r["peak_rss_mb"] for r in runs[s]) for s in SIDES}
    print(f"\n{'side':<24} {'best wall s':>11} {'best CPU s':>10} {'docs/CPU s':>10} "
          f"{'peak RSS MB':>12}")
    for side in SIDES:
        print(f"{side:<24} {best[side]:11.1f} {cpu[side]:10.1f} {args.docs / cpu[side]:10.2f} "
              f"{peak[side]:12.0f}")
    speed = best["sentence-transformers"] / best["irlens"]
    cpu_speed = cpu["sentence-transformers"] / cpu["irlens"]
    memory = peak["irlens"] / peak["sentence-transformers"]
    print(f"\nirlens vs sentence-transformers: wall {speed:.3f}x, CPU {cpu_speed:.3f}x "
          f"(>1: irlens faster); peak memory ratio {memory:.3f} (<1: irlens smaller)")
    payload = {"docs": args.docs, "data": str(args.data), "batch_size": args.batch_size,
               "rounds": args.rounds, "threads": 1, "machine": platform.machine(),
               "baseline": "sentence-transformers encode + np.save", "runs": runs,
               "best_seconds": best, "best_cpu_seconds": cpu, "peak_rss_mb": peak,
               "speed_ratio": speed, "cpu_speed_ratio": cpu_speed,
               "memory_ratio": memory}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"wrote {args.output}")


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}


if __name__ == "__main__":
    main()
