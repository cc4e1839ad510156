"""Knowledge-neuron attribution speed: irlens's suffix path vs a loop per example and layer.

Same run, same examples (SciFact test queries and their relevant abstracts, the real
default model), same quadrature nodes (``--rule``; default Dai et al.'s right Riemann sum,
``--steps 20`` their setting): every FFN key (``ffn.post``) and value (``ffn.out``) unit
of every layer, target = similarity with the relevant partner.

- ``irlens``: :class:`irlens.activations.KnowledgeNeurons` with its CPU default,
  ``passes="suffix"``: one clean forward per chunk of examples, then per layer the
  scaled rows of every example, key and value together, run only from that layer's FFN
  output upwards (forward and backward); an alpha=1 node takes the clean pass's
  gradients; zeroed rows run forward only;
- ``loop``: Dai et al.'s (2022) scheme: for each example and each (sublayer, layer),
  one forward of that layer's ``steps`` scaled copies plus the zeroed copy (the
  completeness baseline irlens also returns) through a plain torch hook on the Hugging
  Face module, then ``torch.autograd.grad`` (parameters frozen: the backward stops at the
  scaled layer).

Both sides compute the same numbers; what differs is the arithmetic. Per example and
for a model of L layers with m nodes (no alpha=1 node), in layer-rows (one layer
applied to one row): the loop runs 2 x L x (m + 1) rows through all L layers forward
(2 L^2 (m + 1)) and backward from the top to each row's layer (about 2 (m + 1) L (L - 1)
/ 2); the suffix path runs the same rows forward only through the layers above their
own (2 (m + 1) L (L - 1) / 2) and the same backward (without the zeroed rows), plus one
clean pass. For MiniLM-L6 and m = 20: 1512 + 630 vs 636 + 600 layer-rows, about 1.7x
less arithmetic. Every scaled row needs its own backward through the layers above its
own (its own Jacobians), so even a free forward would leave the 600 and cap any exact
method at about 3.6x over the loop.

The sides alternate (irlens, loop, irlens, loop, ...), each in its own process, best of
``--repeats`` of the wall time and of the process's CPU time (all threads; the fairer
figure when other jobs share the cores); peak memory is the process's max RSS above the
loaded model. The table is printed and written to ``--out`` (default
``benchmarks/results/activations.json``) with the max absolute difference between the
two sides' attributions.

Usage: python benchmarks/activations.py [--queries 8] [--docs 4] [--steps 20]
    [--max-length 128] [--threads 2] [--rule riemann_right]
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


def _examples(n: int):
    from irlens.activations import examples_for
    from irlens.data import load_dataset

    dataset = load_dataset(DATA)
    pairs = examples_for(dataset, n, seed=0)
    return [dataset.queries[q] for q, _ in pairs], dataset.doc_texts([d for _, d in pairs])


def _loop(model, texts, side, partners, steps, rule):
    """Per example, per (sublayer, layer): hooks on the HF modules, steps in one batch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from irlens.activations import nodes

    alphas, weights = nodes(steps, rule)
    encoder = model.query_encoder if side == "query" else model.doc_encoder
    for p in encoder.parameters():
        p.requires_grad_(False)
    layers = encoder.encoder.layer
    out = {"keys": np.zeros((len(texts), len(layers), encoder.config.intermediate_size)),
           "values": np.zeros((len(texts), len(layers), encoder.config.hidden_size)),
           "zeroed": np.zeros((len(texts), 2, len(layers)))}
    tok = model.tokenizer
    for i, text in enumerate(texts):
        enc = tok([text], truncation=True, max_length=model.max_length, return_tensors="pt")
        for s, sub in enumerate(("keys", "values")):
            for layer_index, layer in enumerate(layers):
                module = layer.intermediate if sub == "keys" else layer.output.dense
                factor = torch.tensor([*alphas, 0.0], dtype=torch.float32)
                seen = {}

                def hook(_m, _i, act, factor=factor, seen=seen):
                    seen["clean"] = act.detach()
                    seen["scaled"] = act * factor.view(-1, 1, 1)
                    if not seen["scaled"].requires_grad:
                        seen["scaled"].requires_grad_(True)
                    return seen["scaled"]

                handle = module.register_forward_hook(hook)
                try:
                    rows = {k: v.repeat(len(factor), 1) for k, v in enc.items()}
                    with torch.enable_grad():
                        hidden = encoder(**rows).last_hidden_state
                        mask = rows["attention_mask"].unsqueeze(-1).float()
                        pooled = (hidden * mask).sum(1) / mask.sum(1)
                        value = F.cosine_similarity(pooled, partners[i][None], dim=-1)
                        (grad,) = torch.autograd.grad(value.sum(), seen["scaled"])
                finally:
                    handle.remove()
                per_step = (seen["clean"] * grad).sum(1).double().numpy()  # [steps+1, U]
                out[sub][i, layer_index] = (weights[:, None] * per_step[:-1]).sum(0)
                out["zeroed"][i, s, layer_index] = float(value[-1].detach())
    return out


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from irlens.activations import KnowledgeNeurons
    from irlens.models import load_model

    model = load_model("default", device="cpu", max_length=args.max_length)
    queries, docs = _examples(max(args.queries, args.docs))
    cases = [("query", queries[:args.queries], model.encode_docs(docs[:args.queries])),
             ("doc", docs[:args.docs], model.encode_queries(queries[:args.docs]))]

    def run(texts, side, partners, steps):
        if args.side == "irlens":
            kn = KnowledgeNeurons(model, n_steps=steps, rule=args.rule,
                                  memory_budget=args.memory_budget)
            assert kn.passes == "suffix"
            return kn.attribute(texts, side, partners)
        return _loop(model, texts, side, partners, steps, args.rule)

    run(queries[:1], "query", cases[0][2][:1], 2)  # warm-up (first calls), both sides
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results = {}
    for side, texts, partners in cases:
        start, cpu = time.perf_counter(), time.process_time()
        out = run(texts, side, partners, args.steps)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        path = Path(args.dump) / f"{args.side}-{side}.npz"
        np.savez(path, keys=out["keys"], values=out["values"], zeroed=out["zeroed"])
        results[side] = {"seconds": seconds, "cpu_seconds": cpu, "examples": len(texts)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"results": results, "peak_rss_mb": peak / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rule", choices=["riemann_right", "gausslegendre"],
                        default="riemann_right")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"
                                             / "activations.json"))
    parser.add_argument("--memory-budget", default="2GB")
    parser.add_argument("--side", choices=["irlens", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        worker(args)
        return
    import tempfile

    import numpy as np

    dump = tempfile.mkdtemp(prefix="irlens-bench-")
    runs: dict[str, list[dict]] = {"irlens": [], "loop": []}
    for _ in range(args.repeats):
        for side in ("irlens", "loop"):
            cmd = [sys.executable, __file__, "--side", side, "--dump", dump,
                   *[f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                     if k not in ("side", "dump", "out")]]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"  {side}: {runs[side][-1]}", file=sys.stderr)
    rows = []
    for case in ("query", "doc"):
        best = {s: min(r["results"][case]["seconds"] for r in runs[s]) for s in runs}
        cpu = {s: min(r["results"][case]["cpu_seconds"] for r in runs[s]) for s in runs}
        fast, slow = (np.load(Path(dump) / f"{s}-{case}.npz") for s in ("irlens", "loop"))
        diff = max(float(np.abs(fast[k] - slow[k]).max()) for k in ("keys", "values", "zeroed"))
        scale = max(float(np.abs(slow[k]).max()) for k in ("keys", "values"))
        rows.append({"case": case, "examples": runs["irlens"][0]["results"][case]["examples"],
                     "irlens_s": best["irlens"], "loop_s": best["loop"],
                     "speedup": best["loop"] / best["irlens"],
                     "irlens_cpu_s": cpu["irlens"], "loop_cpu_s": cpu["loop"],
                     "cpu_speedup": cpu["loop"] / cpu["irlens"], "max_abs_diff": diff,
                     "max_abs_attribution": scale, "max_rel_diff": diff / scale})
    # the sum of each case's best (as the rows): a per-run sum mixes a quiet case with a
    # contended one on a shared machine
    total = {s: sum(row[f"{s}_s"] for row in rows) for s in runs}
    peak = {s: max(r["peak_rss_mb"] for r in runs[s]) for s in runs}
    print(f"{'case':6} {'n':>3} {'irlens s':>9} {'loop s':>8} {'speed-up':>8} {'CPU s':>13} "
          f"{'CPU speed-up':>12} {'max |diff|':>11} {'relative':>9}")
    for r in rows:
        print(f"{r['case']:6} {r['examples']:>3} {r['irlens_s']:9.2f} {r['loop_s']:8.2f} "
              f"{r['speedup']:7.1f}x {r['irlens_cpu_s']:6.1f}/{r['loop_cpu_s']:6.1f} "
              f"{r['cpu_speedup']:11.1f}x {r['max_abs_diff']:11.2e} {r['max_rel_diff']:9.1e}")
    print(f"total: irlens {total['irlens']:.2f}s, loop {total['loop']:.2f}s "
          f"({total['loop'] / total['irlens']:.1f}x); peak RSS above the model: irlens "
          f"{peak['irlens']:.0f} MB, loop {peak['loop']:.0f} MB")
    payload = {"config": {k: v for k, v in vars(args).items()
                          if k not in ("side", "dump", "out")},
               "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
               "rows": rows, "total_seconds": total,
               "total_speedup": total["loop"] / total["irlens"], "peak_rss_mb": peak}
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)  # atomic
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
