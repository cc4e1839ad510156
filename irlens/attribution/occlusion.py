"""Occlusion: each token's score is F(x) - F(x with that token at its baseline).

With the ``[MASK]`` baseline this is the exact value Sequential IG approximates: SIG
moves one token at a time along a straight line with every other token real, so by the
fundamental theorem of calculus its per-token attribution (summed over the embedding)
converges to this difference as ``n_steps`` grows. Occlusion gets it from one forward
per explained token and no backward (rows at alpha 0 of :mod:`irlens.paths`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from irlens.attribution._base import AttributionMethod
from irlens.attribution.result import TokenAttribution
from irlens.models import Retriever
from irlens.paths import Baseline, Engine, Rows, split_sides

__all__ = ["Occlusion"]


class Occlusion(AttributionMethod):
    """Leave-one-out with a baseline token (``[MASK]`` by default), batched: one row per
    explained token, many pairs per forward, no gradients.

    Arguments as :class:`~irlens.attribution.IntegratedGradients` (no path, no steps).
    """

    name = "occlusion"
    shown = ("baseline",)

    def __init__(self, model: Retriever, baseline: str | Baseline = "mask", *,
                 target: str = "both", output: str | None = None,
                 memory_budget: str | int | None = "1GB", max_doc_tokens: int | None = None):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens,
                         memory_budget=memory_budget)
        self.baseline = Baseline.parse(baseline)

    def get_params(self) -> dict[str, Any]:
        return {"baseline": str(self.baseline), **super().get_params()}

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        joint, cut = self._problem(queries, docs, self.baseline)
        n = joint.n_pairs
        attr: dict[str, torch.Tensor] = {}
        score = torch.zeros(n)
        for problem in split_sides(joint, self.memory_budget):
            stream = problem.streams[0]
            pair, token = (t.cpu() for t in stream.moves.nonzero(as_tuple=True))
            rows = Rows.make(torch.cat([torch.arange(n), pair]), [1.0] * n + [0.0] * len(pair),
                             1.0, torch.cat([torch.full((n,), -1), token]))
            values = Engine(problem, self.memory_budget).values(rows)
            score = values[:n]
            scores = torch.zeros(stream.moves.shape)
            scores[pair, token] = score[pair] - values[n:]
            attr[stream.side] = scores
        base = Engine(joint, self.memory_budget).values(Rows.ends(n, 0.0))
        nan = torch.full((n,), math.nan)
        return self._results(joint, cut, attr, score, base, nan, nan, nan)
