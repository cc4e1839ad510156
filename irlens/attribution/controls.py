"""Control methods for faithfulness comparisons: gradient x input and random scores."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

from irlens.attribution._base import AttributionMethod
from irlens.attribution.result import TokenAttribution
from irlens.models import Retriever
from irlens.paths import Baseline, Engine, Rows

__all__ = ["GradientXInput", "RandomAttribution"]


class GradientXInput(AttributionMethod):
    """dF/dx_i . x_i at the input (word embeddings), summed over the embedding dimension
    (Shrikumar et al. 2016). One row per pair at alpha 1; no completeness (gap NaN)."""

    name = "gxi"

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, cut = self._problem(queries, docs, Baseline("zero"))
        n = problem.n_pairs
        engine = Engine(problem, self.memory_budget)
        grads = engine.gradients(Rows.ends(n, 1.0))[-1]
        attr = {s.side: (g * (s.x - s.x0).float()).sum(-1).cpu()
                for s, g in zip(problem.streams, grads, strict=True)}
        score = engine.values(Rows.ends(n, 1.0))
        nan = torch.full((n,), math.nan)
        return self._results(problem, cut, attr, score, nan, nan, nan, nan)


class RandomAttribution(AttributionMethod):
    """Standard-normal scores on the explained tokens.

    Each pair draws from its own generator, seeded by ``seed`` and the pair's texts, so
    a pair's scores do not depend on the other pairs of the call and different pairs
    (e.g. faithfulness groups) get different draws.
    """

    name = "random"
    shown = ("seed",)

    def __init__(self, model: Retriever, seed: int = 0, *, target: str = "both",
                 output: str | None = None, max_doc_tokens: int | None = None,
                 memory_budget: str | int | None = "1GB"):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens,
                         memory_budget=memory_budget)
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed, **super().get_params()}

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        problem, cut = self._problem(queries, docs, Baseline("zero"))
        n = problem.n_pairs
        attr = {s.side: torch.zeros(s.moves.shape) for s in problem.streams}
        for i in range(n):
            key = f"{self.seed}\0{problem.texts['query'][i]}\0{problem.texts['doc'][i]}"
            digest = hashlib.sha256(key.encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            for s in problem.streams:
                where = s.moves[i].cpu().nonzero().flatten()
                attr[s.side][i, where] = torch.randn(len(where), generator=gen)
        score = Engine(problem, self.memory_budget).values(Rows.ends(n, 1.0))
        nan = torch.full((n,), math.nan)
        return self._results(problem, cut, attr, score, nan, nan, nan, nan)
