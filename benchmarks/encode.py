"""Corpus encoding speed: irlens vs plain sentence-transformers, and with idle hooks.

Encodes the same SciFact documents three ways in one process, in rotating order over
several rounds, and reports the median docs/s of each:

- ``sentence-transformers``: ``SentenceTransformer(path).encode(texts)``;
- ``irlens``: :func:`irlens.retrieval.encode_corpus` (fresh cache, so it really encodes);
- ``irlens + idle hooks``: the same inside ``capture(model, ..., side="query")`` on every
  layer's ``ffn.post``, ``ffn.out`` and ``resid``: the hooks run on every document pass
  but record nothing. Target: within 5% of plain irlens.

Usage: python benchmarks/encode.py [--docs 1000] [--rounds 3] [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from irlens._io import write_json
from irlens.data import Dataset, load_dataset
from irlens.hooks import capture
from irlens.models import load_model, resolve_model_path
from irlens.retrieval import encode_corpus

REPO = Path(__file__).resolve().parents[1]
IDLE_HOOKS = ["layer.*.ffn.post", "layer.*.ffn.out", "layer.*.resid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/encode.json")
    args = parser.parse_args()

    full = load_dataset(args.data)
    ids = full.doc_ids[: args.docs]
    dataset = Dataset(
        name=f"{full.name}-first{len(ids)}",
        corpus={d: full.corpus[d] for d in ids},
        queries=full.queries,
        qrels=full.qrels,
    )
    texts = dataset.doc_texts()

    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(resolve_model_path("default"), device=args.device)
    model = load_model("default", device=args.device)

    def run_plain() -> None:
        plain.encode(texts, batch_size=args.batch_size, convert_to_tensor=True)

    def run_irlens() -> None:
        with tempfile.TemporaryDirectory() as cache:
            encode_corpus(
                model, dataset, batch_size=args.batch_size, cache_dir=cache, progress=False
            )

    def run_hooked() -> None:
        with capture(model, IDLE_HOOKS, side="query") as cache:
            run_irlens()
        if len(cache):
            raise RuntimeError("idle hooks recorded activations; the benchmark is invalid")

    runners: dict[str, Callable[[], None]] = {
        "sentence-transformers": run_plain,
        "irlens": run_irlens,
        "irlens + idle hooks": run_hooked,
    }
    plain.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    model.encode_docs(texts[:64], batch_size=args.batch_size)
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(args.rounds):
        for name in names[round_ % 3 :] + names[: round_ % 3]:  # rotate to spread drift
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
            print(
                f"round {round_ + 1}/{args.rounds} {name:<22} {times[name][-1]:7.1f} s", flush=True
            )

    docs_per_s = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    base = docs_per_s["sentence-transformers"]
    ratios = {
        "irlens / sentence-transformers": docs_per_s["irlens"] / base,
        "idle hooks / irlens": docs_per_s["irlens + idle hooks"] / docs_per_s["irlens"],
        "idle hooks / sentence-transformers": docs_per_s["irlens + idle hooks"] / base,
    }
    print(f"\n{'encoder':<24} {'docs/s':>8}")
    for name, rate in docs_per_s.items():
        print(f"{name:<24} {rate:8.2f}")
    print()
    for name, ratio in ratios.items():
        print(f"{name:<36} {ratio:6.3f}")
    write_json(
        args.output,
        {
            "docs": len(texts),
            "data": str(args.data),
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "idle_hooks": IDLE_HOOKS,
            "seconds": times,
            "docs_per_s": docs_per_s,
            "ratios": ratios,
        },
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
