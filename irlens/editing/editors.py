"""Editors: turn edit requests into an :class:`~irlens.editing.edit.Edit`.

All share one verb, ``fit(model, requests) -> Edit``, and never leave the model changed
(the optimisation runs on temporary weights or hooks, restored in ``finally``):

- :class:`FineTuneEditor`: gradient steps on the edit pairs only, on every weight or on
  one layer's FFN (the usual baseline; known to harm locality).
- :class:`RankOneEditor`: ROME (Meng et al. 2022) adapted to an encoder. The key ``k`` is
  the mean FFN key (``layer.{l}.ffn.post``) over the query's subject tokens (all query
  tokens by default); the update is ``W' = W + d u^T`` of the FFN output matrix with
  ``u = C^-1 k / (k^T C^-1 k)``, the closed-form solution of "change W k to W k + d while
  moving keys distributed like C as little as possible". ``d`` is optimised so the query
  ranks the document past its rivals (:mod:`irlens.editing.objective`), with the rank-one
  update itself in the forward pass, so what is optimised is exactly what is saved.
- :class:`KnowledgeNeuronEditor`: Dai et al. 2022: the FFN units most attributed to the
  (query, document) score are suppressed (remove) or amplified (insert).

Several requests are edited one after another, each on top of the previous edits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from irlens.editing import layer_cache
from irlens.editing.edit import Edit
from irlens.editing.objective import INSERT_BAR, REMOVE_BAR, gaps, hinge
from irlens.editing.requests import EditRequest
from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points
from irlens.models import BiEncoder, Segment

__all__ = ["EDITORS", "FineTuneEditor", "RankOneEditor", "edited_side", "make_editor",
           "rank_one_update"]


def _check(model: BiEncoder, requests: list[EditRequest], layer: int | None) -> None:
    if not isinstance(model, BiEncoder):
        raise IrlensError("editing measures retrieval by a bi-encoder; load one (e.g. "
                          "'default')")
    if not requests:
        raise IrlensError("no edit requests; pass at least one")
    if layer is not None:
        n = sum(1 for p in hook_points(model, "doc").values() if p.kind == "resid")
        if not 0 <= layer < n:
            raise IrlensError(f"edit layer {layer} is out of range; this model has layers "
                              f"0-{n - 1}")


def _param_names(model: BiEncoder, layer: int | None) -> list[str]:
    """Names (in ``model.named_parameters``) of every encoder weight, or one layer's FFN."""
    if layer is None:
        return [n for n, p in model.named_parameters() if p.is_floating_point()]
    points = hook_points(model, "doc")
    modules = {id(points[f"layer.{layer}.ffn.pre"].module),
               id(points[f"layer.{layer}.ffn.out"].module)}
    return [f"{mn}.{pn}" if mn else pn for mn, m in model.named_modules()
            if id(m) in modules for pn, _ in m.named_parameters(recurse=False)]


@contextmanager
def _restored(model: BiEncoder, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Snapshot ``names``; whatever happens inside, copy the snapshot back on exit, with
    every parameter's ``requires_grad`` and ``.grad`` as they were."""
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in names}
    flags = {n: p.requires_grad for n, p in params.items()}
    grads = {n: p.grad for n, p in params.items()}
    for p in params.values():
        p.grad = None  # the fit's backward passes must not add into the caller's grads
    try:
        yield saved
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(saved[n])
        for n, p in params.items():
            p.requires_grad_(flags[n])
            p.grad = grads[n]


class FineTuneEditor:
    """Adam steps on the edit objective, on all weights (``layer=None``) or one FFN."""

    name = "ft"

    def __init__(self, layer: int | None = None, lr: float | None = None, steps: int = 30,
                 margin: float = 0.02):
        self.layer, self.steps, self.margin = layer, steps, margin
        self.lr = lr if lr is not None else (1e-4 if layer is None else 1e-3)

    def get_params(self) -> dict:
        return {"layer": self.layer, "lr": self.lr, "steps": self.steps, "margin": self.margin}

    def fit(self, model: BiEncoder, requests: list[EditRequest]) -> Edit:
        _check(model, requests, self.layer)
        names = _param_names(model, self.layer)
        params = dict(model.named_parameters())
        start, used = time.perf_counter(), 0
        encode = None
        if self.layer is not None and layer_cache.first_edited_layer(model, names) == self.layer:
            states = [(layer_cache.layer_inputs(model, [r.query], "query", self.layer),
                       layer_cache.layer_inputs(model, [r.doc, *r.competitors], "doc", self.layer))
                      for r in requests]  # the layers below never change: run them once

            def encode(i, _request):
                return tuple(layer_cache.embed_from(model, s) for s in states[i])
        with _restored(model, names) as saved:
            for p in params.values():
                p.requires_grad_(False)
            train = [params[n].requires_grad_(True) for n in names]
            opt = torch.optim.Adam(train, lr=self.lr)
            for used in range(1, self.steps + 1):  # noqa: B007 - used after the loop
                gap = gaps(model, requests, encode)
                if bool((gap >= self.margin).all()):
                    used -= 1
                    break
                opt.zero_grad()
                hinge(gap, self.margin).backward()
                opt.step()
            deltas = {n: (params[n].detach() - saved[n]).clone() for n in names}
        deltas = {n: d for n, d in deltas.items() if bool(d.any())}
        return Edit(self.name, deltas, {**self.get_params(), "steps_used": used,
                                        "seconds": time.perf_counter() - start})


def rank_one_update(weight: torch.Tensor, moment: torch.Tensor, key: torch.Tensor,
                    value: torch.Tensor) -> torch.Tensor:
    """ROME's closed form: the ``W'`` with ``W' k = v`` that minimises
    ``tr((W' - W) C (W' - W)^T)``, i.e. ``W + (v - W k) (C^-1 k)^T / (k^T C^-1 k)``."""
    solved = torch.linalg.solve(moment, key)
    return weight + torch.outer(value - weight @ key, solved) / (key @ solved)


class RankOneEditor:
    """ROME for encoders (see the module docstring); ``moment`` is ``E[k k^T]`` at
    ``layer`` of the tower edited (from :func:`irlens.editing.covariance.cached_covariance`
    with ``side=edited_side(model)``).

    On a one-tower model the shared tower is edited; on two towers (DPR) the query
    tower: the key, the covariance and the edited weight all come from it, so documents do
    not move. With ``corpus`` (an :class:`~irlens.editing.measures.EditBench` of the model
    as loaded), each edit is checked on the whole corpus's ranking and, while it misses
    its bar there, re-optimised with the documents that beat it added to its rivals (at
    most ``rounds`` times): the objective then sees the full corpus's competitors, not only
    the request's."""

    name = "rome"

    def __init__(self, moment: torch.Tensor, layer: int = 2, steps: int = 60,
                 lr: float = 0.05, l2: float = 1e-3, margin: float = 0.02,
                 ridge: float = 1e-3, corpus=None, rounds: int = 3):
        self.moment, self.layer, self.steps = moment, layer, steps
        self.lr, self.l2, self.margin, self.ridge = lr, l2, margin, ridge
        self.corpus, self.rounds = corpus, rounds

    def get_params(self) -> dict:
        return {"layer": self.layer, "steps": self.steps, "lr": self.lr, "l2": self.l2,
                "margin": self.margin, "ridge": self.ridge,
                "rounds": self.rounds if self.corpus is not None else 0}

    def key(self, model: BiEncoder, request: EditRequest) -> torch.Tensor:
        """Mean FFN key over the subject's tokens (all query tokens if none) [I], from the
        query tower (the tower edited on two towers, the shared one otherwise)."""
        batch = model.tokenize([request.query], "query")
        use = batch.segments[0] == Segment.QUERY
        if request.subject:
            use = use & _subject_tokens(model, request).to(use.device)
        name = f"layer.{self.layer}.ffn.post"
        with torch.no_grad(), capture(model, name, side="query") as cache:
            model.forward_embeds(batch)
        return cache[name][0][use].double().mean(0)

    def fit(self, model: BiEncoder, requests: list[EditRequest]) -> Edit:
        _check(model, requests, self.layer)
        linear = hook_points(model, edited_side(model))[f"layer.{self.layer}.ffn.out"].module
        weight = linear.weight
        weight_name = next(n for n, p in model.named_parameters() if p is weight)
        moment = self.moment.to(weight.device, torch.float64)
        if moment.shape != (weight.shape[1],) * 2:
            raise IrlensError(f"the key covariance is {tuple(moment.shape)}, layer "
                              f"{self.layer}'s FFN has {weight.shape[1]} keys; estimate it "
                              "at the edited layer")
        moment = moment + self.ridge * moment.diagonal().mean() * torch.eye(
            len(moment), dtype=moment.dtype, device=moment.device)
        start = time.perf_counter()
        total = torch.zeros(weight.shape, dtype=torch.float64, device=weight.device)
        steps_used, rounds_used = [], []
        with _restored(model, [weight_name]) as saved:
            for p in model.parameters():
                p.requires_grad_(False)
            for request in requests:  # sequential: each on top of the previous edits
                key = self.key(model, request)
                u = torch.linalg.solve(moment, key)
                u = u / (key @ u)
                delta, used, rounds = self._fit_one(model, linear, weight_name, request, u,
                                                    saved[weight_name], total)
                steps_used.append(used)
                rounds_used.append(rounds)
                current = weight.detach().double()
                update = rank_one_update(current, moment, key,
                                         current @ key + delta.double()) - current
                total += update
                with torch.no_grad():
                    weight.add_(update.to(weight.dtype))
        return Edit(self.name, {weight_name: total.to(weight.dtype)},
                    {**self.get_params(), "steps_used": steps_used, "rounds": rounds_used,
                     "seconds": time.perf_counter() - start})

    def _fit_one(self, model: BiEncoder, linear: torch.nn.Module, name: str,
                 request: EditRequest, u: torch.Tensor, original: torch.Tensor,
                 total: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """The value change ``d`` of one request; with ``corpus``, re-fit against the
        documents of the whole corpus that still beat the request's bar."""
        first = not bool(total.any())  # the corpus's kept states are of the unedited model
        delta, used = self._optimise(model, linear, name, request, u, None, first)
        rounds = 0
        if self.corpus is None or request.query_id not in self.corpus.before.query_ids:
            return delta, used, rounds
        rivals = set(request.competitors)
        for rounds in range(1, self.rounds + 1):  # noqa: B007 - returned
            edit = Edit(self.name, {name: (total + torch.outer(delta.double(), u)
                                           ).to(original.dtype)})
            with torch.no_grad():  # the corpus bench ranks the model as loaded
                current = linear.weight.detach().clone()
                linear.weight.copy_(original)
                try:
                    ranking = self.corpus.ranked(edit)
                finally:
                    linear.weight.copy_(current)
            bar = INSERT_BAR if request.kind == "insert" else REMOVE_BAR
            rank = ranking.rank(request.query_id, request.doc_id)
            if (rank <= bar) == (request.kind == "insert"):
                return delta, used, rounds - 1
            top = [d for d in ranking.top(request.query_id, 40) if d != request.doc_id]
            texts = [t for t in self.corpus.dataset.doc_texts(top) if t not in rivals]
            rivals.update(texts)
            request = replace(request, competitors=[*request.competitors, *texts])
            delta, more = self._optimise(model, linear, name, request, u, delta, first)
            used += more
        return delta, used, rounds

    def _optimise(self, model: BiEncoder, linear: torch.nn.Module, name: str,
                  request: EditRequest, u: torch.Tensor, init: torch.Tensor | None,
                  unedited: bool = False) -> tuple[torch.Tensor, int]:
        weight = linear.weight
        delta = (torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
                 if init is None else init.clone()).requires_grad_(True)
        u = u.to(weight.device, weight.dtype)

        def rank_one(keys: torch.Tensor) -> torch.Tensor:
            return (keys @ u).unsqueeze(-1) * delta

        encode, handle = None, None
        if layer_cache.ffn_output_layer(model, [name]) == self.layer:  # only the layers above
            texts = ([request.query], [request.doc, *request.competitors])
            docs = (self.corpus.doc_states(self.layer, texts[1])
                    if unedited and self.corpus is not None else None)
            states = [layer_cache.ffn_inputs(model, texts[0], "query", self.layer),
                      docs or layer_cache.ffn_inputs(model, texts[1], "doc", self.layer)]

            def encode(_i, _request):
                return tuple(layer_cache.embed_with_ffn_change(model, s, rank_one) for s in states)
        else:  # any other tower: the update as a hook on full forwards
            handle = linear.register_forward_hook(
                lambda _module, inputs, output: output + rank_one(inputs[0]))
        opt = torch.optim.Adam([delta], lr=self.lr)
        used = 0
        try:
            for used in range(1, self.steps + 1):  # noqa: B007 - used after the loop
                gap = gaps(model, [request], encode)
                if bool((gap >= self.margin).all()):
                    used -= 1
                    break
                loss = hinge(gap, self.margin) + self.l2 * delta.pow(2).sum()
                (grad,) = torch.autograd.grad(loss, [delta])
                delta.grad = grad
                opt.step()
        finally:
            if handle is not None:
                handle.remove()
        return delta.detach(), used


def edited_side(model: BiEncoder) -> str:
    """The tower a rank-one edit changes: the shared one, or the query tower of two."""
    return "doc" if "shared" in model.encoders() else "query"


def _subject_tokens(model: BiEncoder, request: EditRequest) -> torch.Tensor:
    """Bool [T] over the query's tokens: those overlapping ``request.subject``."""
    text = model.query_prefix + request.query
    at = text.lower().find(request.subject.lower())
    if at < 0:
        raise IrlensError(f"subject '{request.subject}' is not in the query "
                          f"'{request.query}'; give a span of the query's own words")
    enc = model.tokenizer(text, truncation=True, max_length=model.max_length,
                          return_offsets_mapping=True)
    end = at + len(request.subject)
    return torch.tensor([e > at and s < end and e > s for s, e in enc["offset_mapping"]])


EDITORS = ("ft", "rome", "kn")


def make_editor(name: str, **kwargs):
    """An editor by name (``ft``, ``rome``, ``kn``) with its keyword options."""
    if name == "ft":
        return FineTuneEditor(**kwargs)
    if name == "rome":
        return RankOneEditor(**kwargs)
    if name == "kn":
        from irlens.editing.knowledge import KnowledgeNeuronEditor

        return KnowledgeNeuronEditor(**kwargs)
    raise IrlensError(f"unknown editor '{name}'; use {', '.join(EDITORS)}")
