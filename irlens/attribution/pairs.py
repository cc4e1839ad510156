"""Token-pair attribution for bi-encoders: integrated Jacobians (Moeller, Nikolaev & Pado,
"An Attribution Method for Siamese Encoders", EMNLP 2023).

For a score s(a, b) = e(a) . e(b) (cosine: the normalisation is folded into e), each
side's Jacobian of the embedding is integrated once along its straight path from a
baseline r to the input x, and contracted with (x - r) per token:

    G[d, i] = sum_h (x - r)[i, h] * integral_0^1 de_d/dx[i, h] (r + t (x - r)) dt

so that sum_i G[d, i] = e_d(x) - e_d(r). The pair matrix is one contraction,
A[i, j] = sum_d G_a[d, i] G_b[d, j], and it sums to

    s(a, b) - s(r_a, b) - s(a, r_b) + s(r_a, r_b)

up to the quadrature error (the *completeness gap*, warned above 1% like IG).

G needs D x T products per path point. Either the D vector-Jacobian products of a point
are one vmapped backward (``torch.autograd.grad(..., is_grads_batched=True)``), or the T
Jacobian-vector products (one per moving token) are rows of one forward-mode pass
(``torch.func.jvp``); ``mode="auto"`` takes the smaller count per side (a 32-token query
against D = 384 needs 12x fewer products forward). The longer side then needs no full
G: A = G_a^T G_b is its path integral with G_a's columns as cotangents, so it costs as
many vmapped backward products as the shorter side has tokens. Path points share a
pass, and all of it is chunked under a memory budget (:func:`integrated_jacobian`).
This path/row/chunking code is kept in that one function: :class:`irlens.paths.Engine`
backpropagates one scalar ``F`` per row, while a Jacobian needs D outputs per row (or
forward-mode tangents); the problem (streams, baselines, texts), quadrature, frozen
parameters and memory parsing are the engine's (:mod:`irlens.paths`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from irlens._warn import warn
from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.attribution._base import CompletenessWarning
from irlens.attribution.tokens import pair_tokens
from irlens.errors import IrlensError
from irlens.hooks import attention_probes
from irlens.models import BiEncoder
from irlens.paths import (
    Baseline,
    Stream,
    build_problem,
    frozen,
    parse_memory,
    prepare_texts,
    quadrature,
)

__all__ = ["IntegratedJacobians", "TokenPairAttribution", "integrated_jacobian",
           "require_bi_encoder"]

_SAFETY = 1.6  # measured saved bytes -> peak; checked by benchmarks/pairs.py at 1GB


def require_bi_encoder(model: object) -> BiEncoder:
    """The model, if it is a bi-encoder; else a one-line error (a cross-encoder sees one
    joint sequence, so its score has no query-vector x document-vector factorisation)."""
    if not isinstance(model, BiEncoder):
        kind = type(model).__name__
        raise IrlensError(f"token-pair attribution is a bi-encoder method (it factorises "
                          f"s(a, b) = e(a) . e(b)); {kind} is not a bi-encoder: use "
                          "token attribution (irlens explain without --pairs) instead")
    return model


def _saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 params: Iterable[torch.Tensor]) -> int:
    """Bytes autograd saves for one forward row (``params`` excluded)."""
    ptrs = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in ptrs:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x[None].clone().requires_grad_(True))
    return sum(saved.values())


def integrated_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        x0: torch.Tensor, n_steps: int = 32, rule: str = "gausslegendre",
                        memory_budget: str | int | None = "1GB",
                        params: Iterable[torch.Tensor] = (), mode: str = "auto",
                        forward_ad: Callable[[], AbstractContextManager] = nullcontext,
                        cotangents: torch.Tensor | None = None) -> torch.Tensor:
    """G [D, T]: the path-integrated Jacobian of ``fn`` contracted with ``x - x0`` per token.

    ``fn`` maps word embeddings [R, T, H] to vectors [R, D]; ``x``, ``x0`` are [T, H].
    ``mode="vjp"``: rows of one forward are path points and the D output dimensions are
    vector-Jacobian products of one vmapped backward. ``mode="jvp"``: one forward-mode
    product per (path point, moving token), tangent = that token's ``x - x0``, batched as
    rows (``forward_ad()`` is entered around it, e.g. to switch to attention kernels that
    support forward AD). ``"auto"`` picks the mode with fewer products (min(D, T)): the
    cost is D backwards or T forwards per point. Chunks are sized from the bytes autograd
    saves per row so that they fit ``memory_budget`` (``params``: the weights, not
    counted).

    ``cotangents`` U [K, D] (vjp mode only) returns U @ G [K, T] from K vector-Jacobian
    products instead of D: the pair matrix G_a^T G_b is G_b's path integral with the
    columns of G_a as cotangents (the integral is linear), so the longer side costs as
    many backward products as the shorter side has tokens.
    """
    if mode not in ("auto", "vjp", "jvp"):
        raise IrlensError(f"unknown mode '{mode}'; use auto, vjp or jvp")
    alphas, weights = quadrature(n_steps, rule)
    delta = (x - x0).float()
    with torch.no_grad():
        dim = int(fn(x[None]).shape[-1])
    moving = (delta != 0).any(-1).nonzero().flatten()
    if cotangents is not None:
        mode = "vjp"
    elif mode == "auto":
        mode = "jvp" if len(moving) < dim else "vjp"
    per_row = _saved_bytes(fn, x, params) * _SAFETY if memory_budget is not None else 0.0
    budget = parse_memory(memory_budget) if memory_budget is not None else math.inf
    if mode == "jvp":
        return _jvp_rows(fn, x, x0, alphas, weights, moving, dim, per_row, budget, forward_ad)
    # one (dimension, row) of the vmapped backward holds about one row of saved tensors
    rows = int(max(1, min(len(alphas), budget / (2 * per_row)))) if per_row else len(alphas)
    basis = torch.eye(dim, device=x.device) if cotangents is None else cotangents.float()
    n_out = basis.shape[0]
    dims = int(max(1, min(n_out, (budget - rows * per_row) / (rows * per_row)))) \
        if per_row else n_out
    acc = torch.zeros(n_out, *x.shape, dtype=torch.float32, device=x.device)
    for start in range(0, len(alphas), rows):
        a = alphas[start:start + rows].to(x.device, x.dtype).view(-1, 1, 1)
        w = weights[start:start + rows].to(x.device, torch.float32).view(1, -1, 1, 1)
        with torch.enable_grad():
            path = (x0 + a * (x - x0)).detach().requires_grad_(True)
            out = fn(path)
            for d0 in range(0, n_out, dims):
                d1 = min(n_out, d0 + dims)
                grad_out = basis[d0:d1, None, :].expand(d1 - d0, len(a), dim).to(out.dtype)
                (g,) = torch.autograd.grad(out, path, grad_out, retain_graph=d1 < n_out,
                                           is_grads_batched=True)
                acc[d0:d1] += (g.float() * w).sum(1)
            del out, path
    return (acc * delta).sum(-1)


def _jvp_rows(fn, x, x0, alphas, weights, moving, dim, per_row, budget, forward_ad
              ) -> torch.Tensor:
    """Forward mode: rows = (path point, moving token); a row's output tangent is
    column ``token`` of that point's Jacobian-times-delta."""
    from torch.func import jvp

    step = torch.arange(len(alphas)).repeat_interleave(len(moving))
    token = moving.cpu().repeat(len(alphas))
    # forward AD keeps primal + tangent activations of the live layer, not a whole graph
    rows = int(max(1, min(len(step), budget / per_row))) if per_row else len(step)
    out = torch.zeros(dim, x.shape[0], dtype=torch.float32, device=x.device)
    delta = x - x0
    with torch.no_grad(), forward_ad():
        for start in range(0, len(step), rows):
            s, t = step[start:start + rows], token[start:start + rows]
            a = alphas[s].to(x.device, x.dtype).view(-1, 1, 1)
            path = x0 + a * delta
            tangent = torch.zeros_like(path)
            r = torch.arange(len(s), device=x.device)
            tangent[r, t.to(x.device)] = delta[t.to(x.device)]
            _, dout = jvp(fn, (path,), (tangent,))
            w = weights[s].to(x.device, torch.float32).view(-1, 1)
            out.index_add_(1, t.to(x.device), (dout.float() * w).T)
    return out


@dataclass(repr=False)
class TokenPairAttribution(Artifact):
    """Which query token met which document token: ``matrix[i, j]`` over query tokens i
    and document tokens j (special tokens and prefixes stay fixed and score 0).

    ``expected`` is s(a, b) - s(r_a, b) - s(a, r_b) + s(r_a, r_b), what the matrix sums to
    in the limit of many steps; ``completeness_gap`` is |sum(matrix) - expected|.
    """

    kind: ClassVar[str] = "token-pairs"
    array_fields: ClassVar[tuple[str, ...]] = ("matrix",)

    query: str
    doc: str
    query_tokens: list[str]
    doc_tokens: list[str]
    query_word_ids: list[int]
    doc_word_ids: list[int]
    query_offsets: list[list[int]]
    doc_offsets: list[list[int]]
    matrix: np.ndarray
    score: float
    score_query_baseline: float  # s(r_a, b)
    score_doc_baseline: float  # s(a, r_b)
    score_both_baseline: float  # s(r_a, r_b)
    expected: float
    completeness_gap: float
    parameters: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    manifest: Manifest = field(default_factory=lambda: Manifest("token-pairs"))

    @property
    def relative_gap(self) -> float:
        return self.completeness_gap / max(abs(self.expected), 1e-12)

    def query_marginals(self) -> np.ndarray:
        """Per query token: the sum of its row (its share of the four-term difference)."""
        return np.asarray(self.matrix).sum(1)

    def doc_marginals(self) -> np.ndarray:
        """Per document token: the sum of its column."""
        return np.asarray(self.matrix).sum(0)

    def words(self) -> tuple[list[str], list[str], np.ndarray]:
        """Query words, document words and the matrix over words (word pieces summed;
        special tokens dropped)."""
        q_words, q_index = _merge(self.query, self.query_word_ids, self.query_offsets)
        d_words, d_index = _merge(self.doc, self.doc_word_ids, self.doc_offsets)
        return q_words, d_words, (_pool_matrix(q_index, len(q_words))
                                  @ np.asarray(self.matrix, dtype=np.float64)
                                  @ _pool_matrix(d_index, len(d_words)).T)

    def top_pairs(self, k: int = 10) -> list[tuple[str, str, float]]:
        """The ``k`` (query word, document word, value) with the largest |value|."""
        q, d, m = self.words()
        order = np.argsort(-np.abs(m), axis=None)[:k]
        return [(q[i], d[j], float(m[i, j])) for i, j in
                (np.unravel_index(o, m.shape) for o in order)]

    def to_frame(self) -> pd.DataFrame:
        m = np.asarray(self.matrix)
        i, j = np.meshgrid(np.arange(m.shape[0]), np.arange(m.shape[1]), indexing="ij")
        return pd.DataFrame({"query_index": i.ravel(), "doc_index": j.ravel(),
                             "query_token": np.asarray(self.query_tokens)[i.ravel()],
                             "doc_token": np.asarray(self.doc_tokens)[j.ravel()],
                             "value": m.ravel()})

    def summary(self) -> str:
        m = np.shape(self.matrix)
        return f"{m[0]}x{m[1]} tokens, score {self.score:.4f}, gap {self.relative_gap:.2%}"


def _pool_matrix(index: list[int], n_words: int) -> np.ndarray:
    """[words, tokens] 0/1 matrix: token k belongs to word index[k] (-1: none)."""
    out = np.zeros((n_words, len(index)))
    for k, w in enumerate(index):
        if w >= 0:
            out[w, k] = 1.0
    return out


def _merge(text: str, word_ids: list[int], offsets: list[list[int]]
           ) -> tuple[list[str], list[int]]:
    """Word texts (from offsets) and, per token, its index in that list (-1: special)."""
    spans: dict[int, list[int]] = {}
    for w, (s, e) in zip(word_ids, offsets, strict=True):
        if w >= 0:
            span = spans.setdefault(w, [s, e])
            span[0], span[1] = min(span[0], s), max(span[1], e)
    order = sorted(spans)
    index = {w: k for k, w in enumerate(order)}
    return [text[spans[w][0]:spans[w][1]] for w in order], [index.get(w, -1) for w in word_ids]


class IntegratedJacobians:
    """Token-pair attribution of a bi-encoder's similarity (integrated Jacobians).

    Args:
        model: a :class:`BiEncoder` (a cross-encoder is refused: see
            :func:`require_bi_encoder`).
        baseline: ``"mask"`` (default), ``"pad"``, ``"zero"`` or ``"text:<words>"``, for
            both sides; special tokens stay at their input.
        n_steps: quadrature points per path (each side's path is integrated once).
        rule: ``"gausslegendre"`` or ``"riemann_left|right|middle|trapezoid"``.
        memory_budget: activation plus batched-gradient memory per chunk (``"1GB"``).
        max_doc_tokens: cut documents to this many word pieces first.
        gap_tolerance: warn when |sum(A) - expected| exceeds this share of |expected|.
        mode: ``"auto"``: the side with fewer tokens T1 gets its full G (the cheaper of D
            vmapped VJPs and T1 forward-mode products), the other side T1 VJPs with G's
            columns as cotangents; ``"vjp"`` / ``"jvp"``: both sides' G in full by that
            mode, then the contraction. Same numbers, ``auto`` is the fastest.
    """

    name = "integrated-jacobians"

    def __init__(self, model: BiEncoder, baseline: str | Baseline = "mask", n_steps: int = 32,
                 rule: str = "gausslegendre", *, memory_budget: str | int | None = "1GB",
                 max_doc_tokens: int | None = None, gap_tolerance: float = 0.01,
                 mode: str = "auto"):
        self.model = require_bi_encoder(model)
        self.baseline = Baseline.parse(baseline)
        quadrature(n_steps, rule)
        if memory_budget is not None:
            parse_memory(memory_budget)
        self.n_steps, self.rule, self.memory_budget = n_steps, rule, memory_budget
        self.max_doc_tokens, self.gap_tolerance = max_doc_tokens, gap_tolerance
        if mode not in ("auto", "vjp", "jvp"):
            raise IrlensError(f"unknown mode '{mode}'; use auto, vjp or jvp")
        self.mode = mode

    def get_params(self) -> dict[str, Any]:
        return {"baseline": str(self.baseline), "n_steps": self.n_steps, "rule": self.rule,
                "max_doc_tokens": self.max_doc_tokens,
                "similarity": self.model.similarity_name}

    def _embed_fn(self, stream: Stream, pair: int) -> Callable[[torch.Tensor], torch.Tensor]:
        n = int(stream.lengths[pair])
        cosine = self.model.similarity_name == "cosine"

        def fn(embeds: torch.Tensor) -> torch.Tensor:
            rows = torch.full((embeds.shape[0],), pair, dtype=torch.long,
                              device=embeds.device)
            e = self.model.forward_embeds(stream.rows(rows, n), embeds).float()
            return F.normalize(e, dim=-1) if cosine else e

        return fn

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenPairAttribution]:
        """One :class:`TokenPairAttribution` per (query, doc) pair."""
        queries, docs, _ = prepare_texts(self.model, queries, docs, self.max_doc_tokens)
        problem = build_problem(self.model, queries, docs, "both", self.baseline,
                                self.model.similarity_name, self.memory_budget)
        infos = pair_tokens(problem)
        q_stream, d_stream = problem.streams
        results = []
        with frozen(self.model):
            for p, info in enumerate(infos):
                sides = {}
                n_moving = {s.side: int(s.moves[p].sum()) for s in (q_stream, d_stream)}
                order = sorted((q_stream, d_stream), key=lambda s: n_moving[s.side])
                for k, s in enumerate(order):
                    n = int(s.lengths[p])
                    fn = self._embed_fn(s, p)
                    # "auto": the shorter side's G in full, the longer side's products
                    # with G's columns as cotangents (the contraction, fused)
                    cot = sides[order[0].side][0].T if k == 1 and self.mode == "auto" \
                        else None
                    g = integrated_jacobian(
                        fn, s.x[p, :n], s.x0[p, :n], self.n_steps, self.rule,
                        self.memory_budget, self.model.parameters(), self.mode,
                        lambda s=s: attention_probes(self.model._encoder_for(s.side)),
                        cotangents=cot)
                    with torch.no_grad():
                        ends = fn(torch.stack([s.x[p, :n], s.x0[p, :n]]))
                    sides[s.side] = (g, ends[0], ends[1])
                (gq, eq, rq), (gd, ed, rd) = sides["query"], sides["doc"]
                if self.mode != "auto":
                    matrix = gq.T @ gd  # the one contraction
                elif order[0].side == "query":
                    matrix = gd  # already G_q^T G_d
                else:
                    matrix = gq.T
                matrix = matrix.cpu().double().numpy()
                s_ab, s_rb, s_ar, s_rr = (float(u @ v) for u, v in
                                          ((eq, ed), (rq, ed), (eq, rd), (rq, rd)))
                expected = s_ab - s_rb - s_ar + s_rr
                nq = info.n_query_side
                results.append(TokenPairAttribution(
                    query=info.query, doc=info.doc, query_tokens=info.tokens[:nq],
                    doc_tokens=info.tokens[nq:], query_word_ids=info.word_ids[:nq],
                    doc_word_ids=[w - (max(info.word_ids[:nq]) + 1) if w >= 0 else -1
                                  for w in info.word_ids[nq:]],
                    query_offsets=[list(o) for o in info.offsets[:nq]],
                    doc_offsets=[list(o) for o in info.offsets[nq:]], matrix=matrix,
                    score=s_ab, score_query_baseline=s_rb, score_doc_baseline=s_ar,
                    score_both_baseline=s_rr, expected=expected,
                    completeness_gap=abs(float(matrix.sum()) - expected),
                    parameters=self.get_params(), model_id=self.model.model_id,
                    manifest=make_manifest("token-pairs", self.get_params(),
                                           model=self.model)))
        bad = [r.relative_gap for r in results
               if r.completeness_gap > self.gap_tolerance * abs(r.expected) + 1e-4]
        if bad:
            warn(f"token-pair completeness gap above {self.gap_tolerance:.1%} of the "
                 f"four-term difference for {len(bad)} of {len(results)} pairs (worst "
                 f"{max(bad):.1%}); raise n_steps", CompletenessWarning)
        return results
