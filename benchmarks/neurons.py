"""NIG speed: the irlens engine vs the naive loop of published research code.

Same run, same pairs (SciFact test queries with a relevant abstract, cut to exactly
``--tokens`` tokens), same configuration: every FFN unit and attention head of every
layer, ``--steps`` path steps, cross-encoder relevance probability.

- ``engine``: :class:`irlens.neurons.NeuronIntegratedGradients` (batched path points,
  gradients of the hooked activations only, per-segment reduction inside the pass);
- ``naive (published)``: the authors' loop (Vast et al., ICTIR 2024): forward a batch of
  ``--naive-batch`` path points, then one ``backward`` per point (``retain_graph``,
  parameter gradients included) copying every activation and gradient to the CPU;
- ``naive (batch 1)``: the same loop with one path point per forward, its fastest setting.

Each method runs in its own process, so peak memory (CPU: max RSS above the loaded
model; GPU: max allocated) is its own. Pairs/s and the speed-up of the engine over each
naive variant go to ``benchmarks/results/neurons.json``; the engine and naive results
are also compared (max relative difference of per-unit totals). On a GPU it also times
1,000 pairs x 100 steps x 128 tokens with the engine (``--gpu-pairs``, ``--gpu-steps``).

Usage: python benchmarks/neurons.py [--device auto|cpu|cuda] [--quick] [--model M]
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
        n_tok = len(tokenizer(query, doc)["input_ids"])
        if n_tok >= tokens:
            queries.append(query)
            docs.append(doc)
        if len(queries) == n:
            break
    return queries, docs


def worker(args: argparse.Namespace) -> None:
    """Run one method in this process and print a JSON line."""
    import torch

    from irlens.models import load_model
    from irlens.neurons import NeuronIntegratedGradients
    from irlens.neurons._naive import naive_nig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the same new head in every process ("default" has none)
    model = load_model(args.model, device=args.device, kind="cross")
    model.max_length = args.tokens
    queries, docs = _pairs(args.pairs, args.tokens, model.tokenizer)
    engine = NeuronIntegratedGradients(model, n_steps=args.steps, completeness=False,
                                       memory_gb=args.memory_gb)
    cuda = model.device.type == "cuda"

    def run(q: list[str], d: list[str]):
        if args.worker == "engine":
            return engine.attribute(q, d)
        return naive_nig(engine, q, d, batch_size=args.naive_batch)

    # memory baseline: the loaded model and data, before any attribution (the warm-up
    # pair is a subset of the timed run, so the peak is the timed run's)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.warmup:
        run(queries[:1], docs[:1])  # warm caches and kernels
    start = time.perf_counter()
    result = run(queries, docs)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    if args.save:
        result.to_parquet(args.save)
    print(json.dumps({"method": args.worker, "pairs": len(queries), "steps": args.steps,
                      "tokens": args.tokens, "seconds": round(seconds, 3),
                      "pairs_per_s": len(queries) / seconds,
                      "peak_memory_mb": round(max(peak, 0) / 2**20, 1),
                      "peak_kind": "cuda max allocated" if cuda else "max RSS above model",
                      "device": str(model.device)}))


def _spawn(args: argparse.Namespace, method: str, pairs: int, steps: int,
           save: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--pairs", str(pairs), "--steps",
           str(steps), "--tokens", str(args.tokens), "--device", args.device, "--model",
           args.model, "--naive-batch", str(args.naive_batch), "--threads", str(args.threads)]
    if save is not None:
        cmd += ["--save", str(save)]
    if args.memory_gb:
        cmd += ["--memory-gb", str(args.memory_gb)]
    if args.warmup:
        cmd += ["--warmup"]
    print("running", method, f"{pairs} pairs x {steps} steps", flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    result = json.loads(line)
    print("  ", result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="A few pairs, for a smoke run.")
    parser.add_argument("--model", default="default",
                        help="Cross-encoder folder, or 'default' (MiniLM body, new head).")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=6, help="Engine pairs (CPU).")
    parser.add_argument("--naive-pairs", type=int, default=2)
    parser.add_argument("--naive-batch", type=int, default=10,
                        help="Path points per forward in the published loop.")
    parser.add_argument("--gpu-pairs", type=int, default=1000)
    parser.add_argument("--gpu-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=None)
    parser.add_argument("--warmup", action="store_true", default=True)
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
    from irlens.neurons import NeuronAttribution

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.pairs, args.naive_pairs, args.gpu_pairs, args.gpu_steps = 2, 1, 50, 20
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="irlens-bench-"))
    runs = {
        "engine": _spawn(args, "engine", args.pairs, args.steps, tmp / "engine.parquet"),
        "naive_published": _spawn(args, "naive", args.naive_pairs, args.steps,
                                  tmp / "naive.parquet"),
    }
    batch = args.naive_batch
    args.naive_batch = 1
    runs["naive_batch1"] = _spawn(args, "naive", args.naive_pairs, args.steps, None)
    args.naive_batch = batch
    fast = NeuronAttribution.from_parquet(tmp / "engine.parquet")
    slow = NeuronAttribution.from_parquet(tmp / "naive.parquet")
    k = len(slow)
    diff = float(np.abs(fast.ffn_total[:k] - slow.ffn_total).max()
                 / max(np.abs(slow.ffn_total).max(), 1e-30))
    report = {
        "what": "NIG pairs/s: engine vs naive per-step backward loop (same config, same run)",
        "config": {"model": args.model, "tokens": args.tokens, "steps": args.steps,
                   "units": "FFN post-activation + attention probabilities, all layers",
                   "output": "cross-encoder probability", "naive_batch": args.naive_batch},
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "runs": runs,
        "speedup_vs_naive_published": runs["engine"]["pairs_per_s"]
        / runs["naive_published"]["pairs_per_s"],
        "speedup_vs_naive_batch1": runs["engine"]["pairs_per_s"]
        / runs["naive_batch1"]["pairs_per_s"],
        "max_rel_diff_engine_vs_naive": diff,
    }
    if args.device == "cuda":
        big = _spawn(args, "engine", args.gpu_pairs, args.gpu_steps, None)
        naive = _spawn(args, "naive", 3, args.gpu_steps, None)
        report["gpu"] = {"engine": big, "naive_published": naive,
                         "naive_hours_for_same_job": args.gpu_pairs / naive["pairs_per_s"]
                         / 3600,
                         "speedup": big["pairs_per_s"] / naive["pairs_per_s"]}
    out = args.output
    if args.quick:
        out = out.with_name(out.stem + "-quick.json")
    write_json(out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
