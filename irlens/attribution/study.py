"""A faithfulness study on a retrieval collection, resumable, one table per run.

:func:`faithfulness_study` samples relevant (query, document) pairs, explains each with
several methods (IG-pad, IG-mask, SIG-mask, gradient x input, random by default), and
measures log-odds, comprehensiveness, sufficiency and rank changes
(:mod:`irlens.attribution.faithfulness`). A query's candidates are its BM25 top
``n_candidates`` documents (topped up with random ones when BM25 finds fewer), cut to
``max_doc_tokens`` like the explained document and scored by the same model. Finished
groups of pairs go to a checkpoint (JSON lines), so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from irlens._io import atomic_path, read_json
from irlens.attribution._base import CompletenessWarning
from irlens.attribution.faithfulness import measure_faithfulness
from irlens.attribution.methods import make_method
from irlens.data import Dataset, sample_pairs
from irlens.models import BiEncoder, CrossEncoder, Retriever
from irlens.paths import cut_text

__all__ = ["DEFAULT_METHODS", "METRICS", "FaithfulnessTable", "faithfulness_study",
           "method_agreement"]

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


@dataclass
class FaithfulnessTable:
    """Per-(pair, method) records of a study and its configuration."""

    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        """One row per method: mean and standard error of every metric, seconds per pair."""
        rows = []
        for method in self.config["methods"]:
            recs = [r for r in self.records if r["method"] == method]
            row: dict[str, Any] = {"method": method, "pairs": len(recs)}
            for metric in (*METRICS, "seconds", "relative_gap"):
                values = [r[metric] for r in recs
                          if r.get(metric) is not None and not math.isnan(r[metric])]
                row[metric] = _mean(values)
                if metric in METRICS:
                    row[f"{metric}_se"] = _se(values)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "better": METRICS, "summary": self.summary(),
                "records": self.records}

    def save(self, path: str | Path) -> Path:
        """Write config, summary and records as JSON, atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False,
                                      default=_no_nan) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FaithfulnessTable:
        data = read_json(path)
        return cls(data["config"], data["records"])

    def to_markdown(self) -> str:
        """The summary as a Markdown table (means +- standard errors)."""
        heads = ["method", "pairs", "log-odds", "comp", "suff", "comp(score)", "suff(score)",
                 "rank+ comp", "rank+ suff", "s/pair"]
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for row in self.summary():
            cells = [row["method"], str(row["pairs"])]
            for metric in METRICS:
                cells.append(f"{row[metric]:.3f} ± {row[metric + '_se']:.3f}"
                             if row[metric] is not None else "-")
            cells.append(f"{row['seconds']:.1f}" if row["seconds"] is not None else "-")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _se(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(var / len(values))


def _no_nan(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


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

    left, right = by_pair(a), by_pair(b)
    rhos, same_top, rel = [], [], []
    k = table.config["top_k"]
    for pair in left.keys() & right.keys():
        x, y = torch.tensor(left[pair]), torch.tensor(right[pair])
        keep = (x != 0) | (y != 0)  # the explained tokens
        x, y = x[keep], y[keep]
        rhos.append(_spearman(x, y))
        n = max(1, math.ceil(k * len(x)))
        same_top.append(float(set(x.topk(n).indices.tolist()) == set(y.topk(n).indices.tolist())))
        rel.append(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)))
    return {"pairs": len(rhos), "spearman": _mean(rhos), "same_top_k": _mean(same_top),
            "max_relative_difference": max(rel) if rel else None}


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of the ranks (average ranks for ties)."""
    import pandas as pd

    rx = torch.tensor(pd.Series(x.numpy()).rank().to_numpy())
    ry = torch.tensor(pd.Series(y.numpy()).rank().to_numpy())
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}


def faithfulness_study(model: Retriever, dataset: Dataset, n_pairs: int = 50,
                       methods: tuple[str, ...] | list[str] = DEFAULT_METHODS, *,
                       n_steps: int = 10, rule: str = "gausslegendre",
                       target: str = "doc", max_doc_tokens: int | None = 128,
                       top_k: float = 0.2, n_candidates: int = 50, scale: float = 20.0,
                       replace_with: str = "mask", seed: int = 0, min_relevance: int = 1,
                       memory_budget: str | int | None = "1GB", group_size: int = 4,
                       checkpoint: str | Path | None = None,
                       progress: bool = False) -> FaithfulnessTable:
    """Explain ``n_pairs`` relevant pairs with every method and measure faithfulness.

    ``checkpoint``: a JSON-lines file of finished records; a rerun with the same
    configuration skips the pairs it holds.
    """
    from tqdm.auto import tqdm

    from irlens.retrieval import bm25_search

    methods = list(methods)
    explainers = {name: make_method(name, model, n_steps=n_steps, rule=rule, seed=seed,
                                    target=target, max_doc_tokens=max_doc_tokens,
                                    memory_budget=memory_budget)
                  for name in methods}
    output = next(iter(explainers.values())).output
    config = {"model": model.model_id, "dataset": dataset.name, "split": dataset.split,
              "n_pairs": n_pairs, "methods": methods, "n_steps": n_steps,
              "rule": rule, "target": target, "max_doc_tokens": max_doc_tokens,
              "top_k": top_k, "n_candidates": n_candidates, "scale": scale,
              "replace_with": replace_with, "seed": seed, "min_relevance": min_relevance,
              "output": output, "candidates": "bm25", "device": str(model.device)}
    key = hashlib.sha1(json.dumps({**config, "device": None, "fp": model.fingerprint},
                                  sort_keys=True).encode()).hexdigest()[:16]
    config["key"] = key
    pairs = sample_pairs(dataset, n_pairs, seed=seed, min_relevance=min_relevance)
    records = _read_checkpoint(checkpoint, key)
    done = {(r["qid"], r["doc_id"]) for r in records}
    todo = [p for p in pairs if p not in done]

    qids = sorted({q for q, _ in todo})
    sub = Dataset(dataset.name, dataset.corpus, {q: dataset.queries[q] for q in qids},
                  {q: dataset.qrels.get(q, {}) for q in qids}, dataset.split)
    run = bm25_search(sub, k=n_candidates + 1, progress=False) if qids else {}
    cand_cache: dict[str, dict[str, float]] = {}

    groups = [todo[i:i + group_size] for i in range(0, len(todo), group_size)]
    for group in tqdm(groups, desc="faithfulness", unit="group", disable=not progress):
        queries = [dataset.queries[q] for q, _ in group]
        docs = [dataset.corpus[d].contents for _, d in group]
        new: list[dict[str, Any]] = []
        for name, explainer in explainers.items():
            start = time.perf_counter()
            with warnings.catch_warnings():  # gaps are recorded per pair instead
                warnings.simplefilter("ignore", CompletenessWarning)
                results = explainer.attribute(queries, docs)
            seconds = (time.perf_counter() - start) / len(group)
            for (qid, doc_id), result in zip(group, results, strict=True):
                if qid not in cand_cache:
                    ids = _fill(list(run.get(qid, {})), dataset, n_candidates + 1, seed)
                    texts = [cut_text(model.tokenizer, dataset.corpus[d].contents,
                                      max_doc_tokens) if max_doc_tokens else
                             dataset.corpus[d].contents for d in ids]
                    scores = _candidate_scores(model, dataset.queries[qid], texts, output)
                    cand_cache[qid] = dict(zip(ids, scores.tolist(), strict=True))
                others = torch.tensor([s for d, s in cand_cache[qid].items() if d != doc_id])
                others = others[:n_candidates]
                metrics = measure_faithfulness(model, result, others, top_k=top_k,
                                               replace_with=replace_with, scale=scale)
                new.append(_clean({"qid": qid, "doc_id": doc_id, **asdict(metrics),
                                   "method": name, "seconds": seconds,
                                   "relative_gap": result.relative_gap,
                                   "truncated": result.truncated,
                                   "token_scores": [round(v, 7) for v in result.scores]}))
        records += new
        _append_checkpoint(checkpoint, key, new)
    order = {p: i for i, p in enumerate(pairs)}
    records.sort(key=lambda r: (order.get((r["qid"], r["doc_id"]), 0),
                                methods.index(r["method"]) if r["method"] in methods else 0))
    return FaithfulnessTable(config, records)


def _fill(ids: list[str], dataset: Dataset, n: int, seed: int) -> list[str]:
    """BM25 hits, topped up to ``n`` with random corpus documents (seeded)."""
    if len(ids) >= n:
        return ids
    rng = random.Random(seed)
    pool = [d for d in rng.sample(dataset.doc_ids, min(len(dataset.doc_ids), 4 * n))
            if d not in set(ids)]
    return ids + pool[:n - len(ids)]


def _read_checkpoint(path: str | Path | None, key: str) -> list[dict[str, Any]]:
    """Records of finished groups (one JSON line each) written with the same ``key``."""
    if path is None or not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that group runs again
        if entry.get("key") == key:
            records += entry["records"]
    return records


def _append_checkpoint(path: str | Path | None, key: str, records: list[dict[str, Any]]
                       ) -> None:
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"key": key, "records": records}) + "\n")
