"""Neuron Integrated Gradients: conductance of every FFN unit and attention head at once.

Vast et al., ICTIR 2024 (after Dhamdhere et al., ICLR 2019). On the straight path from
a baseline x' to the input x in word-embedding space, at ``n_steps`` uniform points
a_0 = 0 < ... < a_{n-1} = 1, the attribution of a hidden unit h is

    NIG(h) = sum_k (h(a_k) - h(a_{k-1})) * dF/dh(a_k)     (rule="riemann_right", the paper's)

(``"riemann_left"`` takes the gradient at a_{k-1}, as Captum's LayerConductance does;
``"riemann_trapezoid"`` averages both, a second-order rule). Because the path is in
input space, one forward and one backward over the path points yield every unit of
every layer.

A consumer of :mod:`irlens.paths`: one row per (pair, point), chunked under
``memory_budget`` with parameters frozen; the engine captures the hooked activations
and their gradients, and this module's reduction sums each chunk at once, per pair,
per unit and segment (``[CLS]``, query, ``[SEP]``, document, ``[SEP]``, prefix), and per
head and segment-to-segment block. A pair whose path spans two chunks carries its last
point into the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from irlens._warn import warn
from irlens.errors import IrlensError
from irlens.hooks import hook_points
from irlens.models import BiEncoder, CrossEncoder, Retriever, Segment
from irlens.neurons.result import SEGMENTS, NeuronAttribution
from irlens.paths import (
    TARGETS,
    Baseline,
    Chunk,
    Engine,
    Rows,
    Stream,
    build_problem,
    parse_memory,
    prepare_texts,
    quadrature,
)

__all__ = ["RULES", "NeuronIntegratedGradients", "check_nig_options", "segment_onehot"]

RULES = ("riemann_right", "riemann_left", "riemann_trapezoid")
_SHORT = {"right": "riemann_right", "left": "riemann_left", "trapezoid": "riemann_trapezoid"}


def segment_onehot(stream: Stream, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[P, T, len(SEGMENTS)] indicator of each token's segment (padding: all zero). The
    query pass's closing ``[SEP]`` of a bi-encoder plays the pair's first ``[SEP]``."""
    segments = stream.batch.segments
    if stream.side == "query":
        segments = torch.where(segments == Segment.END, Segment.SEP, segments)
    hot = F.one_hot(segments.clamp(min=0), len(SEGMENTS)).to(dtype)
    return hot * (segments >= 0).unsqueeze(-1).to(dtype)


def check_nig_options(*, n_steps: int = 21, ffn: str = "post", target: str | None = None,
                      baseline: str = "pad", rule: str = "riemann_right",
                      memory_budget: str | int | None = "1GB") -> None:
    """Refuse bad NIG options with a one-line :class:`IrlensError` (no model needed, so a
    command checks them before loading one)."""
    checks = [("ffn", ffn, ("post", "pre")), ("target", target or "both", TARGETS),
              ("rule", _SHORT.get(rule, rule), RULES)]
    for name, value, choices in checks:
        if value not in choices:
            raise IrlensError(f"unknown {name} '{value}'; use {', '.join(choices)}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise IrlensError(f"n_steps must be an integer >= 2 (points on the path), "
                          f"got {n_steps}")
    Baseline.parse(baseline)
    if memory_budget is not None:
        parse_memory(memory_budget)


class NeuronIntegratedGradients:
    """NIG of every FFN unit (``ffn="post"`` or ``"pre"`` activation) and attention head.

    Args:
        model: a cross-encoder or bi-encoder from :func:`irlens.load_model`.
        n_steps: points on the path (``n_steps - 1`` intervals, uniform), as for every
            irlens path method.
        ffn: ``"post"`` (after the activation, the default) or ``"pre"`` (the
            ``intermediate.dense`` output the authors hooked).
        attention: also attribute attention probabilities (per head, per segment block).
        output: cross-encoders: ``"prob"`` (the paper's) or ``"logit"``; bi-encoders:
            ``"similarity"`` (the model's dot or cosine).
        target: the segments that move from the baseline: ``"both"``, ``"query"`` (the
            authors' query-only baseline) or ``"doc"``. For bi-encoders it is the encoder
            pass(es) interpolated; the other side's vector is held fixed. Default:
            ``both`` (cross), ``doc`` (bi).
        baseline: ``"pad"`` (default), ``"mask"``, ``"zero"`` or ``"text:<words>"``.
        rule: ``"riemann_right"`` (paper), ``"riemann_left"`` (Captum) or
            ``"riemann_trapezoid"``.
        completeness: also attribute each layer's output (a cut) to check completeness,
            and warn when a layer's gap exceeds ``gap_tolerance`` of |F(x) - F(x')|.
        memory_budget: activation memory per forward+backward chunk (``"1GB"``).
    """

    name = "nig"

    def __init__(self, model: Retriever, *, n_steps: int = 21, ffn: str = "post",
                 attention: bool = True, output: str | None = None, target: str | None = None,
                 baseline: str = "pad", rule: str = "riemann_right", completeness: bool = True,
                 memory_budget: str | int | None = "1GB", gap_tolerance: float = 0.01):
        if not isinstance(model, (CrossEncoder, BiEncoder)):
            raise IrlensError(f"NIG needs an irlens retriever, got {type(model).__name__}; "
                              "load one with irlens.load_model")
        is_cross = isinstance(model, CrossEncoder)
        output = output or ("prob" if is_cross else "similarity")
        target = target or ("both" if is_cross else "doc")
        rule = _SHORT.get(rule, rule)
        allowed = ("prob", "logit") if is_cross else ("similarity",)
        if output not in allowed:
            raise IrlensError(f"unknown output '{output}'; use {', '.join(allowed)}")
        check_nig_options(n_steps=n_steps, ffn=ffn, target=target, baseline=baseline,
                          rule=rule, memory_budget=memory_budget)
        if target == "both" and not is_cross and "shared" not in model.encoders():
            raise IrlensError("target 'both' needs one shared encoder; for two-encoder (DPR) "
                              "models attribute target 'query' and 'doc' separately")
        self.model = model
        self.n_steps = n_steps
        self.ffn = ffn
        self.attention = attention
        self.output = output
        self.target = target
        self.baseline = str(Baseline.parse(baseline))
        self.rule = rule
        self.completeness = completeness
        self.memory_budget = memory_budget
        self.gap_tolerance = gap_tolerance
        self.alphas = quadrature(n_steps, "riemann_trapezoid")[0]  # 0, 1/(n-1), ..., 1

    # -- configuration ---------------------------------------------------------------------
    def get_params(self) -> dict:
        """What changes the numbers (recorded in every result)."""
        return {"method": "nig", "n_steps": self.n_steps, "ffn": self.ffn,
                "attention": self.attention, "output": self.output, "target": self.target,
                "baseline": self.baseline, "rule": self.rule}

    parameters = property(get_params)

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_params().items() if k != "method"}
        return f"nig({', '.join(f'{k}={v}' for k, v in params.items())})"

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

    def _capture_names(self, side: str | None) -> list[str]:
        names = self.hook_names(side)
        if self.completeness:
            names = names + [f"layer.{i}.resid" for i in range(self._n_layers(side))]
        return names

    # -- the pass --------------------------------------------------------------------------
    def attribute(self, queries: Sequence[str] | str, docs: Sequence[str] | str, *,
                  progress: bool = False) -> NeuronAttribution:
        """NIG of every unit for the pairs ``(queries[i], docs[i])`` (a bare string pair
        is one pair)."""
        queries, docs, _ = prepare_texts(self.model, queries, docs, None)
        problem = build_problem(self.model, queries, docs, self.target, self.baseline,
                                self.output, self.memory_budget)
        names = self._capture_names(problem.streams[0].hook_side)
        engine = Engine(problem, self.memory_budget, capture=names, progress=progress,
                        desc="NIG")
        n, k = problem.n_pairs, self.n_steps
        rows = Rows.paths(n, self.alphas, torch.ones(k))
        reduction = _Conductance(self, problem.streams, names, n, torch.arange(k).repeat(n))
        engine.run(rows, reduction)
        out = reduction.collect()
        result = NeuronAttribution(
            self.model.model_id, self.hook_names(problem.streams[0].hook_side), out["ffn"],
            out.get("attn"), out["score"], out["base"], out.get("resid"), self.get_params(),
            manifest=_manifest(self, names))
        if result.resid is not None:
            _warn_layer_gaps(result, self.gap_tolerance, self.rule)
        return result


def _manifest(nig: NeuronIntegratedGradients, names: list[str]):
    from irlens.artifacts import make_manifest

    return make_manifest(NeuronAttribution.kind, nig.get_params(), model=nig.model,
                         hooks=names)


def _warn_layer_gaps(result: NeuronAttribution, tolerance: float, rule: str) -> None:
    from irlens.attribution import CompletenessWarning, gap_fix

    delta = np.abs(result.delta)[:, None]
    gap = np.abs(result.completeness_gap)
    bad = gap > tolerance * delta + 1e-4
    if bad.any():
        layers = sorted(set(np.nonzero(bad)[1].tolist()))
        worst = float(np.max(gap / np.maximum(delta, 1e-12)))
        warn(f"NIG completeness gap above {tolerance:.1%} of |F(x) - F(x')| in layer(s) "
             f"{', '.join(map(str, layers))} for {int(bad.any(1).sum())} of {len(result)} "
             f"pairs (worst {worst:.1%}); {gap_fix(rule, 'riemann_trapezoid')}",
             CompletenessWarning)


class _Conductance:
    """The reduction: per row, (h_k - h_{k-1}) * gradient, summed per segment, added to
    its pair. Rows come pair-major in path order; a pair split over chunks carries its
    last (activation, gradient) into the next chunk."""

    def __init__(self, nig: NeuronIntegratedGradients, streams: list[Stream],
                 names: list[str], n_pairs: int, step: torch.Tensor):
        self.nig = nig
        self.names = names
        self.step = step
        self.last = nig.n_steps - 1
        self.onehot = [segment_onehot(s) for s in streams]
        self.acc: dict[str, torch.Tensor] = {}
        self.carry: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.score = torch.zeros(n_pairs, dtype=torch.float64)
        self.base = torch.zeros(n_pairs, dtype=torch.float64)

    def __call__(self, chunk: Chunk) -> None:
        step = self.step[chunk.idx].to(chunk.pair.device)
        pair = chunk.pair
        values = chunk.values.double().cpu()
        self.score[pair.cpu()[step.cpu() == self.last]] = values[step.cpu() == self.last]
        self.base[pair.cpu()[step.cpu() == 0]] = values[step.cpu() == 0]
        rule = self.nig.rule
        uniq, inverse = torch.unique_consecutive(pair, return_inverse=True)
        for name in self.names:
            for k, (act, grad) in enumerate(zip(chunk.acts[name], chunk.act_grads[name],
                                                strict=True)):
                work = torch.float64 if act.dtype == torch.float64 else torch.float32
                act, grad = act.detach().to(work), grad.to(work)
                prev_act, prev_grad = torch.roll(act, 1, 0), torch.roll(grad, 1, 0)
                if int(step[0]) > 0:  # continues a pair from the previous chunk
                    ca, cg = self.carry[(k, name)]
                    prev_act[0], prev_grad[0] = _fit(ca, act[0]), _fit(cg, grad[0])
                weight = {"riemann_right": grad, "riemann_left": prev_grad,
                          "riemann_trapezoid": 0.5 * (grad + prev_grad)}[rule]
                contrib = (act - prev_act).mul_(weight)
                contrib[step == 0] = 0
                self.carry[(k, name)] = (act[-1].clone(), grad[-1].clone())
                # sum each pair's rows first (they are contiguous), then segments
                summed = torch.zeros((len(uniq), *contrib.shape[1:]), dtype=work,
                                     device=contrib.device).index_add_(0, inverse, contrib)
                reduced = _reduce(name, summed, self.onehot[k][uniq, :act.shape[-2]])
                if name not in self.acc:
                    self.acc[name] = torch.zeros((len(self.score), *reduced.shape[1:]),
                                                 dtype=torch.float64, device=reduced.device)
                self.acc[name].index_add_(0, uniq, reduced)

    def collect(self) -> dict[str, np.ndarray]:
        layers = sum(1 for n in self.names if n.endswith(".resid")) or \
            sum(1 for n in self.names if ".ffn." in n)
        out = {"score": self.score.numpy(), "base": self.base.numpy()}
        for key, kind in (("ffn", f"ffn.{self.nig.ffn}"), ("attn", "attn.probs"),
                          ("resid", "resid")):
            if f"layer.0.{kind}" in self.acc:
                out[key] = torch.stack([self.acc[f"layer.{i}.{kind}"] for i in range(layers)],
                                       1).cpu().numpy()
        return out


def _fit(saved: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A carried row cut or zero-padded to ``like``'s token width(s) (padding only)."""
    if saved.shape == like.shape:
        return saved
    out = torch.zeros_like(like)
    region = tuple(slice(0, min(a, b)) for a, b in zip(saved.shape, like.shape, strict=True))
    out[region] = saved[region]
    return out


def _reduce(name: str, contrib: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Per row: FFN [R, T, I] -> [R, S, I]; attention [R, A, T, T] -> [R, A, S, S];
    layer output [R, T, H] -> [R]. Returned in float64."""
    hot = onehot.to(contrib.dtype)
    if name.endswith("attn.probs"):
        by_key = torch.einsum("gaqk,gks->gaqs", contrib, hot)
        out = torch.einsum("gaqs,gqr->gars", by_key, hot)
    elif name.endswith("resid"):
        out = contrib.sum(dim=(1, 2))
    else:
        out = torch.einsum("gtu,gts->gsu", contrib, hot)
    return out.double()
