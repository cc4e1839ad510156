"""Neuron Integrated Gradients: conductance of every FFN unit and attention head at once.

Vast et al., ICTIR 2024 (after Dhamdhere et al., 2018). On the straight path from a
baseline x' to the input x in word-embedding space, at points a_0 = 0 < ... < a_n = 1,
the attribution of a hidden unit h is

    NIG(h) = sum_k (h(a_k) - h(a_{k-1})) * dF/dh(a_k)        (rule="right", the paper's)

(``rule="left"`` takes the gradient at a_{k-1}, as Captum's LayerConductance does;
``"trapezoid"`` averages both, a second-order rule). Because the path is in input space,
one forward and one backward over the path points yield every unit of every layer.

The engine batches several pairs' path points into one forward/backward, takes
gradients with respect to the hooked activations only (no parameter gradients), and
reduces each chunk at once: per pair, each unit is summed per segment ([CLS], query,
[SEP], document, [SEP]) and each head per segment-to-segment block. Memory therefore
grows with the chunk (bounded by ``memory_gb``), not with steps x tokens x units. A pair
whose path does not fit is split into step blocks, carrying the last point's activations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from irlens._path import quadrature
from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points
from irlens.models import BiEncoder, CrossEncoder, Retriever
from irlens.neurons._inputs import BASELINES, SEGMENTS, TARGETS, Problem, build_problem
from irlens.neurons.result import NeuronAttribution

__all__ = ["RULES", "NeuronIntegratedGradients"]

RULES = ("right", "left", "trapezoid")


class NeuronIntegratedGradients:
    """NIG of every FFN unit (``ffn="post"`` or ``"pre"`` activation) and attention head.

    Args:
        model: a cross-encoder or bi-encoder from :func:`irlens.load_model`.
        n_steps: intervals on the path (``n_steps + 1`` points, uniform).
        ffn: ``"post"`` (after the activation, the default) or ``"pre"`` (the
            ``intermediate.dense`` output the authors hooked). Conductance through an
            elementwise activation is the same up to quadrature error.
        attention: also attribute attention probabilities (per head, per segment block).
        output: cross-encoders: ``"prob"`` (sigmoid / softmax index 1, the paper's) or
            ``"logit"``; bi-encoders: ``"similarity"`` (the model's dot or cosine).
        target: the segments that move from the baseline: ``"both"`` (query and document,
            special tokens kept), ``"query"`` (the authors' query-only baseline) or
            ``"doc"``. For bi-encoders it is the encoder pass(es) interpolated; the other
            side's vector is held fixed. Default: ``both`` (cross), ``doc`` (bi).
        baseline: token the moving positions start from: ``"pad"``, ``"mask"`` or ``"zero"``.
        rule: ``"right"`` (paper), ``"left"`` (Captum) or ``"trapezoid"``.
        completeness: also attribute each layer's output (a cut) to check completeness.
        memory_gb: budget for one chunk of path points (default: 60% of free GPU memory,
            or 4 GB on CPU); ``max_rows`` overrides it with a fixed number of rows.
    """

    def __init__(self, model: Retriever, *, n_steps: int = 20, ffn: str = "post",
                 attention: bool = True, output: str | None = None, target: str | None = None,
                 baseline: str = "pad", rule: str = "right", completeness: bool = True,
                 memory_gb: float | None = None, max_rows: int | None = None):
        if not isinstance(model, (CrossEncoder, BiEncoder)):
            raise IrlensError(f"NIG needs an irlens retriever, got {type(model).__name__}; "
                              "load one with irlens.load_model")
        is_cross = isinstance(model, CrossEncoder)
        output = output or ("prob" if is_cross else "similarity")
        target = target or ("both" if is_cross else "doc")
        allowed = ("prob", "logit") if is_cross else ("similarity",)
        checks = [("output", output, allowed), ("ffn", ffn, ("post", "pre")),
                  ("target", target, TARGETS), ("baseline", baseline, BASELINES),
                  ("rule", rule, RULES)]
        for name, value, choices in checks:
            if value not in choices:
                raise IrlensError(f"unknown {name} '{value}'; use {', '.join(choices)}")
        if not isinstance(n_steps, int) or n_steps < 1:
            raise IrlensError(f"n_steps must be an integer >= 1, got {n_steps}")
        if memory_gb is not None and (not math.isfinite(memory_gb) or memory_gb <= 0):
            raise IrlensError(f"memory_gb must be a positive number, got {memory_gb}")
        if max_rows is not None and max_rows < 1:
            raise IrlensError(f"max_rows must be >= 1, got {max_rows}")
        self.model = model
        self.n_steps = n_steps
        self.ffn = ffn
        self.attention = attention
        self.output = output
        self.target = target
        self.baseline = baseline
        self.rule = rule
        self.completeness = completeness
        self.memory_gb = memory_gb
        self.max_rows = max_rows
        # uniform points 0, 1/n, ..., 1 (the trapezoid rule's nodes in irlens._path)
        self.alphas = quadrature(n_steps + 1, "riemann_trapezoid")[0]

    # -- configuration ---------------------------------------------------------------------
    @property
    def parameters(self) -> dict:
        return {"method": "nig", "n_steps": self.n_steps, "ffn": self.ffn,
                "attention": self.attention, "output": self.output, "target": self.target,
                "baseline": self.baseline, "rule": self.rule}

    def hook_names(self, side: str | None = None) -> list[str]:
        """Hook points attributed: FFN then attention, one per layer."""
        n = self._n_layers(side)
        names = [f"layer.{i}.ffn.{self.ffn}" for i in range(n)]
        if self.attention:
            names += [f"layer.{i}.attn.probs" for i in range(n)]
        return names

    def _sides(self) -> list[str | None]:
        if isinstance(self.model, CrossEncoder):
            return [None]
        return ["query", "doc"] if self.target == "both" else [self.target]

    def _n_layers(self, side: str | None) -> int:
        return sum(1 for p in hook_points(self.model, side).values() if p.kind == "resid")

    def _shapes(self) -> tuple[int, int, int, int]:
        points = hook_points(self.model, self._sides()[0])
        layers = self._n_layers(self._sides()[0])
        return (layers, points["layer.0.ffn.post"].units, points["layer.0.attn.probs"].units,
                points["layer.0.resid"].units)

    def _rows_per_chunk(self, n_tokens: int) -> int:
        """Path points (rows) one forward/backward may hold, from the memory budget."""
        if self.max_rows is not None:
            return self.max_rows
        layers, n_ffn, n_heads, hidden = self._shapes()
        size = torch.finfo(self.model.dtype).bits // 8
        per_layer = n_tokens * (8 * n_ffn + 24 * hidden)
        if self.attention:
            per_layer += 6 * n_heads * n_tokens * n_tokens
        per_row = size * layers * per_layer * len(self._sides())
        budget = self.memory_gb
        if budget is None:
            if self.model.device.type == "cuda":
                budget = 0.6 * torch.cuda.mem_get_info(self.model.device)[0] / 2**30
            else:
                budget = 4.0
        return max(1, int(budget * 2**30 // per_row))

    # -- the pass --------------------------------------------------------------------------
    def attribute(self, queries: Sequence[str], docs: Sequence[str], *,
                  progress: bool = False) -> NeuronAttribution:
        """NIG of every unit for the pairs ``(queries[i], docs[i])``."""
        queries, docs = list(queries), list(docs)
        if isinstance(queries, str) or len(queries) != len(docs):
            raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
        if not queries:
            raise IrlensError("no pairs to attribute; pass at least one query and document")
        layers, n_ffn, n_heads, _ = self._shapes()
        n = len(queries)
        ffn = np.zeros((n, layers, len(SEGMENTS), n_ffn))
        attn = np.zeros((n, layers, n_heads, len(SEGMENTS), len(SEGMENTS))) \
            if self.attention else None
        resid = np.zeros((n, layers)) if self.completeness else None
        score, base = np.zeros(n), np.zeros(n)
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="NIG", unit="pair", disable=not progress)
        for group in self._groups(queries, docs):
            problem = build_problem(self.model, [queries[i] for i in group],
                                    [docs[i] for i in group], self.target, self.baseline,
                                    self.output)
            out = self._integrate(problem)
            ffn[group], score[group], base[group] = out["ffn"], out["score"], out["base"]
            if attn is not None:
                attn[group] = out["attn"]
            if resid is not None:
                resid[group] = out["resid"]
            bar.update(len(group))
        bar.close()
        return NeuronAttribution(self.model.model_id, self.hook_names(self._sides()[0]), ffn,
                                 attn, score, base, resid, self.parameters)

    def _lengths(self, queries: list[str], docs: list[str]) -> list[int]:
        tok, limit = self.model.tokenizer, self.model.max_length
        if isinstance(self.model, CrossEncoder):
            enc = tok(queries, docs, truncation="only_second", max_length=limit)
            return [len(ids) for ids in enc["input_ids"]]
        lengths = [0] * len(queries)
        for side in self._sides():
            texts = queries if side == "query" else docs
            enc = tok(texts, truncation=True, max_length=limit)
            lengths = [a + len(ids) for a, ids in zip(lengths, enc["input_ids"], strict=True)]
        return lengths

    def _groups(self, queries: list[str], docs: list[str]) -> list[list[int]]:
        """Pairs of similar length, longest first, as many as fit a chunk at full path."""
        lengths = self._lengths(queries, docs)
        order = sorted(range(len(queries)), key=lambda i: -lengths[i])
        groups, start = [], 0
        while start < len(order):
            tokens = lengths[order[start]] // len(self._sides())
            size = max(1, self._rows_per_chunk(tokens) // (self.n_steps + 1))
            groups.append(order[start:start + size])
            start += size
        return groups

    def _integrate(self, problem: Problem) -> dict[str, np.ndarray]:
        g, n = problem.n_pairs, self.n_steps
        tokens = max(s.n_tokens for s in problem.streams)
        block = max(1, min(n + 1, self._rows_per_chunk(tokens) // g))
        # one capture for every pass: calls come in stream order (query pass first)
        side = None if "shared" in self.model.encoders() else problem.streams[0].side
        acc: dict[str, torch.Tensor] = {}
        carry: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        scores = torch.zeros(n + 1, g, dtype=torch.float64)
        for k0 in range(0, n + 1, block):
            alphas = self.alphas[k0:k0 + block]
            kb = len(alphas)
            with capture(self.model, self._capture_names(side), side=side, grad=True) as cache:
                values = problem.forward(alphas)
            tensors = [(si, name, cache.calls(name)[si]) for name in cache.keys()
                       for si in range(len(problem.streams))]
            grads = torch.autograd.grad(values.sum(), [t for _, _, t in tensors])
            scores[k0:k0 + kb] = values.detach().double().view(kb, g).cpu()
            for (si, name, act), grad in zip(tensors, grads, strict=True):
                act = act.detach().view(kb, g, *act.shape[1:])
                grad = grad.view(kb, g, *grad.shape[1:])
                contrib = self._contribution(act, grad, carry.get((si, name)), k0 == 0)
                carry[(si, name)] = (act[-1], grad[-1])
                reduced = _reduce(name, contrib, problem.streams[si].onehot)
                acc[name] = acc[name] + reduced if name in acc else reduced
            del tensors, grads, values, cache
        return self._collect(acc, scores)

    def _capture_names(self, side: str | None) -> list[str]:
        names = self.hook_names(side)
        if self.completeness:
            names = names + [f"layer.{i}.resid" for i in range(self._n_layers(side))]
        return names

    def _contribution(self, act: torch.Tensor, grad: torch.Tensor,
                      carry: tuple[torch.Tensor, torch.Tensor] | None, first: bool
                      ) -> torch.Tensor:
        """Sum over this block's intervals of (h_k - h_{k-1}) * gradient -> [g, ...]."""
        work = torch.float64 if act.dtype == torch.float64 else torch.float32
        act, grad = act.to(work), grad.to(work)
        if self.rule == "right":
            inner = grad[1:]
        elif self.rule == "left":
            inner = grad[:-1]
        else:
            inner = 0.5 * (grad[1:] + grad[:-1])
        total = ((act[1:] - act[:-1]) * inner).sum(0)
        if not first:
            prev_act, prev_grad = (t.to(work) for t in carry)
            edge = {"right": grad[0], "left": prev_grad,
                    "trapezoid": 0.5 * (grad[0] + prev_grad)}[self.rule]
            total = total + (act[0] - prev_act) * edge
        return total

    def _collect(self, acc: dict[str, torch.Tensor], scores: torch.Tensor
                 ) -> dict[str, np.ndarray]:
        layers = self._n_layers(self._sides()[0])
        stack = {kind: [acc[f"layer.{i}.{kind}"] for i in range(layers)]
                 for kind in (f"ffn.{self.ffn}", "attn.probs", "resid")
                 if f"layer.0.{kind}" in acc}
        out = {"ffn": torch.stack(stack[f"ffn.{self.ffn}"], 1).cpu().numpy(),
               "score": scores[-1].numpy(), "base": scores[0].numpy()}
        if "attn.probs" in stack:
            out["attn"] = torch.stack(stack["attn.probs"], 1).cpu().numpy()
        if "resid" in stack:
            out["resid"] = torch.stack(stack["resid"], 1).cpu().numpy()
        return out


def _reduce(name: str, contrib: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Per pair: FFN [g, T, I] -> [g, 5, I]; attention [g, A, T, T] -> [g, A, 5, 5];
    layer output [g, T, H] -> [g]. Accumulated in float64."""
    hot = onehot.to(contrib.dtype)
    if name.endswith("attn.probs"):
        by_key = torch.einsum("gaqk,gks->gaqs", contrib, hot)
        out = torch.einsum("gaqs,gqr->gars", by_key, hot)
    elif name.endswith("resid"):
        out = contrib.sum(dim=(1, 2))
    else:
        out = torch.einsum("gtu,gts->gsu", contrib, hot)
    return out.double()

