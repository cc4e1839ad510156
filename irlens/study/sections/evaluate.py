"""Section ``evaluate``: retrieval quality of the model against BM25, with ir_measures.

Bi-encoders: the corpus is encoded in chunks (one job each, longest documents first as
in :func:`irlens.retrieval.encode_corpus`), then every query is scored against all
documents (exact search). Cross-encoders rerank BM25's top ``k`` (one job). The control
is BM25 (:func:`irlens.retrieval.bm25_search`, Anserini's flat BEIR settings).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from irlens.report import figure_png, mean_ci
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport

__all__ = ["EvaluateSection"]


class EvaluateSection(Section):
    name = "evaluate"
    title = "Retrieval quality"
    fields = {
        "metrics": Field("list[str]", ["nDCG@10", "RR@10", "R@100"], "ir_measures names"),
        "k": Field("int", 100, "documents retrieved per query", minimum=1),
        "chunk_size": Field("int", 512, "documents per encoding job", minimum=1),
    }

    def check(self, params):
        from irlens.errors import IrlensError
        from irlens.evaluation import parse_metrics

        try:
            parse_metrics(params["metrics"])
        except IrlensError as err:
            return [(("metrics",), str(err))]
        return []

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        from irlens.models import CrossEncoder

        data = ctx.dataset(dataset)
        base = {**ctx.data_inputs(dataset), "batch_size": ctx.spec.batch_size,
                "max_length": ctx.model.max_length}
        scored = {"metrics": params["metrics"], "k": params["k"]}
        bm25 = make_job(self.name, dataset, "bm25", {"data": base["data"], **scored,
                        "max_queries": base["max_queries"], "split": base["split"]},
                        local=True, work=0)
        if isinstance(ctx.model, CrossEncoder):
            yield [bm25, make_job(self.name, dataset, "rerank", {**base, **scored},
                                  work=len(data.queries) * params["k"])]
            return
        texts = data.doc_texts()
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
        ids = data.doc_ids
        chunks = []
        for n, start in enumerate(range(0, len(order), params["chunk_size"])):
            part = [ids[i] for i in order[start:start + params["chunk_size"]]]
            digest = hashlib.sha1("\x1f".join(part).encode()).hexdigest()
            chunks.append(make_job(self.name, dataset, f"chunk{n:04d}",
                                   {**base, "docs": digest}, work=len(part),
                                   payload={"ids": part}))
        yield [bm25, *chunks]
        keys = [c.key for c in chunks]
        yield [make_job(self.name, dataset, "search", {**base, **scored, "chunks": keys},
                        local=True, work=len(data.queries), payload={"chunks": keys})]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.retrieval import bm25_search, search

        start = time.perf_counter()
        data = ctx.dataset(job.dataset)
        params = ctx.spec.sections[self.name]
        if job.part.startswith("chunk"):
            texts = data.doc_texts(job.payload["ids"])
            with torch.no_grad():
                vectors = ctx.model.encode_docs(texts, batch_size=ctx.spec.batch_size)
            return self.result(ctx, job, vectors=vectors.float().numpy(),
                               values={"ids": job.payload["ids"]},
                               seconds=time.perf_counter() - start)
        if job.part == "bm25":
            run = bm25_search(data, k=params["k"], progress=False)
        elif job.part == "rerank":
            run = search(ctx.model, data, k=params["k"], batch_size=ctx.spec.batch_size,
                         progress=False)
        else:
            run = self._dense(ctx, data, job, params["k"])
        return self._scored(ctx, job, run, params["metrics"], time.perf_counter() - start)

    def _dense(self, ctx: Context, data, job: Job, k: int) -> dict[str, dict[str, float]]:
        parts = [ctx.result(key) for key in job.payload["chunks"]]
        ids = [d for part in parts for d in part.values["ids"]]
        docs = torch.from_numpy(np.concatenate([p.vectors for p in parts]))
        with torch.no_grad():
            queries = ctx.model.encode_queries(data.query_texts(),
                                               batch_size=ctx.spec.batch_size)
            scores = ctx.model.similarity(queries, docs)
        top = torch.topk(scores, min(k, len(ids)), dim=1)
        return {qid: {ids[j]: float(s) for j, s in zip(top.indices[i].tolist(),
                                                        top.values[i].tolist(), strict=True)}
                for i, qid in enumerate(data.query_ids)}

    def _scored(self, ctx, job, run, metrics, seconds) -> StudyResult:
        from irlens.evaluation import evaluate

        result = evaluate(run, ctx.dataset(job.dataset).qrels, metrics)
        rows = [{"qid": qid, **values} for qid, values in result.per_query.items()]
        return self.result(ctx, job, values={"aggregate": result.aggregate,
                                             "metrics": result.metrics,
                                             "provider": result.provider},
                           rows=rows, seconds=seconds)

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        metrics = results[next(iter(results))][0].values["metrics"] if results else []
        rows, summary = [], []
        for dataset, found in results.items():
            by_part = {r.part: r for r in found}
            model = by_part.get("search") or by_part.get("rerank")
            for label, res in (("model", model), ("BM25 (control)", by_part["bm25"])):
                cells = {m: mean_ci([r[m] for r in res.rows]) for m in metrics}
                rows.append({"dataset": dataset, "system": label, **cells})
            first = metrics[0]
            summary.append((dataset, rows[-2][first], rows[-1][first]))
        fig = Figure(figsize=(1.6 + 1.4 * len(summary), 3))
        ax = fig.subplots()
        x = np.arange(len(summary))
        for shift, idx, label in ((-0.2, 1, "model"), (0.2, 2, "BM25")):
            means = [s[idx]["mean"] for s in summary]
            err = [[s[idx]["mean"] - s[idx]["lo"] for s in summary],
                   [s[idx]["hi"] - s[idx]["mean"] for s in summary]]
            ax.bar(x + shift, means, 0.4, yerr=err, capsize=3, label=label)
        ax.set_xticks(x, [s[0] for s in summary])
        ax.set_ylabel(f"{metrics[0]} (95% CI)")
        ax.legend()
        parts = [f"{m['mean']:.3f} on {d} (BM25: {b['mean']:.3f})" for d, m, b in summary]
        finding = (f"Model {ctx.spec.model} reaches {metrics[0]} " + "; ".join(parts)
                   + "; 95% CIs over queries are in the table.")
        return SectionReport(self.title, finding, ["dataset", "system", *metrics], rows,
                             "BM25 (Lucene, k1=0.9, b=0.4) on the same queries and corpus.",
                             [(f"{metrics[0]} per dataset, model vs BM25",
                               figure_png(fig, dpi=90))])
