"""Integrated Gradients on word embeddings (Sundararajan et al. 2017).

attribution_i = (x_i - x'_i) . sum_k w_k dF/dx_i (x' + a_k (x - x')), summed over the
embedding dimension; only word embeddings move (position and token-type embeddings are
added by the model as usual). Every (pair, step) row of a call runs in memory-bounded
chunks, one forward and one backward per chunk.
"""

from __future__ import annotations

import torch

from irlens._path import quadrature
from irlens.attribution._base import PathMethod, warn_gaps
from irlens.attribution._engine import Engine, Rows
from irlens.attribution.result import TokenAttribution

__all__ = ["IntegratedGradients"]


class IntegratedGradients(PathMethod):
    """Integrated Gradients of the pair score with respect to word embeddings.

    Args:
        model: a bi-encoder or cross-encoder from :func:`irlens.load_model`.
        baseline: ``"mask"``, ``"pad"``, ``"zero"`` or ``"text:<words>"`` (see
            :mod:`irlens.attribution.baselines`).
        n_steps: quadrature points per path.
        method: ``"gausslegendre"`` (default; fewest steps for a given gap) or
            ``"riemann_left|right|middle|trapezoid"`` (see :mod:`irlens._path`).
        target, output, max_doc_tokens: see :class:`AttributionMethod`.
        memory_budget: activation memory per forward+backward chunk (``"1GB"``; model
            weights not included); ``None`` for no limit.
        max_tokens: a hard cap on rows x tokens per forward (combined with the budget).
        gap_tolerance: warn when a pair's completeness gap exceeds this fraction of
            |F(x) - F(x')| (plus 1e-4 absolute).
    """

    name = "ig"

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, pairs = self._problem(queries, docs, self.baseline)
        engine = Engine(problem, self.memory_budget, self.max_tokens)
        alphas, weights = quadrature(self.n_steps, self.method)
        grads = engine.gradients(Rows.paths(problem.n_pairs, alphas, weights))
        attr = {s.side: (g * (s.x - s.x0).float()).sum(-1).cpu()
                for s, g in zip(problem.streams, grads, strict=True)}
        n = problem.n_pairs
        ends = engine.values(Rows.make(torch.arange(n).repeat(2), [1.0] * n + [0.0] * n,
                                       [1.0] * 2 * n, [-1] * 2 * n))
        score, base = ends[:n], ends[n:]
        expected = score - base
        total = sum(a.sum(-1) for a in attr.values())
        gap = (total - expected).abs()
        results = self._results(pairs, attr, score, base, expected, gap, expected.abs())
        warn_gaps(results, self.gap_tolerance,
                  "raise n_steps or use method='gausslegendre'")
        return results
