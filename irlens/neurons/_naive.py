"""The slow NIG reference: one backward per path step and per pair, as published code does.

It follows the authors' loop (Vast et al., ICTIR 2024): forward ``batch_size`` path points
of one pair, then call ``backward`` once per point (``retain_graph=True``, parameter
gradients included), copy every hooked activation and its gradient to the CPU, and
accumulate ``(h_k - h_{k-1}) * grad`` per position; segments are summed at the end. It
shares only the inputs (tokens, baseline, ``F``) with :mod:`irlens.neurons.nig`, so the
tests can check the engine against it, and ``benchmarks/neurons.py`` times it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from irlens.hooks import capture
from irlens.neurons._inputs import SEGMENTS, build_problem
from irlens.neurons.nig import NeuronIntegratedGradients
from irlens.neurons.result import NeuronAttribution

__all__ = ["naive_nig"]


def naive_nig(engine: NeuronIntegratedGradients, queries: Sequence[str], docs: Sequence[str],
              batch_size: int = 1) -> NeuronAttribution:
    """NIG of ``engine``'s configuration, pair by pair, one backward per path point."""
    parts = [_one_pair(engine, q, d, batch_size) for q, d in zip(queries, docs, strict=True)]
    return NeuronAttribution.concat(parts)


def _one_pair(engine: NeuronIntegratedGradients, query: str, doc: str,
              batch_size: int) -> NeuronAttribution:
    model = engine.model
    problem = build_problem(model, [query], [doc], engine.target, engine.baseline,
                            engine.output)
    side = None if "shared" in model.encoders() else problem.streams[0].side
    names = engine._capture_names(side)
    alphas = engine.alphas
    n_points = len(alphas)
    path: dict[tuple[int, str], torch.Tensor] = {}
    prev: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
    first_last = []
    for start in range(0, n_points, batch_size):
        block = alphas[start:start + batch_size]
        with capture(model, names, side=side, grad=True) as cache:
            values = problem.forward(block)
        for j in range(len(block)):
            model.zero_grad()
            values[j].backward(retain_graph=True)
            k = start + j
            if k in (0, n_points - 1):
                first_last.append(float(values[j].detach()))
            for name in cache.keys():
                for si, tensor in enumerate(cache.calls(name)):
                    grad = tensor.grad.detach().cpu()  # the whole batch, every time
                    value = tensor.detach().cpu()
                    key = (si, name)
                    if k > 0:
                        prev_value, prev_grad = prev[key]
                        weight = {"right": grad[j], "left": prev_grad,
                                  "trapezoid": 0.5 * (grad[j] + prev_grad)}[engine.rule]
                        term = (value[j] - prev_value) * weight
                        path[key] = path[key] + term if key in path else term
                    prev[key] = (value[j].clone(), grad[j].clone())
        del values, cache
    return _aggregate(engine, problem, path, first_last)


def _aggregate(engine: NeuronIntegratedGradients, problem, path, first_last
               ) -> NeuronAttribution:
    layers, n_ffn, n_heads, _ = engine._shapes()
    n_seg = len(SEGMENTS)
    ffn = np.zeros((1, layers, n_seg, n_ffn))
    attn = np.zeros((1, layers, n_heads, n_seg, n_seg)) if engine.attention else None
    resid = np.zeros((1, layers)) if engine.completeness else None
    for (si, name), total in path.items():
        masks = [problem.streams[si].onehot[0, :, s].cpu() > 0 for s in range(n_seg)]
        layer, kind = int(name.split(".")[1]), name.split(".", 2)[2]
        total = total.double()
        if kind == "attn.probs":
            for s, rows in enumerate(masks):
                for r, cols in enumerate(masks):
                    attn[0, layer, :, s, r] += total[:, rows][:, :, cols].sum((1, 2)).numpy()
        elif kind == "resid":
            resid[0, layer] += float(total.sum())
        else:
            for s, rows in enumerate(masks):
                ffn[0, layer, s] += total[rows].sum(0).numpy()
    return NeuronAttribution(engine.model.model_id, engine.hook_names(problem.streams[0].side),
                             ffn, attn, np.array([first_last[-1]]),
                             np.array([first_last[0]]), resid, engine.parameters)
