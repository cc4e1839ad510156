"""Knowledge-neuron attribution of every FFN unit of every layer, for one tower at a time.

Dai et al., "Knowledge Neurons in Pretrained Transformers" (ACL 2022): the attribution
of unit u of a layer with activation h is integrated gradients along a scaling of that
layer's activation from 0 to its value,

    Attr(u) = sum_t h_{t,u} * integral_0^1 dF(alpha h) / dh_{t,u} dalpha,

summed over the token positions t. The layers are the FFN intermediate after the
activation (``ffn.post``, "keys"; or ``ffn.pre``) and the FFN output (``ffn.out``,
"values"). Per layer the attributions are complete: they sum to F(x) - F(0 * layer).

Rows are (example, sublayer, layer, step): all of a chunk's rows run in ONE forward and
ONE backward, each row scaling only its own layer (the other layers' hooks multiply it
by 1), so examples, steps and layers are batched together (``passes="one"``). On a CPU,
``passes="per-layer"`` (the default there) runs one pass per layer instead, so that the
backward stops at that layer: a batched backward cannot skip the layers below a row's
own, and on a CPU arithmetic, not the number of calls, sets the time. Parameters are frozen during
the pass and restored afterwards. The chunk pass, :func:`scaled_activation_pass`, is the
activation-space path that a shared path engine can own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from irlens.errors import IrlensError
from irlens.hooks import hook_points, intervene
from irlens.models import BiEncoder
from irlens.paths import frozen, parse_memory, quadrature

__all__ = ["KEYS", "PASSES", "RULES", "SUBLAYERS", "TARGETS", "KnowledgeNeurons", "nodes",
           "scaled_activation_pass"]

SUBLAYERS = ("keys", "values")
KEYS = ("post", "pre")
TARGETS = ("relevance", "norm")
RULES = ("riemann_right", "gausslegendre")
PASSES = ("auto", "one", "per-layer")


def nodes(n_steps: int, rule: str = "riemann_right") -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in (0, 1] and weights (:func:`irlens.paths.quadrature`): Dai et al.'s
    right Riemann sum (alpha = k/m) or Gauss-Legendre (exact for polynomials of degree
    2m-1)."""
    if rule not in RULES:
        raise IrlensError(f"unknown rule '{rule}'; use {', '.join(RULES)}")
    alphas, weights = quadrature(n_steps, rule)
    return alphas.numpy(), weights.numpy()


def scaled_activation_pass(model: BiEncoder, batch, side: str,
                           factors: dict[str, torch.Tensor],
                           target: Callable[[torch.Tensor], torch.Tensor],
                           rows_for: dict[str, torch.Tensor],
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and one backward over ``batch`` with each named point's activation
    multiplied row-wise by ``factors[name]`` ([rows]).

    Returns ``target`` of the pooled vectors ([rows]) and, per name, the per-unit sum
    over tokens of (unscaled activation x gradient at the scaled activation) for the rows
    in ``rows_for[name]`` ([len(rows_for[name]), units]).
    """
    clean: dict[str, torch.Tensor] = {}
    scaled: dict[str, torch.Tensor] = {}

    def make(name: str):
        def edit(act: torch.Tensor, _ctx) -> torch.Tensor:
            f = factors[name].to(act.dtype).view(-1, *([1] * (act.dim() - 1)))
            out = act * f
            if not out.requires_grad:
                out.requires_grad_(True)
            clean[name], scaled[name] = act.detach(), out
            return out

        return edit

    names = list(factors)
    if not names:  # only unscaled rows
        with torch.no_grad():
            return target(model.forward_embeds(batch)).detach(), {}
    with frozen(model), torch.enable_grad():
        with intervene(model, {n: make(n) for n in names}, side=side,
                       label="knowledge-neuron scaling"):
            pooled = model.forward_embeds(batch)
        values = target(pooled)
        grads = torch.autograd.grad(values.sum(), [scaled[n] for n in names])
    mask = batch.attention_mask.to(values.dtype).unsqueeze(-1)
    out = {}
    for name, grad in zip(names, grads, strict=True):
        rows = rows_for[name]
        out[name] = (clean[name][rows] * grad[rows] * mask[rows]).sum(1)
    return values.detach(), out


@dataclass
class _Rows:
    example: torch.Tensor  # [rows] index into the group's examples
    point: torch.Tensor  # [rows] index into the point list, -1: clean row
    alpha: torch.Tensor  # [rows]
    weight: torch.Tensor  # [rows] quadrature weight, 0 for baseline/clean rows


class KnowledgeNeurons:
    """Knowledge-neuron IG for the FFN keys and values of every layer of one tower.

    Args:
        model: a bi-encoder from :func:`irlens.load_model`.
        n_steps: quadrature points on the scaling path (Dai et al.: 20).
        rule: ``riemann_right`` (Dai et al.) or ``gausslegendre``.
        keys: ``post`` (after the activation, the default) or ``pre``.
        sublayers: any of ``keys`` and ``values``.
        target: ``relevance`` (similarity with the example's relevant partner vector,
            the default) or ``norm`` (L2 norm of the un-normalised pooled embedding, the
            reproduction's).
        memory_budget: activation memory per forward+backward chunk (``"2GB"``, or bytes);
            chunks hold as many rows (example x sublayer x layer x step) as fit.
        passes: ``one`` (every layer's rows in the same forward/backward), ``per-layer``
            (one pass per layer, examples and steps still batched: the backward then stops
            at that layer instead of running every row down to layer 0, about 1.4x less
            arithmetic, which is what counts on a CPU) or ``auto`` (per-layer on CPU, one
            on GPU, where the wider batch wins).
    """

    def __init__(self, model: BiEncoder, *, n_steps: int = 20, rule: str = "riemann_right",
                 keys: str = "post", sublayers: Sequence[str] = SUBLAYERS,
                 target: str = "relevance", memory_budget: str | int = "2GB",
                 passes: str = "auto"):
        if not isinstance(model, BiEncoder):
            raise IrlensError(f"knowledge-neuron attribution reads one tower at a time and "
                              f"needs a bi-encoder, got {type(model).__name__}")
        check_options(n_steps=n_steps, rule=rule, keys=keys, sublayers=sublayers,
                      target=target)
        self.budget = parse_memory(memory_budget)
        self.model = model
        self.n_steps, self.rule, self.keys = n_steps, rule, keys
        self.sublayers, self.target = tuple(sublayers), target
        if passes not in PASSES:
            raise IrlensError(f"unknown passes '{passes}'; use {', '.join(PASSES)}")
        self.memory_budget = memory_budget
        if passes == "auto":  # see the class docstring
            passes = "per-layer" if model.device.type == "cpu" else "one"
        self.passes = passes
        self.alphas, self.weights = nodes(n_steps, rule)

    def point_names(self, side: str) -> list[tuple[str, int, str]]:
        """(sublayer, layer, hook name) for every attributed point of ``side``'s tower."""
        points = hook_points(self.model, side)
        n_layers = sum(p.kind == "resid" for p in points.values())
        kind = {"keys": f"ffn.{self.keys}", "values": "ffn.out"}
        return [(s, i, f"layer.{i}.{kind[s]}") for s in self.sublayers for i in range(n_layers)]

    def _rows_per_chunk(self, n_tokens: int, side: str) -> int:
        points = hook_points(self.model, side)
        n_layers = sum(p.kind == "resid" for p in points.values())
        hidden, ffn = points["embeddings"].units, points["layer.0.ffn.post"].units
        heads = points["layer.0.attn.probs"].units
        per_row = 4 * n_tokens * n_layers * (3 * ffn + 14 * hidden + 3 * heads * n_tokens)
        return max(1, int(self.budget // per_row))

    def attribute(self, texts: Sequence[str], side: str,
                  partners: torch.Tensor | None = None, *, progress: bool = False,
                  ) -> dict[str, np.ndarray]:
        """Attributions for ``texts`` read through ``side``'s tower.

        ``partners`` ([n, dim], the relevant other-side vectors) is needed for the
        ``relevance`` target. Returns ``keys`` [n, layers, ffn units], ``values``
        [n, layers, hidden] (those asked for), ``score`` [n] (F(x)) and ``zeroed``
        [n, sublayers, layers] (F with that layer's activation set to 0).
        """
        texts = list(texts)
        if side not in ("query", "doc"):
            raise IrlensError(f"unknown side '{side}'; use query or doc")
        if not texts:
            raise IrlensError("no examples to attribute; pass at least one text")
        if self.target == "relevance":
            if partners is None or len(partners) != len(texts):
                raise IrlensError("the relevance target needs one partner vector per text "
                                  "(the relevant other-side embedding); pass partners")
        points = self.point_names(side)
        n_layers = len(points) // len(self.sublayers)
        units = {s: hook_points(self.model, side)[name].units
                 for s, _, name in points}
        n = len(texts)
        out = {s: np.zeros((n, n_layers, units[s])) for s in self.sublayers}
        score = np.zeros(n)
        zeroed = np.zeros((n, len(self.sublayers), n_layers))
        from tqdm.auto import tqdm

        lengths = [len(ids) for ids in self.model.tokenizer(
            texts, truncation=True, max_length=self.model.max_length)["input_ids"]]
        order = sorted(range(n), key=lambda i: -lengths[i])
        bar = tqdm(total=n, desc=f"knowledge neurons ({side})", disable=not progress)
        start = 0
        per_pass = len(points) // (n_layers if self.passes == "per-layer" else 1)
        per_example = per_pass * (len(self.alphas) + 1) + 1
        while start < n:
            rows_cap = self._rows_per_chunk(lengths[order[start]], side)
            group = order[start:start + max(1, rows_cap // per_example)]
            # similar lengths only: padding is wasted arithmetic (longest first)
            group = [i for i in group if lengths[i] >= 0.9 * lengths[group[0]]]
            start += len(group)
            self._group(texts, group, side, partners, points, out, score, zeroed, rows_cap)
            bar.update(len(group))
        bar.close()
        return {**out, "score": score, "zeroed": zeroed}

    def _plan(self, n_examples: int, n_points: int) -> _Rows:
        """Every row of a group: per example and point the path steps, then an alpha=0
        row (for completeness), and one clean row per example."""
        steps = len(self.alphas)
        alpha = np.concatenate([self.alphas, [0.0]])
        weight = np.concatenate([self.weights, [0.0]])
        ex, pt, al, we = [], [], [], []
        for e in range(n_examples):
            for p in range(n_points):
                ex += [e] * (steps + 1)
                pt += [p] * (steps + 1)
                al += list(alpha)
                we += list(weight)
            ex.append(e)
            pt.append(-1)
            al.append(1.0)
            we.append(0.0)
        return _Rows(torch.tensor(ex), torch.tensor(pt), torch.tensor(al, dtype=torch.float64),
                     torch.tensor(we, dtype=torch.float64))

    def _group(self, texts, group, side, partners, points, out, score, zeroed, rows_cap):
        model = self.model
        batch = model.tokenize([texts[i] for i in group], side)
        plan = self._plan(len(group), len(points))
        partner = None if partners is None else partners[group].to(model.device).float()
        names = [name for _, _, name in points]
        layer_of = torch.tensor([layer for _, layer, _ in points] + [-1])
        row_layer = layer_of[plan.point]  # clean rows (point -1) map to -1
        if self.passes == "per-layer":
            last = int(layer_of[:-1].max())
            passes = [torch.nonzero((row_layer == layer) | ((row_layer == -1) & (layer == last))
                                    ).flatten() for layer in range(last + 1)]
        else:
            passes = [torch.arange(len(plan.example))]
        chunks = [sel[lo:lo + rows_cap] for sel in passes for lo in range(0, len(sel), rows_cap)]
        for sl in chunks:
            ex, pt = plan.example[sl], plan.point[sl]
            al, we = plan.alpha[sl], plan.weight[sl]
            rows = _index_batch(batch, ex)
            present = [j for j in range(len(names)) if bool((pt == j).any())]
            factors = {names[j]: torch.where(pt == j, al, torch.ones_like(al)).float()
                       for j in present}
            rows_for = {names[j]: torch.nonzero(pt == j).flatten() for j in present}
            target = _target_fn(model, self.target, None if partner is None else partner[ex])
            with _unnormalised(model, self.target == "norm"):
                values, reduced = scaled_activation_pass(model, rows, side, factors, target,
                                                         rows_for)
            values = values.double().cpu().numpy()
            al_np, we_np, ex_np, pt_np = al.numpy(), we.numpy(), ex.numpy(), pt.numpy()
            for sub, layer, name in points:
                if name not in rows_for:
                    continue
                idx = rows_for[name].numpy()
                contrib = reduced[name].double().cpu().numpy() * we_np[idx, None]
                dest = np.asarray(group)[ex_np[idx]]
                np.add.at(out[sub][:, layer], dest, contrib)
                base = idx[al_np[idx] == 0.0]
                zeroed[np.asarray(group)[ex_np[base]], self.sublayers.index(sub), layer] = \
                    values[base]
            clean = np.nonzero(pt_np == -1)[0]
            score[np.asarray(group)[ex_np[clean]]] = values[clean]


def _index_batch(batch, rows: torch.Tensor):
    from irlens.models import Batch

    rows = rows.to(batch.input_ids.device)
    tt = None if batch.token_type_ids is None else batch.token_type_ids[rows]
    return Batch(batch.input_ids[rows], batch.attention_mask[rows], batch.segments[rows], tt,
                 batch.side)


def _target_fn(model: BiEncoder, target: str, partner: torch.Tensor | None):
    if target == "relevance":
        return lambda pooled: model.pair_similarity(pooled.float(), partner)
    return lambda pooled: pooled.float().norm(dim=-1)


@contextmanager
def _unnormalised(model: BiEncoder, active: bool):
    """The norm target reads the pooled vector before any normalisation (restored after)."""
    saved = model.normalize
    try:
        if active:
            model.normalize = False
        yield
    finally:
        model.normalize = saved


def check_options(*, n_steps: int, rule: str, keys: str, sublayers: Sequence[str],
                  target: str) -> None:
    """One-line errors for bad attribution options (before any model loads)."""
    nodes(n_steps, rule)
    if keys not in KEYS:
        raise IrlensError(f"unknown keys '{keys}'; use post or pre")
    bad = [s for s in sublayers if s not in SUBLAYERS]
    if bad or not sublayers:
        raise IrlensError(f"unknown sublayer {bad[0] if bad else '(none)'}; use keys and/or "
                          "values")
    if target not in TARGETS:
        raise IrlensError(f"unknown target '{target}'; use relevance or norm")
