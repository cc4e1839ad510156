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
by 1), so examples, steps and layers are batched together (``passes="one"``).
``passes="per-layer"`` runs one pass per layer instead, so that the backward stops at
that layer. On a CPU arithmetic, not the number of calls, sets the time, and
``passes="suffix"`` (the CPU default for BERT-family towers) removes the most: one clean
forward per chunk of examples, then each scaled row runs only the layers above its own
(:mod:`irlens.activations.suffix`), keys and values enter at the same point, an alpha=1
node reuses the clean pass's gradients, and zeroed rows run without a backward.
Parameters are frozen during the pass and restored afterwards. The chunk pass of the
hook path, :func:`scaled_activation_pass`, is the activation-space path that a shared
path engine can own; it runs any architecture and under interventions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from irlens.activations.suffix import clean_states, layers_of, run_from, unsupported
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
PASSES = ("auto", "one", "per-layer", "suffix")


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
            arithmetic, which is what counts on a CPU), ``suffix`` (BERT-family towers: one
            clean forward per chunk of examples, then each row runs only the layers above
            its own, see :mod:`irlens.activations.suffix`) or ``auto`` (on CPU ``suffix``
            where the tower supports it, else ``per-layer``; ``one`` on GPU, where the
            wider batch wins).
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
        if passes == "suffix":
            for side in ("query", "doc"):
                why = unsupported(model, side)
                if why is not None:
                    raise IrlensError(f"passes='suffix' cannot run this model ({why}); use "
                                      "passes='per-layer'")
        self.auto = passes == "auto"
        if self.auto:  # see the class docstring
            passes = "one" if model.device.type != "cpu" else (
                "suffix" if all(unsupported(model, s) is None for s in ("query", "doc"))
                else "per-layer")
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
        passes = self.passes
        if passes == "suffix":
            why = unsupported(self.model, side)
            if why is not None and not self.auto:
                raise IrlensError(f"passes='suffix' cannot run now ({why}); use "
                                  "passes='per-layer'")
            passes = "suffix" if why is None else "per-layer"
        bar = tqdm(total=n, desc=f"knowledge neurons ({side})", disable=not progress)
        start = 0
        per_pass = len(points) // (1 if passes == "one" else n_layers)
        per_example = per_pass * (len(self.alphas) + 1) + 1
        while start < n:
            rows_cap = self._rows_per_chunk(lengths[order[start]], side)
            group = order[start:start + max(1, rows_cap // per_example)]
            # similar lengths only: padding is wasted arithmetic (longest first)
            group = [i for i in group if lengths[i] >= 0.9 * lengths[group[0]]]
            start += len(group)
            run = self._group_suffix if passes == "suffix" else self._group
            run(texts, group, side, partners, points, out, score, zeroed, rows_cap, passes)
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

    def _group(self, texts, group, side, partners, points, out, score, zeroed, rows_cap,
               passes):
        model = self.model
        batch = model.tokenize([texts[i] for i in group], side)
        plan = self._plan(len(group), len(points))
        partner = None if partners is None else partners[group].to(model.device).float()
        names = [name for _, _, name in points]
        layer_of = torch.tensor([layer for _, layer, _ in points] + [-1])
        row_layer = layer_of[plan.point]  # clean rows (point -1) map to -1
        if passes == "per-layer":
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

    def _group_suffix(self, texts, group, side, partners, points, out, score, zeroed,
                      rows_cap, _passes):
        """``passes="suffix"``: one clean pass (plus one backward when a node is alpha=1:
        that row's gradient is the clean one, for every layer at once), then per layer
        the scaled rows from that layer's FFN output upwards only
        (:func:`irlens.activations.suffix.run_from`).

        Keys after the activation enter as ``alpha * (W k) + b`` (the output projection
        is linear), the same entry point as the values' rows; and as the attribution is
        linear in the gradient, ``sum_k w_k W^T g_k = W^T sum_k w_k g_k`` is applied once
        per example instead of once per row."""
        model = self.model
        batch = model.tokenize([texts[i] for i in group], side)
        partner = None if partners is None else partners[group].to(model.device).float()
        ones = [k for k, a in enumerate(self.alphas) if a == 1.0]
        steps = [k for k, a in enumerate(self.alphas) if a != 1.0]
        path = _Path(torch.tensor(self.alphas[steps], dtype=torch.float64),
                     torch.tensor(self.weights[steps], dtype=torch.float64),
                     float(self.weights[ones].sum()))
        dest = np.asarray(group)
        with _unnormalised(model, self.target == "norm"), frozen(model):
            states = clean_states(model, batch, side, _target_fn(model, self.target, partner),
                                  grad=bool(ones))
            score[dest] = states.values.double().cpu().numpy()
            for layer in sorted({layer for _, layer, _ in points}):
                sums, zero = self._suffix_layer(states, batch, side, partner, layer, path,
                                                rows_cap)
                for s, sub in enumerate(self.sublayers):
                    out[sub][dest, layer] = sums[sub]
                    zeroed[dest, s, layer] = zero[sub]

    def _suffix_layer(self, states, batch, side, partner, layer, path, rows_cap):
        """Per sublayer: the attributions [examples, units] of one layer, and F with the
        layer's activation zeroed [examples]."""
        model = self.model
        entry = _Entry(model, side, layer, states, self.keys == "post")
        mask = batch.attention_mask.unsqueeze(-1).double()
        n_ex, dev = len(batch), mask.device
        # sum_k w_k g_k at the FFN output for keys after the activation; per-unit sums
        # over tokens of activation x gradient for the values and keys before it
        g_keys = torch.zeros(entry.out.shape, dtype=torch.float64, device=dev)
        sums = {sub: torch.zeros(n_ex, entry.act(sub).shape[-1], dtype=torch.float64,
                                 device=dev) for sub in SUBLAYERS}

        def add(sub: str, ex: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor) -> None:
            if sub == "keys" and entry.post:
                g_keys.index_add_(0, ex, grad.double() * weight)
            else:  # per row in the model's dtype, as the hook path does, then weighted
                per_row = (entry.act(sub)[ex] * grad * mask[ex].to(grad.dtype)).sum(1)
                sums[sub].index_add_(0, ex, per_row.double() * weight.view(-1, 1))

        everyone = torch.arange(n_ex, device=dev)
        if path.w_one:  # the alpha=1 rows: the clean pass's gradients
            for sub in self.sublayers:
                grad = states.grad_pre[layer] if sub == "keys" and not entry.post \
                    else states.grad_out[layer]
                add(sub, everyone, grad, torch.full((n_ex, 1, 1), path.w_one,
                                                    dtype=torch.float64, device=dev))
        plan = [(e, s, k) for e in range(n_ex) for s in self.sublayers
                for k in range(len(path.alphas))]
        for lo in range(0, len(plan), rows_cap):
            part = plan[lo:lo + rows_cap]
            ex = torch.tensor([e for e, _, _ in part], device=dev)
            is_key = torch.tensor([s == "keys" for _, s, _ in part], device=dev)
            k = [k for _, _, k in part]
            with torch.enable_grad():
                ffn_out, leaves = entry(ex, is_key, path.alphas[k])
                pooled = run_from(model, side, states, layer, ffn_out,
                                  _index_batch(batch, ex), ex)
                values = self._target(partner, ex)(pooled)
                grads = torch.autograd.grad(values.sum(), [leaf for leaf, _ in leaves])
            weight = path.weights[k].to(dev).view(-1, 1, 1)
            for (_, sel), grad in zip(leaves, grads, strict=True):
                idx = torch.nonzero(sel).flatten()  # the chunk's rows behind grad's rows
                for sub in self.sublayers:
                    local = is_key[idx] == (sub == "keys")
                    if bool(local.any()):
                        add(sub, ex[idx[local]], grad[local], weight[idx[local]])
        if "keys" in self.sublayers and entry.post:
            sums["keys"] = (entry.act("keys").double() * (g_keys @ entry.dense.weight.double())
                            * mask).sum(1)
        # F with the layer's activation zeroed: forward only
        ex = everyone.repeat(len(self.sublayers))
        is_key = torch.tensor([s == "keys" for s in self.sublayers],
                              device=dev).repeat_interleave(n_ex)
        with torch.no_grad():
            ffn_out, _ = entry(ex, is_key, torch.zeros(len(ex), dtype=torch.float64))
            pooled = run_from(model, side, states, layer, ffn_out, _index_batch(batch, ex), ex)
            zero = self._target(partner, ex)(pooled).double().cpu().numpy()
        zero = zero.reshape(len(self.sublayers), n_ex)
        return ({sub: sums[sub].cpu().numpy() for sub in self.sublayers},
                {sub: zero[s] for s, sub in enumerate(self.sublayers)})

    def _target(self, partner, ex):
        return _target_fn(self.model, self.target, None if partner is None else partner[ex])


@dataclass
class _Path:
    alphas: torch.Tensor  # the nodes below 1 (float64)
    weights: torch.Tensor
    w_one: float  # total weight of the alpha=1 nodes (their gradient is the clean one)


class _Entry:
    """Layer ``layer``'s FFN output [R, T, H] for scaled rows (``alpha`` per row), and the
    leaves to differentiate with the rows each covers: ``alpha * (W k)`` plus the bias
    for keys after the activation and ``alpha * v`` for values (one leaf), and
    ``dense(act(alpha * pre))`` for keys before the activation (its own leaf)."""

    def __init__(self, model: BiEncoder, side: str, layer: int, states, post: bool):
        block = layers_of(model, side)[layer]
        self.dense, self.fn = block.output.dense, block.intermediate.intermediate_act_fn
        self.post, self.out = post, states.out[layer]
        self.key = states.post[layer] if post else states.pre[layer]
        # W k without the bias, once per example
        self.w_key = torch.nn.functional.linear(self.key, self.dense.weight) if post else None

    def act(self, sub: str) -> torch.Tensor:
        return self.key if sub == "keys" else self.out

    def __call__(self, ex: torch.Tensor, is_key: torch.Tensor, alpha: torch.Tensor):
        f = alpha.to(self.out.device, self.out.dtype).view(-1, 1, 1)
        grad = torch.is_grad_enabled()
        if self.post:
            base = torch.where(is_key.view(-1, 1, 1), self.w_key[ex], self.out[ex])
            leaf = (base * f).requires_grad_(grad)
            every = torch.ones_like(is_key)
            return leaf + self.dense.bias * is_key.view(-1, 1, 1), [(leaf, every)]
        ffn_out = torch.empty(len(ex), *self.out.shape[1:], dtype=self.out.dtype,
                              device=self.out.device)
        leaves = []
        for sel, fn in ((~is_key, None), (is_key, self.dense)):
            if bool(sel.any()):
                src = self.key if fn is not None else self.out
                leaf = (src[ex[sel]] * f[sel]).requires_grad_(grad)
                value = leaf if fn is None else fn(self.fn(leaf))
                ffn_out = ffn_out.index_put((torch.nonzero(sel).flatten(),), value)
                leaves.append((leaf, sel))
        return ffn_out, leaves


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
