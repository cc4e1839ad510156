"""What every attribution method shares: checking arguments, building inputs, results."""

from __future__ import annotations

import math
from typing import Any

import torch

from irlens._path import quadrature
from irlens._warn import warn
from irlens.attribution._engine import parse_memory
from irlens.attribution._inputs import TARGETS, PairTokens, Problem, build_problem, prepare_texts
from irlens.attribution.baselines import Baseline
from irlens.attribution.result import TokenAttribution
from irlens.errors import IrlensError
from irlens.models import BiEncoder, CrossEncoder, Retriever

__all__ = ["AttributionMethod", "CompletenessWarning", "PathMethod"]


class CompletenessWarning(UserWarning):
    """Attributions do not sum to F(x) - F(x') within the tolerance."""


class AttributionMethod:
    """Base class: parameters in ``__init__``, one verb ``attribute(queries, docs)``.

    Args:
        model: a :class:`BiEncoder` or :class:`CrossEncoder`.
        target: which tokens are explained: ``"doc"``, ``"query"`` or ``"both"``. For a
            bi-encoder, ``"doc"`` holds the query vector fixed (encoded once) and
            ``"query"`` the document vector; ``"both"`` moves both sides together.
            Everything else (special tokens, the other side) stays at its input.
        output: cross-encoders: ``"logit"`` or ``"prob"`` (default: the model's); a
            bi-encoder always explains its own similarity (cosine or dot).
        max_doc_tokens: cut documents to this many word pieces before attributing.
    """

    name = "base"

    def __init__(self, model: Retriever, *, target: str = "both", output: str | None = None,
                 max_doc_tokens: int | None = None):
        if not isinstance(model, (BiEncoder, CrossEncoder)):
            raise IrlensError("attribution needs an irlens BiEncoder or CrossEncoder; "
                              "load one with irlens.load_model")
        if target not in TARGETS:
            raise IrlensError(f"unknown target '{target}'; use {', '.join(TARGETS)}")
        if isinstance(model, CrossEncoder):
            output = output or model.output
            if output not in ("logit", "prob"):
                raise IrlensError(f"unknown output '{output}' for a cross-encoder; use logit "
                                  "or prob")
        else:
            if output not in (None, "similarity", model.similarity_name):
                raise IrlensError(f"a bi-encoder explains its {model.similarity_name} "
                                  f"similarity; output '{output}' does not apply (leave it unset)")
            output = model.similarity_name
        self.model = model
        self.target = target
        self.output = output
        self.max_doc_tokens = max_doc_tokens

    def get_params(self) -> dict[str, Any]:
        """The parameters recorded in every result."""
        return {"target": self.target, "output": self.output,
                "max_doc_tokens": self.max_doc_tokens}

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        """Attribute each (query, doc) pair's score to tokens; one result per pair."""
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------
    def _problem(self, queries, docs, baseline: Baseline
                 ) -> tuple[Problem, list[PairTokens]]:
        queries, docs, cut = prepare_texts(self.model, queries, docs, self.max_doc_tokens)
        return build_problem(self.model, queries, docs, self.target, baseline, self.output,
                             cut)

    def _results(self, pairs: list[PairTokens],
                 attr: dict[str, torch.Tensor], score: torch.Tensor, base: torch.Tensor,
                 expected: torch.Tensor, gap: torch.Tensor, scale: torch.Tensor
                 ) -> list[TokenAttribution]:
        """Assemble results; ``attr`` maps a stream side to scores [P, T]."""
        results = []
        for i, pair in enumerate(pairs):
            if "pair" in attr:
                scores = attr["pair"][i, :len(pair.tokens)].tolist()
            else:
                n_q = pair.n_query_side
                parts = []
                for side, n in (("query", n_q), ("doc", len(pair.tokens) - n_q)):
                    parts += attr[side][i, :n].tolist() if side in attr else [0.0] * n
                scores = parts
            results.append(TokenAttribution(
                query=pair.query, doc=pair.doc, tokens=pair.tokens, scores=scores,
                segments=pair.segments, word_ids=pair.word_ids, offsets=pair.offsets,
                score=float(score[i]), baseline_score=float(base[i]),
                expected_sum=float(expected[i]), completeness_gap=float(gap[i]),
                gap_scale=float(scale[i]), method=self.name, parameters=self.get_params(),
                model_id=self.model.model_id, output=self.output, truncated=pair.truncated))
        return results


class PathMethod(AttributionMethod):
    """A method that integrates along straight paths from a baseline (IG, SIG): the
    arguments they share are checked here; see :class:`IntegratedGradients`."""

    def __init__(self, model: Retriever, baseline: str | Baseline = "mask", n_steps: int = 50,
                 method: str = "gausslegendre", *, target: str = "both",
                 output: str | None = None, memory_budget: str | int | None = "1GB",
                 max_tokens: int | None = None, max_doc_tokens: int | None = None,
                 gap_tolerance: float = 0.01):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens)
        self.baseline = Baseline.parse(baseline)
        quadrature(n_steps, method)  # checks n_steps and method now, not at attribute()
        if memory_budget is not None:
            parse_memory(memory_budget)
        self.n_steps = n_steps
        self.method = method
        self.memory_budget = memory_budget
        self.max_tokens = max_tokens
        self.gap_tolerance = gap_tolerance

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "baseline": str(self.baseline),
                "n_steps": self.n_steps, "method": self.method}


def warn_gaps(results: list[TokenAttribution], tolerance: float, fix: str) -> None:
    """One warning when some results' completeness gaps exceed ``tolerance``."""
    bad = [r.relative_gap for r in results
           if not math.isnan(r.completeness_gap)
           and r.completeness_gap > tolerance * r.gap_scale + 1e-4]
    if bad:
        warn(
            f"completeness gap above {tolerance:.1%} of |F(x) - F(x')| for {len(bad)} of "
            f"{len(results)} pairs (worst {max(bad):.1%}); {fix}",
            CompletenessWarning)
