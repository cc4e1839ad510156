"""Section ``prune``: retrieval with the top relevance neurons zeroed, against random ones.

Vast et al., ICTIR 2024. Adapter over :func:`irlens.neurons.select`,
:func:`irlens.neurons.random_like` and :func:`irlens.neurons.prune` (the model is
restored on exit): one job per evaluation (intact model, top ``p``% units, each random
seed). Documents are ranked among BM25's top ``depth`` (``pool: bm25``, the candidates a
cross-encoder reranks) or, for bi-encoders, by a full search (``pool: full``). The
control is ``seeds`` random selections of the same size.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport, figure_png, mean_ci
from irlens.study.sections.neurons import _max_length, scores_table

__all__ = ["PruneSection"]


class PruneSection(Section):
    name = "prune"
    title = "Pruning relevance neurons"
    needs = ("neurons",)
    fields = {
        "p": Field("list[float]", [1.0], "percentages of units pruned", minimum=0.0),
        "seeds": Field("int", 3, "random-unit controls per p", minimum=1),
        "kind": Field("str", "ffn", "units: ffn or attn (heads)", choices=("ffn", "attn")),
        "score": Field("str", "relevant", "ranking of units",
                       choices=("relevant", "contrast", "nonrelevant")),
        "pool": Field("str", "bm25", "candidates ranked: bm25 (top depth) or full (search, "
                      "bi-encoders)", choices=("bm25", "full")),
        "depth": Field("int", 100, "BM25 candidates per query", minimum=1),
        "metrics": Field("list[str]", ["nDCG@10", "RR@10"], "ir_measures names"),
        "max_queries": Field("int", None, "evaluate on the first N queries", minimum=1,
                             optional=True),
        "max_length": Field("int", None, "cap documents at N tokens", minimum=8,
                            optional=True),
    }

    def check(self, params):
        for i, p in enumerate(params["p"]):
            if not 0 < p <= 100:
                return [(("p", i), f"p is a percentage in (0, 100], got {p}")]
        return []

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        from irlens.errors import IrlensError
        from irlens.neurons import random_like, select

        scores_job = next((j for j in ctx.planned.get(("neurons", dataset), [])
                           if j.part == "scores"), None)
        if scores_job is None:
            raise ctx.spec.error(("sections", "prune", "datasets"), f"section 'prune' on "
                                 f"'{dataset}' needs the neurons section on '{dataset}'; add "
                                 "it to sections.neurons.datasets")
        n_queries = len(ctx.dataset(dataset).queries) if params["max_queries"] is None \
            else params["max_queries"]
        base = {**ctx.data_inputs(dataset), "batch_size": ctx.spec.batch_size,
                **{k: params[k] for k in ("pool", "depth", "metrics", "max_queries",
                                          "max_length")}}
        work = n_queries * params["depth"]
        jobs = [make_job(self.name, dataset, "intact", base, work=work)]
        table = scores_table(ctx.result(scores_job.key))
        for p in params["p"]:
            try:
                top = select(table, p, kind=params["kind"], score=params["score"])
            except IrlensError as err:
                raise ctx.spec.error(("sections", "prune", "p"), str(err)) from None
            sel = {**base, "neurons": scores_job.key, "p": p, "kind": params["kind"],
                   "score": params["score"]}
            jobs.append(make_job(self.name, dataset, f"top{p:g}", sel, work=work,
                                 payload={"selection": dataclasses.asdict(top)}))
            for seed in range(params["seeds"]):
                rnd = random_like(table, top, seed)
                jobs.append(make_job(self.name, dataset, f"random{p:g}-s{seed}",
                                     {**sel, "seed": seed}, work=work,
                                     payload={"selection": dataclasses.asdict(rnd)}))
        yield jobs

    def estimate(self, ctx, dataset, params, planned):
        n = 1 + len(params["p"]) * (1 + params["seeds"])
        queries = params["max_queries"] or len(ctx.dataset(dataset).queries)
        return n, n * queries * params["depth"]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.evaluation import evaluate
        from irlens.neurons import Selection, prune

        start = time.perf_counter()
        params = ctx.spec.sections[self.name]
        data = ctx.dataset(job.dataset)
        if params["max_queries"] is not None:
            data = data.subset(max_queries=params["max_queries"])
        selection = job.payload.get("selection")
        model = ctx.model
        with _max_length(model, params["max_length"]):
            if selection is None:
                run = self._rank(ctx, data, params)
            else:
                with prune(model, Selection(**selection)):
                    run = self._rank(ctx, data, params)
        result = evaluate(run, data.qrels, params["metrics"])
        n_units = 0 if selection is None else sum(map(len, selection["units"].values()))
        return self.result(ctx, job, seconds=time.perf_counter() - start,
                           values={"aggregate": result.aggregate, "metrics": result.metrics,
                                   "n_units": n_units},
                           rows=[{"qid": q, **v} for q, v in result.per_query.items()])

    def _rank(self, ctx: Context, data, params) -> dict[str, dict[str, float]]:
        from irlens.models import CrossEncoder
        from irlens.retrieval import bm25_search, dense_search, rerank

        if params["pool"] == "full" and not isinstance(ctx.model, CrossEncoder):
            with tempfile.TemporaryDirectory(prefix="irlens-prune-") as cache:
                return dense_search(ctx.model, data, k=100, batch_size=ctx.spec.batch_size,
                                    cache_dir=cache, progress=False)
        memo = ("bm25", data.fingerprint, tuple(data.queries), params["depth"])
        if memo not in ctx.cache:
            ctx.cache[memo] = bm25_search(data, k=params["depth"], progress=False)
        return rerank(ctx.model, data, ctx.cache[memo], depth=params["depth"],
                      batch_size=ctx.spec.batch_size, progress=False)

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        metric = params["metrics"][0]
        rows, parts, bars = [], [], []
        for dataset, found in results.items():
            by_part = {r.part: r for r in found}
            intact = by_part["intact"].values["aggregate"]
            for p in params["p"]:
                top = by_part[f"top{p:g}"]
                randoms = [by_part[f"random{p:g}-s{s}"] for s in range(params["seeds"])]
                row = {"dataset": dataset, "p": p, "units": top.values["n_units"]}
                for m in params["metrics"]:
                    row[f"{m} intact"] = intact[m]
                    row[f"{m} top-p"] = top.values["aggregate"][m]
                    row[f"{m} random"] = mean_ci([r.values["aggregate"][m] for r in randoms])
                rows.append(row)
                rnd = row[f"{metric} random"]
                parts.append(f"on {dataset}, pruning the top {p:g}% ({row['units']} units) "
                             f"moves {metric} from {intact[metric]:.3f} to "
                             f"{row[f'{metric} top-p']:.3f}, random units of the same size "
                             f"to {rnd['mean']:.3f}")
                bars.append((f"{dataset}\n{p:g}%", intact[metric], row[f"{metric} top-p"],
                             rnd))
        fig = Figure(figsize=(2 + 1.6 * len(bars), 3))
        ax = fig.subplots()
        x = np.arange(len(bars))
        ax.bar(x - 0.27, [b[1] for b in bars], 0.27, label="intact")
        ax.bar(x, [b[2] for b in bars], 0.27, label="top-p pruned")
        ax.bar(x + 0.27, [b[3]["mean"] for b in bars], 0.27, label="random pruned",
               yerr=[[b[3]["mean"] - b[3]["lo"] for b in bars],
                     [b[3]["hi"] - b[3]["mean"] for b in bars]], capsize=3)
        ax.set_xticks(x, [b[0] for b in bars])
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
        cols = ["dataset", "p", "units"] + [f"{m} {w}" for m in params["metrics"]
                                            for w in ("intact", "top-p", "random")]
        finding = "; ".join(parts)
        return SectionReport(
            self.title, finding[0].upper() + finding[1:] + ".", cols, rows,
            f"{params['seeds']} random selections of as many units (95% CI over seeds).",
            [(f"{metric} intact, with the top units pruned, and with random units pruned",
              figure_png(fig))])
