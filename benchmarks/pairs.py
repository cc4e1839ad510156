"""Token-pair attribution speed: integrated Jacobians (irlens) vs one backward per
embedding dimension and step (the obvious loop), same run, same pair.

The pair is a SciFact query cut to ``--query-tokens`` word pieces and an abstract cut to
``--doc-tokens`` (defaults 32 x 128, with [CLS]/[SEP] added), the default bi-encoder
(all-MiniLM-L6-v2, D = 384), the mask baseline and ``--steps`` Gauss-Legendre points.

- ``irlens``: :class:`irlens.attribution.pairs.IntegratedJacobians` (``--mode auto``:
  per side, D vmapped vector-Jacobian products or T forward-mode products per point,
  whichever is fewer), 1 GB memory budget;
- ``loop``: :func:`irlens.attribution._pairs_naive.naive_pair_matrix`-style loop, one
  forward + backward per (dimension, step) per side. On a shared CPU the full loop takes
  many minutes, so it runs ``--loop-dims`` of the D dimensions and its time is scaled by
  D / loop-dims (every dimension costs the same backward); ``--loop-dims 384`` runs it all.

Each side runs in its own subprocess (peak RSS above the loaded model is its own),
alternating sides, best of ``--repeats``. Writes ``benchmarks/results/pairs.json``.

Usage: python benchmarks/pairs.py [--steps 2] [--loop-dims 48] [--repeats 3]
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
DATA = Path(os.environ.get("IRLENS_DATA", REPO.parent / "shared" / "data")) / "scifact"


def _texts(model, q_tokens: int, d_tokens: int) -> tuple[str, str]:
    from irlens.data import load_dataset, sample_pairs
    from irlens.paths import cut_text

    ds = load_dataset(DATA)
    for qid, doc_id in sample_pairs(ds, None, seed=0):
        q, d = ds.queries[qid], ds.corpus[doc_id].contents
        tok = model.tokenizer
        if len(tok(d, add_special_tokens=False)["input_ids"]) >= d_tokens:
            # SciFact claims are short: the claim repeated fills the query's tokens
            return cut_text(tok, " ".join([q] * 4), q_tokens), cut_text(tok, d, d_tokens)
    raise SystemExit("no pair long enough")


def _loop_side(model, text: str, side: str, steps: int, dims: int):
    """The obvious loop over ``dims`` dimensions (returns G rows for them)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    enc = model.tokenizer([text], return_tensors="pt")
    encoder = model.doc_encoder
    table = encoder.get_input_embeddings()
    ids = enc["input_ids"]
    special = torch.tensor(model.tokenizer.get_special_tokens_mask(
        ids[0].tolist(), already_has_special_tokens=True), dtype=torch.bool)
    x = table(ids)[0].detach()
    x0 = table(ids.masked_fill(~special, model.tokenizer.mask_token_id))[0].detach()
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    jac = torch.zeros(dims, *x.shape)
    for t, w in zip(0.5 * (nodes + 1), 0.5 * weights, strict=True):
        for d in range(dims):
            e = (x0 + float(t) * (x - x0)).unsqueeze(0).requires_grad_(True)
            hidden = encoder(inputs_embeds=e, attention_mask=enc["attention_mask"]
                             ).last_hidden_state
            v = F.normalize(hidden.mean(1), dim=-1)
            (g,) = torch.autograd.grad(v[0, d], e)
            jac[d] += float(w) * g[0]
    return (jac * (x - x0)).sum(-1)


def worker(args: argparse.Namespace) -> None:
    import torch

    from irlens.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model("default", device="cpu")
    q, d = _texts(model, args.query_tokens, args.doc_tokens)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if args.worker == "irlens":
        from irlens.attribution.pairs import IntegratedJacobians

        [r] = IntegratedJacobians(model, n_steps=args.steps, memory_budget="1GB",
                                  mode=args.mode).attribute(q, d)
        shape = list(r.matrix.shape)
        scale = 1.0
    else:
        for text, side in ((q, "query"), (d, "doc")):
            g = _loop_side(model, text, side, args.steps, args.loop_dims)
        shape = [len(model.tokenizer(q)["input_ids"]), int(g.shape[1])]
        scale = 384 / args.loop_dims
    seconds = (time.perf_counter() - start) * scale
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"side": args.worker, "seconds": seconds, "peak_bytes": peak,
                      "shape": shape, "scaled_by": scale}))


def _spawn(args: argparse.Namespace, side: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps),
           "--loop-dims", str(args.loop_dims), "--query-tokens", str(args.query_tokens),
           "--doc-tokens", str(args.doc_tokens), "--mode", args.mode,
           "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["irlens", "loop"])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--loop-dims", type=int, default=48)
    p.add_argument("--query-tokens", type=int, default=30)
    p.add_argument("--doc-tokens", type=int, default=126)
    p.add_argument("--mode", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    runs: dict[str, list[dict]] = {"irlens": [], "loop": []}
    for _ in range(args.repeats):
        for side in ("irlens", "loop"):  # alternate sides
            runs[side].append(_spawn(args, side))
            print(side, runs[side][-1], file=sys.stderr, flush=True)
    best = {s: min(r, key=lambda x: x["seconds"]) for s, r in runs.items()}
    result = {"config": vars(args) | {"worker": None}, "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "best": best, "runs": runs,
              "speedup": best["loop"]["seconds"] / best["irlens"]["seconds"]}
    out = REPO / "benchmarks" / "results" / "pairs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"{'side':<8} {'seconds':>9} {'peak MB':>9}  tokens (query x doc)")
    for side, r in best.items():
        print(f"{side:<8} {r['seconds']:>9.1f} {r['peak_bytes'] / 2**20:>9.0f}  "
              f"{r['shape'][0]} x {r['shape'][1]}")
    print(f"speed-up: {result['speedup']:.1f}x (steps={args.steps}, loop timed on "
          f"{args.loop_dims} of 384 dimensions and scaled)")


if __name__ == "__main__":
    main()
