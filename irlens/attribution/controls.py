"""Control methods for faithfulness comparisons: gradient x input and random scores."""

from __future__ import annotations

import math
from typing import Any

import torch

from irlens.attribution._base import AttributionMethod
from irlens.attribution._engine import Engine, Rows
from irlens.attribution.baselines import Baseline
from irlens.attribution.result import TokenAttribution
from irlens.models import Retriever

__all__ = ["GradientXInput", "RandomAttribution"]


class GradientXInput(AttributionMethod):
    """dF/dx_i . x_i at the input (word embeddings), summed over the embedding dimension.

    One forward and backward per chunk of pairs; no completeness (gap is NaN).
    """

    name = "gxi"

    def __init__(self, model: Retriever, *, target: str = "both", output: str | None = None,
                 memory_budget: str | int | None = "1GB", max_tokens: int | None = None,
                 max_doc_tokens: int | None = None):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens)
        self.memory_budget = memory_budget
        self.max_tokens = max_tokens

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, pairs = self._problem(queries, docs, Baseline("zero"))
        n = problem.n_pairs
        engine = Engine(problem, self.memory_budget, self.max_tokens)
        grads = engine.gradients(Rows.ends(n, 1.0))
        attr = {s.side: (g * (s.x - s.x0).float()).sum(-1).cpu()
                for s, g in zip(problem.streams, grads, strict=True)}
        score = engine.values(Rows.ends(n, 1.0))
        nan = torch.full((n,), math.nan)
        return self._results(pairs, attr, score, nan, nan, nan, nan)


class RandomAttribution(AttributionMethod):
    """Standard-normal scores on the explained tokens, reproducible for a seed."""

    name = "random"

    def __init__(self, model: Retriever, seed: int = 0, *, target: str = "both",
                 output: str | None = None, max_doc_tokens: int | None = None):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens)
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "seed": self.seed}

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, pairs = self._problem(queries, docs, Baseline("zero"))
        n = problem.n_pairs
        gen = torch.Generator().manual_seed(self.seed)
        attr = {}
        for s in problem.streams:
            noise = torch.randn(s.moves.shape, generator=gen)
            attr[s.side] = noise * s.moves.cpu()
        score = Engine(problem, None).values(Rows.ends(n, 1.0))
        nan = torch.full((n,), math.nan)
        return self._results(pairs, attr, score, nan, nan, nan, nan)
