"""Options of ``irlens explain`` and ``irlens faithfulness``."""

from __future__ import annotations

from typing import Any

from irlens.errors import IrlensError
from irlens.options.common import (
    DATA,
    DEVICE,
    JSON,
    MEMORY_BUDGET,
    MIN_RELEVANCE,
    MODEL,
    OUT,
    RAY,
    SEED,
    SPLIT,
    WORKERS,
)
from irlens.options.core import (
    Option,
    Table,
    at_least,
    below,
    one_of,
    positive,
)

__all__ = ["EXPLAIN", "FAITHFULNESS"]


def _problem(fn, *args: Any, **kwargs: Any) -> str | None:
    try:
        fn(*args, **kwargs)
    except IrlensError as err:
        return str(err)
    return None


def _method(values: dict[str, Any]) -> str | None:
    """The method spec with its baseline, steps, rule and target (they interact)."""
    from irlens.attribution.methods import check_method

    if values.get("pairs"):
        return None  # --pairs is integrated Jacobians, not --method
    return _problem(check_method, values["method"], n_steps=values["steps"],
                    rule=values["rule"], baseline=values["baseline"],
                    target=values["target"] or "doc", memory_budget=values["memory_budget"])


def _methods(values: dict[str, Any]) -> str | None:
    from irlens.attribution.study import check_study_options

    names = [m.strip() for m in values["methods"].split(",") if m.strip()]
    return _problem(check_study_options, values["pairs"], names, n_steps=values["n_steps"],
                    rule=values["rule"], target=values["target"], top_k=values["top_k"],
                    n_candidates=values["candidates"], memory_budget=values["memory_budget"])


EXPLAIN = Table("explain", [
    Option("query", "str", ..., "The query text, @FILE or - (standard input).", argument=True),
    Option("doc", "str", ..., "The document text, @FILE or - (standard input).", argument=True),
    MODEL.but(help="'default', a model folder or a Hugging Face id."),
    Option("method", "str", "ig",
           "ig, sig, occlusion, gxi or random (ig-pad, sig-mask... set the baseline), or a spec "
           "such as 'ig(baseline=pad, n_steps=20)'. sig costs tokens x steps forward+backward "
           "passes; occlusion-mask is its exact limit and about 20x cheaper."),
    Option("baseline", "str", None, "pad, mask, zero or text:<words> [default: mask]."),
    Option("steps", "int", 50, "Quadrature points per path.", at_least(1),
           flags=("--steps", "--n-steps")),
    Option("rule", "str", "gausslegendre",
           "Quadrature: gausslegendre or riemann_left|right|middle|trapezoid."),
    Option("target", "str", None,
           "Tokens to explain: query, doc or both [default: doc for bi-encoders (the query stays "
           "fixed), both for cross-encoders].", one_of("query", "doc", "both")),
    Option("score", "str", None,
           "Cross-encoders: explain the logit or the prob [default: the model's].",
           one_of("logit", "prob"), flags=("--score",)),
    Option("max_doc_tokens", "int", None, "Cut the document to N word pieces.", at_least(1)),
    MEMORY_BUDGET.but(help="Activation memory per forward+backward."),
    Option("corpus", "path", None,
           "A BEIR folder: place the baseline's score among the query's scores against a sample "
           "of its documents (a percentile).", flags=("--corpus",)),
    Option("corpus_sample", "int", 200, "Documents sampled from --corpus.", at_least(1)),
    DEVICE.but(help="Where the model runs."),
    Option("html", "path", None,
           "Write the heatmap page to this file.", results=False, flags=("--html",)),
    OUT.but(default=None, help="Folder for explain.html and attribution.json."),
    JSON.but(name="as_json", help="Print the result as JSON on stdout."),
    Option("top", "int", 8, "How many top words to print.", at_least(1), results=False),
    Option("pairs", "bool", False,
           "Bi-encoders: which query word met which document word (integrated Jacobians).",
           flags=("--pairs",)),
], rules=[_method])


FAITHFULNESS = Table("faithfulness", [
    MODEL.but(help="'default', a model folder or a Hugging Face id."),
    DATA.but(help="A BEIR folder.", kind="str"),
    SPLIT.but(help="Which qrels/<split>.tsv to sample pairs from."),
    Option("pairs", "int", 50, "Relevant (query, doc) pairs to explain (>= 1).", at_least(1)),
    Option("methods", "str",
           "ig-pad,ig-mask,sig-mask,gxi,random",
           "Comma-separated methods (occlusion-mask is SIG-mask's exact limit, far cheaper)."),
    Option("n_steps", "int", 10, "Quadrature points per path.", at_least(1),
           flags=("--n-steps", "--steps")),
    Option("rule", "str", "gausslegendre", "Quadrature rule."),
    Option("target", "str", "doc",
           "Tokens to explain: doc, query or both.", one_of("query", "doc", "both")),
    Option("max_doc_tokens", "int", 128, "Cut documents to N word pieces.", at_least(1)),
    Option("top_k", "float", 0.2,
           "Share of explained tokens removed or kept.",
           below(1, fix="pass a share of tokens such as 0.2")),
    Option("candidates", "int", 50, "BM25 candidates per query for rank changes.", at_least(0)),
    Option("scale", "float", 20.0, "Bi-encoders: softmax scale for probabilities.", positive()),
    MIN_RELEVANCE.but(help="Grade a sampled document needs (DL19: 2)."),
    SEED.but(help="Seed for sampling pairs and random scores."),
    MEMORY_BUDGET.but(help="Activation memory per forward+backward."),
    DEVICE.but(help="Where the model runs."),
    OUT.but(default=None,
            help="The study folder [default: results/faithfulness-<dataset>]; a rerun resumes it."),
    JSON.but(name="as_json",
             help="Print the summary as JSON on stdout instead of a Markdown table."),
    RAY,
    WORKERS,
], rules=[_methods])
