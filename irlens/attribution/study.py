"""A faithfulness study on a retrieval collection, resumable, saved as an artefact.

:func:`faithfulness_study` samples relevant (query, document) pairs, explains each with
several methods (IG-pad, IG-mask, SIG-mask, gradient x input, random by default), and
measures log-odds, comprehensiveness, sufficiency and rank changes
(:mod:`irlens.attribution.faithfulness`; DeYoung et al., "ERASER: A Benchmark to Evaluate
Rationalized NLP Models", ACL 2020; Shrikumar et al., "Learning Important Features
Through Propagating Activation Differences", ICML 2017, for log-odds). A query's
candidates are its BM25 top ``n_candidates`` documents (topped up with random ones when
BM25 finds fewer), cut to ``max_doc_tokens`` like the explained document and scored by the
same model.

With ``out_dir`` the study is a :class:`irlens.artifacts.Store`: each pair is one job,
saved as it finishes, so an interrupted run resumes at the next pair; a rerun with another
configuration, model or dataset in the same folder is refused.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.attribution._base import CompletenessWarning
from irlens.attribution.faithfulness import measure_faithfulness
from irlens.attribution.methods import check_method, make_method
from irlens.data import Dataset, sample_pairs
from irlens.errors import IrlensError
from irlens.executors import Executor
from irlens.models import BiEncoder, CrossEncoder, Retriever
from irlens.paths import cut_text

__all__ = ["DEFAULT_METHODS", "METRICS", "FaithfulnessPair", "FaithfulnessTable",
           "check_study_options", "faithfulness_study", "method_agreement"]

DEFAULT_METHODS = ("ig-pad", "ig-mask", "sig-mask", "gxi", "random")
METRICS = {  # name -> which direction is better
    "log_odds": "lower",
    "comprehensiveness": "higher",
    "sufficiency": "lower",
    "comprehensiveness_score": "higher",
    "sufficiency_score": "lower",
    "rank_change_comprehensiveness": "higher",
    "rank_change_sufficiency": "lower",
}
_HEADS = {"log_odds": "log-odds", "comprehensiveness": "comp", "sufficiency": "suff",
          "comprehensiveness_score": "comp(score)", "sufficiency_score": "suff(score)",
          "rank_change_comprehensiveness": "rank+ comp",
          "rank_change_sufficiency": "rank+ suff"}


@dataclass(repr=False)
class FaithfulnessPair(Artifact):
    """One finished pair of a study: one record per method."""

    kind: ClassVar[str] = "faithfulness.pair"
    manifest: Manifest
    records: list[dict[str, Any]]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)

    def summary(self) -> str:
        return f"{len(self.records)} methods"


@dataclass(repr=False)
class FaithfulnessTable(Artifact):
    """Per-(pair, method) records of a study and its configuration."""

    kind: ClassVar[str] = "faithfulness"
    manifest: Manifest
    config: dict[str, Any]
    records: list[dict[str, Any]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (pair, method)."""
        return pd.DataFrame(self.records)

    def summary(self) -> str:
        methods = self.config.get("methods", [])
        pairs = len({(r["qid"], r["doc_id"]) for r in self.records})
        return f"{pairs} pairs x {len(methods)} methods"

    def aggregate(self) -> pd.DataFrame:
        """One row per method: ``pairs``, the mean of every metric, its standard error
        (``<metric>_se``; NaN with one pair), mean seconds per pair and relative gap."""
        frame = self.to_frame()
        methods = list(self.config.get("methods", []))
        if frame.empty:
            return pd.DataFrame({"method": methods, "pairs": 0})
        cols = [c for c in (*METRICS, "seconds", "relative_gap") if c in frame]
        values = frame[["method", *cols]].copy()
        values[cols] = values[cols].apply(pd.to_numeric, errors="coerce")
        grouped = values.groupby("method", sort=False)
        out = grouped[cols].mean()
        se = grouped[list(METRICS)].sem(ddof=1).add_suffix("_se")
        out = pd.concat([grouped.size().rename("pairs"), out, se], axis=1)
        out = out.reindex([m for m in methods if m in out.index])
        return out.reset_index(names="method")

    def to_markdown(self) -> str:
        """The aggregate as a Markdown table (means ± standard errors; one pair: the value
        alone)."""
        table = self.aggregate()
        rows = []
        for _, row in table.iterrows():
            cells = {"method": row["method"], "pairs": int(row["pairs"])}
            for metric, head in _HEADS.items():
                mean, se = row.get(metric), row.get(f"{metric}_se")
                cells[head] = "-" if mean is None or pd.isna(mean) else (
                    f"{mean:.3f}" if pd.isna(se) else f"{mean:.3f} ± {se:.3f}")
            seconds = row.get("seconds")
            cells["s/pair"] = "-" if seconds is None or pd.isna(seconds) else f"{seconds:.1f}"
            rows.append(cells)
        heads = ["method", "pairs", *_HEADS.values(), "s/pair"]
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(str(r[h]) for h in heads) + " |" for r in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Config, direction of every metric, the aggregate and the records (JSON-able)."""
        table = self.aggregate().astype(object)
        summary = table.where(table.notna(), None).to_dict("records")
        return {"config": self.config, "better": METRICS, "summary": summary,
                "records": self.records}


def check_study_options(n_pairs: int, methods: list[str], *, n_steps: int, rule: str,
                        target: str, top_k: float, n_candidates: int,
                        memory_budget: str | int | None = "1GB") -> None:
    """Refuse bad options before any model or data is loaded (one line each)."""
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise IrlensError(f"pairs must be an integer >= 1, got {n_pairs}")
    if not methods:
        raise IrlensError("no methods given; use e.g. ig-mask,sig-mask,random")
    for name in methods:
        check_method(name, n_steps=n_steps, rule=rule, target=target,
                     memory_budget=memory_budget)
    if not 0 < top_k <= 1:
        raise IrlensError(f"top_k is a fraction of tokens in (0, 1], got {top_k}")
    if n_candidates < 0:
        raise IrlensError(f"candidates must be >= 0, got {n_candidates}")


def _candidate_scores(model: Retriever, query: str, docs: list[str], output: str | None
                      ) -> torch.Tensor:
    if not docs:
        return torch.empty(0)
    if isinstance(model, CrossEncoder):
        return model.predict([query] * len(docs), docs, output=output)
    assert isinstance(model, BiEncoder)
    return model.similarity(model.encode_queries([query]), model.encode_docs(docs))[0]


def method_agreement(table: FaithfulnessTable, a: str, b: str) -> dict[str, float]:
    """How closely methods ``a`` and ``b`` rank the same pairs' tokens: mean Spearman
    correlation, share of identical top-k sets and max relative difference, over the
    pairs both explained (e.g. SIG at n steps against occlusion, its exact limit)."""
    def by_pair(method: str) -> dict[tuple[str, str], list[float]]:
        return {(r["qid"], r["doc_id"]): r["token_scores"] for r in table.records
                if r["method"] == method and r.get("token_scores")}

    from scipy.stats import spearmanr

    left, right = by_pair(a), by_pair(b)
    rhos, same_top, rel = [], [], []
    k = table.config["top_k"]
    for pair in left.keys() & right.keys():
        x, y = torch.tensor(left[pair]), torch.tensor(right[pair])
        keep = (x != 0) | (y != 0)  # the explained tokens
        x, y = x[keep], y[keep]
        rhos.append(float(spearmanr(x.numpy(), y.numpy()).statistic))
        n = max(1, math.ceil(k * len(x)))
        same_top.append(float(set(x.topk(n).indices.tolist()) == set(y.topk(n).indices.tolist())))
        rel.append(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return {"pairs": len(rhos), "spearman": mean(rhos), "same_top_k": mean(same_top),
            "max_relative_difference": max(rel) if rel else None}


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}


def faithfulness_study(model: Retriever, dataset: Dataset, n_pairs: int = 50,
                       methods: tuple[str, ...] | list[str] = DEFAULT_METHODS, *,
                       n_steps: int = 10, rule: str = "gausslegendre",
                       target: str = "doc", max_doc_tokens: int | None = 128,
                       top_k: float = 0.2, n_candidates: int = 50, scale: float = 20.0,
                       replace_with: str = "mask", seed: int = 0, min_relevance: int = 1,
                       memory_budget: str | int | None = "1GB",
                       out_dir: str | Path | None = None,
                       progress: bool = False,
                       executor: Executor | None = None) -> FaithfulnessTable:
    """Explain ``n_pairs`` relevant pairs with every method and measure faithfulness.

    ``out_dir``: the study folder; each finished pair is saved there, a rerun with the same
    configuration skips it, and the table is saved in ``out_dir/table``.
    """
    from tqdm.auto import tqdm

    methods = list(methods)
    check_study_options(n_pairs, methods, n_steps=n_steps, rule=rule, target=target,
                        top_k=top_k, n_candidates=n_candidates, memory_budget=memory_budget)

    def explainer(name: str, pair_seed: int = seed):
        return make_method(name, model, n_steps=n_steps, rule=rule, seed=pair_seed,
                           target=target, max_doc_tokens=max_doc_tokens,
                           memory_budget=memory_budget)

    explainers = {name: explainer(name) for name in methods}
    output = next(iter(explainers.values())).output
    config = {"n_pairs": n_pairs, "methods": methods, "n_steps": n_steps,
              "rule": rule, "target": target, "max_doc_tokens": max_doc_tokens,
              "top_k": top_k, "n_candidates": n_candidates, "scale": scale,
              "replace_with": replace_with, "seed": seed, "min_relevance": min_relevance,
              "output": output, "candidates": "bm25", "split": dataset.split}
    manifest = make_manifest("faithfulness.study", config, model=model, data=dataset)
    store = None if out_dir is None else Store(out_dir, manifest)
    pairs = sample_pairs(dataset, n_pairs, seed=seed, min_relevance=min_relevance)
    state: dict[str, Any] = {}

    def candidates(qid: str) -> dict[str, float]:
        if "run" not in state:  # BM25 once, on the queries of the pairs still to do
            todo = [k for k in keys if store is None or not store.done(k)]
            qids = sorted({keys[k][0] for k in todo})
            sub = Dataset(dataset.name, dataset.corpus, {q: dataset.queries[q] for q in qids},
                          {q: dataset.qrels.get(q, {}) for q in qids}, dataset.split)
            from irlens.retrieval import bm25_search

            state["run"] = bm25_search(sub, k=n_candidates + 1, progress=False)
            state["scores"] = {}
        cache = state["scores"]
        if qid not in cache:
            ids = _fill(list(state["run"].get(qid, {})), dataset, n_candidates + 1, seed)
            texts = [cut_text(model.tokenizer, dataset.corpus[d].contents, max_doc_tokens)
                     if max_doc_tokens else dataset.corpus[d].contents for d in ids]
            scores = _candidate_scores(model, dataset.queries[qid], texts, output)
            cache[qid] = dict(zip(ids, scores.tolist(), strict=True))
        return cache[qid]

    def job(index: int, qid: str, doc_id: str):
        def run() -> FaithfulnessPair:
            query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
            records = []
            for name in methods:
                # the random control draws anew for every pair (a seed per pair)
                method = explainer(name, seed * 1_000_003 + index) if name == "random" \
                    else explainers[name]
                start = time.perf_counter()
                with warnings.catch_warnings():  # gaps are recorded per pair instead
                    warnings.simplefilter("ignore", CompletenessWarning)
                    [result] = method.attribute([query], [doc])
                seconds = time.perf_counter() - start
                others = torch.tensor([s for d, s in candidates(qid).items() if d != doc_id])
                metrics = measure_faithfulness(model, result, others[:n_candidates],
                                               top_k=top_k, replace_with=replace_with,
                                               scale=scale)
                records.append(_clean({"qid": qid, "doc_id": doc_id, **asdict(metrics),
                                       "method": name, "seconds": seconds,
                                       "relative_gap": result.relative_gap,
                                       "truncated": result.truncated,
                                       "token_scores": [round(v, 7) for v in result.scores]}))
            return FaithfulnessPair(manifest, records)
        return run

    keys = {f"pair-{i:05d}": pair for i, pair in enumerate(pairs)}
    jobs = {key: job(i, *pair) for i, (key, pair) in enumerate(keys.items())}
    if store is None:
        done = {k: jobs[k]() for k in tqdm(jobs, desc="faithfulness", unit="pair",
                                            disable=not progress)}
    else:
        done = resume(store, jobs, FaithfulnessPair, progress=progress, desc="faithfulness",
                      executor=executor)
    records = [r for key in jobs for r in done[key].records]
    table = FaithfulnessTable(manifest, config, records)
    if store is not None:
        table.save(store.folder / "table")
    return table


def _fill(ids: list[str], dataset: Dataset, n: int, seed: int) -> list[str]:
    """BM25 hits, topped up to ``n`` with random corpus documents (seeded)."""
    if len(ids) >= n:
        return ids
    rng = random.Random(seed)
    pool = [d for d in rng.sample(dataset.doc_ids, min(len(dataset.doc_ids), 4 * n))
            if d not in set(ids)]
    return ids + pool[:n - len(ids)]
