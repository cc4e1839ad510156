"""Retrieval metrics, computed only by ir_measures and named as ir_measures names them.

Any ir_measures name works: ``nDCG@10``, ``RR@10``, ``R@100``, ``AP``, ``P@5``,
``RR(rel=2)@10``, ... (``MAP`` and ``MRR@10`` are accepted aliases of ``AP`` and ``RR@10``).
Results are keyed by the canonical name (``str`` of the parsed measure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import ir_measures
import pandas as pd

from irlens._warn import warn
from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.errors import IrlensError

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate", "parse_metrics", "search_depth"]

DEFAULT_METRICS: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "AP")
_NO_RESULT = "irlens:no-result"  # an unjudged stand-in for an empty result list
_EXAMPLES = "nDCG@10, RR@10, R@100, AP, P@5, Success@10, RR(rel=2)@10"


@dataclass(repr=False)
class Evaluation(Artifact):
    """Metric values: the mean over queries (``aggregate``) and each query's (``per_query``).

    An :class:`~irlens.artifacts.Artifact`: ``save(folder)``/``load(folder)`` (manifest
    plus a per-query Parquet table), ``to_frame()`` (one row per query, one column per
    metric), ``to_json()`` (text).

    Attributes:
        metrics: canonical ir_measures names, in the order asked.
        aggregate: name -> mean over the judged queries.
        per_query: query id -> {name: value}.
        n_queries: how many queries were scored.
        provider: "ir_measures" plus its version, which computed the values.
    """

    kind: ClassVar[str] = "evaluation"

    metrics: list[str]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    n_queries: int
    provider: str
    manifest: Manifest = field(default_factory=lambda: make_manifest("evaluation"),
                               compare=False)

    @property
    def primary(self) -> float:
        """The first metric's aggregate value."""
        return self.aggregate[self.metrics[0]]

    def to_dict(self, per_query: bool = True) -> dict[str, Any]:
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "manifest"}
        if not per_query:
            del payload["per_query"]
        return payload

    def to_json(self, per_query: bool = True) -> str:
        """The evaluation as JSON text (write files with :meth:`save`)."""
        return json.dumps(self.to_dict(per_query=per_query), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        """Read the text of :meth:`to_json` (with its per-query values)."""
        return cls(**json.loads(text))

    def to_frame(self) -> pd.DataFrame:
        """One row per query: ``query_id`` and one column per metric."""
        frame = pd.DataFrame.from_dict(self.per_query, orient="index",
                                       columns=self.metrics)
        return frame.rename_axis("query_id").reset_index()

    def summary(self) -> str:
        values = ", ".join(f"{m} {self.aggregate[m]:.4f}" for m in self.metrics[:3])
        more = f" (+{len(self.metrics) - 3} more)" if len(self.metrics) > 3 else ""
        return f"{self.n_queries} queries: {values}{more}"


def parse_metrics(metrics: str | Sequence[str]) -> list[Any]:
    """ir_measures measures from names (a list, or one comma-separated string)."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise IrlensError(f"no metrics given; pass ir_measures names such as {_EXAMPLES}")
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, TypeError, SyntaxError, KeyError, AttributeError):
            raise IrlensError(
                f"unknown metric {name!r}; use ir_measures names such as {_EXAMPLES}"
            ) from None
    return measures


def search_depth(metrics: str | Sequence[str], n_docs: int) -> int:
    """How many documents per query a run needs for ``metrics`` to be exact: the largest
    cutoff (``R@1000`` -> 1000), or the whole corpus when a measure has none (``AP``)."""
    cutoffs = [m.params.get("cutoff") for m in parse_metrics(metrics)]
    if any(c is None for c in cutoffs):
        return n_docs
    return min(n_docs, max(cutoffs))


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    ignore_identical_ids: bool = True,
    *,
    model=None,
    data=None,
) -> Evaluation:
    """Score ``run`` against ``qrels`` with ir_measures.

    Binary measures count grade >= 1 as relevant unless the name says otherwise: for
    graded qrels such as TREC DL, the usual choice is ``RR(rel=2)@10`` and ``AP(rel=2)``.
    ``ignore_identical_ids`` drops a document whose id equals its query's id (the BEIR
    and MTEB convention, which matters for ArguAna). Queries missing from the run score
    0 (like ``trec_eval -c``), so means are over all judged queries. ``model`` (a
    retriever) and ``data`` (a :class:`~irlens.data.Dataset`) only go into the manifest.
    """
    measures = parse_metrics(metrics)
    names = [str(m) for m in measures]
    if len(set(names)) != len(names):
        raise IrlensError(f"metric listed twice in {', '.join(names)}; list each once")
    qrels = {qid: dict(judged) for qid, judged in qrels.items()}
    run = {
        qid: {d: float(s) for d, s in docs.items() if not (ignore_identical_ids and d == qid)}
        for qid, docs in run.items()
        if qid in qrels
    }
    if not run:
        raise IrlensError(
            "the run shares no query id with the qrels; check that both come from the "
            "same dataset and split"
        )
    missing = [qid for qid in qrels if not run.get(qid)]
    if missing:
        warn(
            f"{len(missing)} judged queries have no results in the run and score 0 "
            f"(first: {missing[0]!r})"
        )
        for qid in missing:  # like trec_eval -c: an empty result list scores 0
            run[qid] = {_NO_RESULT: 0.0}
    aggregate = {
        str(m): float(v) for m, v in ir_measures.calc_aggregate(measures, qrels, run).items()
    }
    per_query: dict[str, dict[str, float]] = {qid: {} for qid in qrels}
    for metric in ir_measures.iter_calc(measures, qrels, run):
        per_query[metric.query_id][str(metric.measure)] = float(metric.value)
    return Evaluation(
        metrics=names,
        aggregate={name: aggregate[name] for name in names},
        per_query=per_query,
        n_queries=len(per_query),
        provider=f"ir_measures {ir_measures.__version__}",
        manifest=make_manifest("evaluation", {"metrics": names,
                                              "ignore_identical_ids": ignore_identical_ids},
                               model=model, data=data),
    )
