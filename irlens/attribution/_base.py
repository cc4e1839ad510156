"""What every attribution method shares: arguments, ``get_params``/``repr``, results.

The path itself (tokens, baselines, rows, chunking, gradients) is :mod:`irlens.paths`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from irlens._warn import warn
from irlens.attribution.result import TokenAttribution
from irlens.errors import IrlensError
from irlens.models import BiEncoder, CrossEncoder, Retriever
from irlens.paths import TARGETS, Baseline, Problem, build_problem, prepare_texts, quadrature
from irlens.paths.engine import parse_memory

__all__ = ["AttributionMethod", "CompletenessWarning", "PathMethod", "gap_fix", "warn_gaps"]


class CompletenessWarning(UserWarning):
    """Attributions do not sum to F(x) - F(x') within the tolerance."""


class AttributionMethod:
    """Base class: parameters in ``__init__``, one verb ``attribute(queries, docs)``.

    Args:
        model: a :class:`BiEncoder` or :class:`CrossEncoder`.
        target: which tokens are explained: ``"doc"``, ``"query"`` or ``"both"``. For a
            bi-encoder, ``"doc"`` holds the query vector fixed (encoded once) and
            ``"query"`` the document vector; ``"both"`` moves both sides together.
            Everything else (special tokens, prompt prefixes, the other side) stays at
            its input.
        output: cross-encoders: ``"logit"`` or ``"prob"`` (default: the model's); a
            bi-encoder always explains its own similarity (cosine or dot).
        max_doc_tokens: cut documents to this many word pieces before attributing.
        memory_budget: activation memory per forward(+backward) chunk (``"1GB"``; model
            weights not included); ``None`` for no limit. Every forward of the method,
            baseline and control forwards included, respects it.

    ``repr(method)`` is a short spec that :func:`~irlens.attribution.make_method` parses
    back, e.g. ``ig(baseline=mask, rule=gausslegendre, n_steps=50)``.
    """

    name = "base"
    shown: tuple[str, ...] = ()  # parameters always in the repr

    def __init__(self, model: Retriever, *, target: str = "both", output: str | None = None,
                 max_doc_tokens: int | None = None,
                 memory_budget: str | int | None = "1GB"):
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
            self._default_output = model.output
        else:
            if output not in (None, "similarity", model.similarity_name):
                raise IrlensError(f"a bi-encoder explains its {model.similarity_name} "
                                  f"similarity; output '{output}' does not apply (leave it unset)")
            output = model.similarity_name
            self._default_output = output
        if max_doc_tokens is not None and (isinstance(max_doc_tokens, bool)
                                           or not isinstance(max_doc_tokens, int)
                                           or max_doc_tokens < 1):
            raise IrlensError(f"max_doc_tokens must be an integer >= 1, got {max_doc_tokens}")
        if memory_budget is not None:
            parse_memory(memory_budget)
        self.model = model
        self.target = target
        self.output = output
        self.max_doc_tokens = max_doc_tokens
        self.memory_budget = memory_budget

    def get_params(self) -> dict[str, Any]:
        """The parameters (everything but the model), as recorded in every result."""
        return {"target": self.target, "output": self.output,
                "max_doc_tokens": self.max_doc_tokens, "memory_budget": self.memory_budget}

    def __repr__(self) -> str:
        defaults = {k: p.default for k, p in inspect.signature(type(self)).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        defaults["output"] = self._default_output
        parts = [f"{k}={v}" for k, v in self.get_params().items()
                 if k in self.shown or k not in defaults or defaults[k] != v]
        return f"{self.name}({', '.join(parts)})"

    def attribute(self, queries: list[str] | str, docs: list[str] | str
                  ) -> list[TokenAttribution]:
        """Attribute each (query, doc) pair's score to tokens; one result per pair (a
        bare string pair is one pair)."""
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------
    def _problem(self, queries, docs, baseline: Baseline) -> tuple[Problem, list[bool]]:
        queries, docs, cut = prepare_texts(self.model, queries, docs, self.max_doc_tokens)
        problem = build_problem(self.model, queries, docs, self.target, baseline, self.output,
                                self.memory_budget)
        return problem, [c or t for c, t in zip(cut, problem.truncated, strict=True)]

    def _results(self, problem: Problem, cut: list[bool], attr: dict[str, torch.Tensor],
                 score: torch.Tensor, base: torch.Tensor, expected: torch.Tensor,
                 gap: torch.Tensor, scale: torch.Tensor) -> list[TokenAttribution]:
        """Assemble results; ``attr`` maps a stream side to scores [P, T]."""
        from irlens.attribution.tokens import pair_tokens

        results = []
        for i, pair in enumerate(pair_tokens(problem)):
            if "pair" in attr:
                scores = attr["pair"][i, :len(pair.tokens)].tolist()
            else:
                n_q = pair.n_query_side
                scores = []
                for side, n in (("query", n_q), ("doc", len(pair.tokens) - n_q)):
                    scores += attr[side][i, :n].tolist() if side in attr else [0.0] * n
            results.append(TokenAttribution(
                query=pair.query, doc=pair.doc, tokens=pair.tokens, scores=scores,
                segments=pair.segments, word_ids=pair.word_ids, offsets=pair.offsets,
                score=float(score[i]), baseline_score=float(base[i]),
                expected_sum=float(expected[i]), completeness_gap=float(gap[i]),
                gap_scale=float(scale[i]), method=self.name, parameters=self.get_params(),
                model_id=self.model.model_id, output=self.output, truncated=cut[i],
                manifest=self._manifest()))
        return results

    def _manifest(self):
        from irlens.artifacts import make_manifest

        return make_manifest(TokenAttribution.kind, {"method": repr(self),
                                                     **self.get_params()}, model=self.model)


class PathMethod(AttributionMethod):
    """A method that integrates along straight paths from a baseline (IG, SIG).

    Args (besides :class:`AttributionMethod`'s):
        baseline: ``"mask"``, ``"pad"``, ``"zero"`` or ``"text:<words>"`` (see
            :mod:`irlens.paths.baselines`).
        n_steps: points (gradient evaluations) per path.
        rule: the quadrature: ``"gausslegendre"`` (default; fewest steps for a given
            gap) or ``"riemann_left|right|middle|trapezoid"`` (see
            :mod:`irlens.paths.quadrature`).
        gap_tolerance: warn when a pair's completeness gap exceeds this fraction of its
            scale (plus 1e-4 absolute).
    """

    shown = ("baseline", "rule", "n_steps")

    def __init__(self, model: Retriever, baseline: str | Baseline = "mask", n_steps: int = 50,
                 rule: str = "gausslegendre", *, target: str = "both",
                 output: str | None = None, memory_budget: str | int | None = "1GB",
                 max_doc_tokens: int | None = None, gap_tolerance: float = 0.01):
        super().__init__(model, target=target, output=output, max_doc_tokens=max_doc_tokens,
                         memory_budget=memory_budget)
        self.baseline = Baseline.parse(baseline)
        quadrature(n_steps, rule)  # checks n_steps and rule now, not at attribute()
        self.n_steps = n_steps
        self.rule = rule
        self.gap_tolerance = gap_tolerance

    def get_params(self) -> dict[str, Any]:
        return {"baseline": str(self.baseline), "rule": self.rule, "n_steps": self.n_steps,
                **super().get_params(), "gap_tolerance": self.gap_tolerance}


def gap_fix(rule: str, uniform: str = "gausslegendre") -> str:
    """What to do about a large completeness gap under quadrature ``rule``."""
    if rule == uniform:
        return "raise n_steps"
    return f"raise n_steps or use rule='{uniform}'"


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
