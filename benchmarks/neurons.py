"""NIG speed and memory: the irlens engine vs a naive per-step loop, equal work.

Same pairs on both sides (SciFact test queries with a relevant abstract whose pair
encoding fills ``--tokens`` tokens), same configuration: every FFN unit (post-activation)
and every layer output of every layer, ``--steps`` points per path, the cross-encoder's
own output. Attention heads are left out on both sides (the naive loop does not hook
them), so the work is the same.

- ``engine``: :class:`irlens.neurons.NeuronIntegratedGradients` (path points of several
  pairs per forward under ``--budget``, parameters frozen, gradients of the hooked
  activations only, per-segment reduction inside the pass);
- ``naive``: :func:`irlens.neurons._naive.naive_nig`, the published loop (Vast et al.,
  ICTIR 2024): one forward and one ``autograd.grad`` per path point, plain torch hooks.

Each run is its own process, so peak memory (max RSS above the loaded model, read from
``getrusage``) is its own. The sides alternate ``--rounds`` times (default 3) and the
fastest run of each is kept, with every run's seconds. ``--no-warmup`` skips the one-pair
warm-up run.

Usage: python benchmarks/neurons.py [--pairs 2] [--steps 21] [--tokens 128] [--rounds 3]
       [--budget 1GB] [--no-warmup] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact"


def _pairs(n: int, tokens: int, tokenizer) -> tuple[list[str], list[str]]:
    """SciFact (query, relevant abstract) pairs whose pair encoding fills ``tokens``."""
    from irlens.data import load_dataset, sample_pairs

    dataset = load_dataset(DATA)
    queries, docs = [], []
    for qid, doc_id in sample_pairs(dataset, None, seed=0):
        query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
        if len(tokenizer(query, doc)["input_ids"]) >= tokens:
            queries.append(query)
            docs.append(doc)
        if len(queries) == n:
            break
    return queries, docs


def worker(args: argparse.Namespace) -> None:
    """Run one side in this process and print a JSON line."""
    import numpy as np
    import torch

    from irlens.models import load_model
    from irlens.neurons import NeuronIntegratedGradients
    from irlens.neurons._naive import naive_nig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the same new head in every process ("default" has none)
    model = load_model(args.model, device="cpu", kind="cross")
    model.max_length = args.tokens
    queries, docs = _pairs(args.pairs, args.tokens, model.tokenizer)
    nig = NeuronIntegratedGradients(model, n_steps=args.steps, attention=False,
                                    output=model.output, memory_budget=args.budget,
                                    gap_tolerance=1e9)

    def run(q: list[str], d: list[str]) -> dict:
        if args.worker == "engine":
            res = nig.attribute(q, d)
            return {"ffn": res.ffn, "resid": res.resid}
        return naive_nig(model, q, d, n_steps=args.steps)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.warmup:
        run(queries[:1], docs[:1])  # warm caches and kernels
    start = time.perf_counter()
    out = run(queries, docs)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    if args.save:
        np.savez(args.save, ffn=out["ffn"], resid=out["resid"])
    print(json.dumps({"method": args.worker, "pairs": len(queries), "steps": args.steps,
                      "tokens": args.tokens, "seconds": round(seconds, 3),
                      "pairs_per_s": len(queries) / seconds,
                      "peak_memory_mb": round(max(peak, 0) / 2**20, 1),
                      "threads": torch.get_num_threads()}))


def _spawn(args: argparse.Namespace, method: str, save: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--pairs", str(args.pairs),
           "--steps", str(args.steps), "--tokens", str(args.tokens), "--model", args.model,
           "--threads", str(args.threads), "--budget", args.budget,
           "--warmup" if args.warmup else "--no-warmup"]
    if save is not None:
        cmd += ["--save", str(save)]
    print("running", method, f"{args.pairs} pairs x {args.steps} points", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    result = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
    result["loadavg"] = os.getloadavg()[0]
    print("  ", result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default",
                        help="Cross-encoder folder, or 'default' (MiniLM body, new head).")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=21, help="Points per path.")
    parser.add_argument("--pairs", type=int, default=2, help="Pairs, the same on both sides.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", default="1GB", help="The engine's memory budget.")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/neurons.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np
    import torch

    from irlens._io import write_json

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="irlens-bench-"))
    runs: dict[str, list[dict]] = {"engine": [], "naive": []}
    for r in range(args.rounds):  # alternate the sides
        for side in ("engine", "naive"):
            runs[side].append(_spawn(args, side, tmp / f"{side}.npz" if r == 0 else None))
    best = {k: max(v, key=lambda x: x["pairs_per_s"]) for k, v in runs.items()}
    fast, slow = np.load(tmp / "engine.npz"), np.load(tmp / "naive.npz")
    diff = float(np.abs(fast["ffn"] - slow["ffn"]).max() / np.abs(slow["ffn"]).max())
    report = {
        "what": "NIG: engine vs naive per-step loop, equal work (FFN units + layer outputs)",
        "config": {"model": args.model, "tokens": args.tokens, "steps": args.steps,
                   "pairs": args.pairs, "budget": args.budget, "rounds": args.rounds,
                   "warmup": args.warmup, "threads": args.threads},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "engine": {**best["engine"], "all_seconds": [x["seconds"] for x in runs["engine"]]},
        "naive": {**best["naive"], "all_seconds": [x["seconds"] for x in runs["naive"]]},
        "speed_ratio": best["engine"]["pairs_per_s"] / best["naive"]["pairs_per_s"],
        "memory_ratio": best["engine"]["peak_memory_mb"]
        / max(best["naive"]["peak_memory_mb"], 1e-9),
        "max_rel_diff_engine_vs_naive": diff,
    }
    write_json(args.output, report)
    print(f"\n{'NIG':<22}{'pairs/s':>10}{'peak MB':>10}")
    for side in ("engine", "naive"):
        print(f"{side:<22}{best[side]['pairs_per_s']:>10.4f}{best[side]['peak_memory_mb']:>10.0f}")
    print(f"speed ratio {report['speed_ratio']:.2f}x, memory ratio "
          f"{report['memory_ratio']:.2f}, max rel diff {diff:.1e}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
