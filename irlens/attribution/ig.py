"""Integrated Gradients on word embeddings (Sundararajan et al., ICML 2017).

attribution_i = (x_i - x'_i) . sum_k w_k dF/dx_i (x' + a_k (x - x')), summed over the
embedding dimension; only word embeddings move (position and token-type embeddings are
added by the model as usual). A consumer of :mod:`irlens.paths`: one row per (pair,
step), every explained token moving.
"""

from __future__ import annotations

import torch

from irlens.attribution._base import PathMethod, gap_fix, warn_gaps
from irlens.attribution.result import TokenAttribution
from irlens.paths import Engine, Rows, quadrature

__all__ = ["IntegratedGradients"]


class IntegratedGradients(PathMethod):
    """Integrated Gradients of the pair score with respect to word embeddings.

    Arguments: see :class:`~irlens.attribution._base.PathMethod` and
    :class:`~irlens.attribution._base.AttributionMethod`.
    """

    name = "ig"

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, cut = self._problem(queries, docs, self.baseline)
        engine = Engine(problem, self.memory_budget)
        alphas, weights = quadrature(self.n_steps, self.rule)
        grads = engine.gradients(Rows.paths(problem.n_pairs, alphas, weights))[-1]
        attr = {s.side: (g * (s.x - s.x0).float()).sum(-1).cpu()
                for s, g in zip(problem.streams, grads, strict=True)}
        n = problem.n_pairs
        ends = engine.values(Rows.make(torch.arange(n).repeat(2), [1.0] * n + [0.0] * n, 1.0))
        score, base = ends[:n], ends[n:]
        expected = score - base
        total = sum(a.sum(-1) for a in attr.values())
        gap = (total - expected).abs()
        results = self._results(problem, cut, attr, score, base, expected, gap,
                                expected.abs())
        warn_gaps(results, self.gap_tolerance, gap_fix(self.rule))
        return results
