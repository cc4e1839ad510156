"""SAE benchmark: training throughput and FVU, and activation caching vs a plain encode.

Training: irlens ``train_sae`` vs a plain sparsify ``SparseCoder`` loop vs SAELens's
``SAETrainer`` (TopK), on the same cached activations, with the same k, width, batch,
learning rate (constant) and number of samples, fp32, on CPU. Each run is a subprocess
(peak RSS from ``getrusage``), sides alternate, best of ``--rounds``. FVU is measured after
training on all cached rows, the same way for every side.

Caching: ``cache_activations`` (pooled, no embedding cache to reuse) vs
``model.encode_docs`` + ``encode_queries`` on the same texts, also alternating.

    python benchmarks/sae.py                       # writes benchmarks/results/sae.json
    python benchmarks/sae.py --vectors emb.npy     # train on real vectors [n, d]

The reported run (docs/sae.md) trains on real pooled vectors: the encode_corpus cache of
the msmarco-dl19 pool (``--vectors .../embeddings.npy --n 35328``, a multiple of the batch,
so every side sees exactly the same number of samples).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = ("irlens", "sparsify", "saelens")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fvu_of(forward, x):
    import torch

    with torch.no_grad():
        x_hat = torch.cat([forward(x[s:s + 4096]) for s in range(0, len(x), 4096)])
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def worker_train(side: str, cache: str, k: int, expansion: int, batch: int, epochs: int,
                 lr: float) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from irlens.sae import Activations

    acts = Activations(cache)
    x = torch.from_numpy(np.concatenate(list(acts.shards())))
    d, width = acts.dim, acts.dim * expansion
    steps = epochs * (len(x) // batch)

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            perm = torch.randperm(len(x), generator=g)
            for s in range(0, len(x) - batch + 1, batch):
                yield x[perm[s:s + batch]]

    if side == "irlens":
        import sparsify  # noqa: F401 - imported outside the clock, as on the other sides

        from irlens.sae import SAEConfig, TrainConfig, train_sae

        out = tempfile.mkdtemp()
        start = time.perf_counter()
        sae = train_sae(acts, out, SAEConfig(d_in=d, expansion_factor=expansion, k=k),
                        TrainConfig(epochs=epochs, batch_size=batch, lr=lr, lr_end_share=1.0,
                                    checkpoint_every=10**9), progress=False)
        seconds = time.perf_counter() - start
        samples = epochs * len(x)
        fvu = fvu_of(sae, x)
    elif side == "sparsify":
        from sparsify import SparseCoder, SparseCoderConfig

        sae = SparseCoder(d, SparseCoderConfig(k=k, num_latents=width))
        optim = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10)
        since = torch.zeros(width, dtype=torch.long)
        it = batches()
        start = time.perf_counter()
        with torch.no_grad():
            sae.b_dec.copy_(x[:20000].median(0).values)
        for _ in range(steps):
            xb = next(it)
            out = sae(xb, dead_mask=since > 20_000)
            loss = out.fvu + out.auxk_loss / 32
            optim.zero_grad()
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            optim.step()
            sae.set_decoder_norm_to_unit_norm()
            since += len(xb)
            since[out.latent_indices.flatten()] = 0
        seconds = time.perf_counter() - start
        samples = steps * batch
        fvu = fvu_of(lambda v: sae(v).sae_out, x)
    else:
        from sae_lens import LoggingConfig, SAETrainer
        from sae_lens.config import SAETrainerConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=width, k=k,
                                                    device="cpu", dtype="float32"))
        cfg = SAETrainerConfig(total_training_samples=steps * batch,
                               train_batch_size_samples=batch, lr=lr, lr_end=lr,
                               device="cpu", logger=LoggingConfig(log_to_wandb=False))
        trainer = SAETrainer(cfg, sae, batches())
        start = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - start
        samples = steps * batch
        fvu = fvu_of(sae, x)
    return {"side": side, "seconds": seconds, "samples": samples,
            "samples_per_s": samples / seconds, "fvu": fvu, "peak_rss_mb": peak_mb()}


def worker_cache(side: str, data: str, n_docs: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from irlens.data import Dataset, load_dataset
    from irlens.models import load_model

    full = load_dataset(data)
    keep = full.doc_ids[:n_docs]  # the first documents and queries, no judged-doc padding
    qids = full.query_ids[:20]
    ds = Dataset(name=full.name, corpus={d: full.corpus[d] for d in keep},
                 queries={q: full.queries[q] for q in qids}, qrels={}, split=full.split)
    model = load_model("default")
    model.encode_docs(ds.doc_texts()[:8])  # warm-up outside the clock
    start = time.perf_counter()
    if side == "irlens cache":
        from irlens.sae import cache_activations

        with tempfile.TemporaryDirectory() as tmp:
            cache_activations(model, [ds], Path(tmp) / "c", embedding_cache=Path(tmp) / "e",
                              progress=False)
    else:
        model.encode_docs(ds.doc_texts(), batch_size=32)
        model.encode_queries(ds.query_texts(), batch_size=32)
    seconds = time.perf_counter() - start
    return {"side": side, "seconds": seconds, "texts": len(ds.corpus) + len(ds.queries),
            "peak_rss_mb": peak_mb()}


def run_worker(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, __file__, "--worker", *args], env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"worker {args[:2]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def synthetic(n: int, d: int, seed: int = 0):
    """Sparse mixtures of 4d unit atoms (a stand-in when no vectors are given)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(4 * d, d, generator=g), dim=1)
    idx = torch.randint(0, 4 * d, (n, 16), generator=g)
    coef = torch.rand(n, 16, generator=g)
    return torch.nn.functional.normalize((coef[..., None] * atoms[idx]).sum(1), dim=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs="+")
    p.add_argument("--vectors", help=".npy [n, d] vectors to train on (default: synthetic)")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "msmarco-dl19"))
    p.add_argument("--cache-docs", type=int, default=64)
    p.add_argument("--skip", nargs="*", default=[], help="parts to skip: train cache")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sae.json"))
    a = p.parse_args()
    if a.worker:
        kind, side, *rest = a.worker
        side = side.replace("_", " ")
        if kind == "train":
            cache, k, e, b, ep, lr = rest
            result = worker_train(side, cache, int(k), int(e), int(b), int(ep), float(lr))
        else:
            result = worker_cache(side, rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    import math

    import numpy as np

    from irlens.sae import cache_array

    report: dict = {"machine": os.uname().machine, "threads": 1, "rounds": a.rounds}
    if "train" not in a.skip:
        x = np.load(a.vectors)[: a.n] if a.vectors else synthetic(a.n, 384).numpy()
        lr = a.lr or 2e-4 / math.sqrt(x.shape[1] * a.expansion / 2**14)
        tmp = tempfile.mkdtemp()
        cache_array(x, Path(tmp) / "cache", source="bench")
        runs: dict[str, list[dict]] = {s: [] for s in SIDES}
        for r in range(a.rounds):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            for side in order:
                res = run_worker(["train", side, str(Path(tmp) / "cache"), str(a.k),
                                  str(a.expansion), str(a.batch), str(a.epochs), str(lr)])
                runs[side].append(res)
                print(f"round {r} {side}: {res['samples_per_s']:.0f} samples/s, "
                      f"FVU {res['fvu']:.4f}", file=sys.stderr)
        best = {s: max(v, key=lambda q: q["samples_per_s"]) for s, v in runs.items()}
        report["train"] = {
            "data": a.vectors or f"synthetic {a.n} x 384 (unit sparse mixtures)",
            "rows": int(len(x)), "k": a.k, "width": int(x.shape[1] * a.expansion),
            "batch": a.batch, "epochs": a.epochs, "lr": lr, "dtype": "float32",
            "runs": runs, "best": best,
            "ratio_vs_faster_other": best["irlens"]["samples_per_s"]
            / max(best["sparsify"]["samples_per_s"], best["saelens"]["samples_per_s"])}
        print(f"\n| side | samples/s (best of {a.rounds}) | FVU | peak RSS MB |")
        print("|---|---|---|---|")
        for s in SIDES:
            b = best[s]
            print(f"| {s} | {b['samples_per_s']:.0f} | {b['fvu']:.4f} | "
                  f"{b['peak_rss_mb']:.0f} |")
        _write(a.out, report)  # kept even if the caching part fails
    if "cache" not in a.skip:
        sides = ("irlens cache", "plain encode")
        runs = {s: [] for s in sides}
        for r in range(a.rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                res = run_worker(["cache", side.replace(" ", "_"), a.data, str(a.cache_docs)])
                runs[side].append(res)
                print(f"round {r} {side}: {res['seconds']:.1f}s", file=sys.stderr)
        best = {s: min(v, key=lambda q: q["seconds"]) for s, v in runs.items()}
        report["cache"] = {"data": a.data, "texts": best["plain encode"]["texts"], "runs": runs,
                           "best": best, "speed_ratio": best["plain encode"]["seconds"]
                           / best["irlens cache"]["seconds"]}
        print(f"\n| side | seconds (best of {a.rounds}) | peak RSS MB |")
        print("|---|---|---|")
        for s in sides:
            print(f"| {s} | {best[s]['seconds']:.1f} | {best[s]['peak_rss_mb']:.0f} |")
        print(f"caching speed / plain encode: {report['cache']['speed_ratio']:.2f}x")
    _write(a.out, report)


def _write(out: str, report: dict) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
