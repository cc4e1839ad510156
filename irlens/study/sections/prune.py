"""Section ``prune``: retrieval with the top relevance neurons zeroed, against random ones.

Vast et al., ICTIR 2024. Adapter over the evaluations of
:func:`irlens.neurons.evaluate_pruning`: its selections
(:func:`~irlens.neurons.pruning.pruning_jobs`: intact, top ``p``% units, ``seeds`` random
selections of the same size) become one job each, run by
:func:`~irlens.neurons.pruning.evaluate_selection` (the model is restored on exit) on the
candidates of :func:`~irlens.neurons.pruning.candidate_pool` (``pool`` as in
:class:`irlens.neurons.PruningConfig`). The control is the random selections. The options
passed to pruning are mapped in :func:`pruning_config` only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from irlens.report import figure_png, mean_ci
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport
from irlens.study.sections.neurons import scores_table

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
        "pool": Field("str", "bm25", "candidates ranked: bm25 (BM25 top depth), full (search, "
                      "bi-encoders), judged+bm25 or auto",
                      choices=("bm25", "full", "judged+bm25", "auto")),
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
        from irlens.neurons.pruning import pruning_jobs

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
        try:
            selections = pruning_jobs(table, pruning_config(ctx, params))
        except IrlensError as err:
            raise ctx.spec.error(("sections", "prune", "p"), str(err)) from None
        for key, sel in selections[1:]:  # key: experiment|layer|p|selection|seed
            _, _, p, which, seed = key.split("|")
            inputs = {**base, "neurons": scores_job.key, "p": float(p), "kind": params["kind"],
                      "score": params["score"]}
            part = f"top{float(p):g}" if which == "relevance" else f"random{float(p):g}-s{seed}"
            if which == "random":
                inputs["seed"] = int(seed)
            jobs.append(make_job(self.name, dataset, part, inputs, work=work,
                                 payload={"selection": dataclasses.asdict(sel)}))
        yield jobs

    def estimate(self, ctx, dataset, params, planned):
        n = 1 + len(params["p"]) * (1 + params["seeds"])
        queries = params["max_queries"] or len(ctx.dataset(dataset).queries)
        return n, n * queries * params["depth"]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.neurons import Selection
        from irlens.neurons.pruning import candidate_pool, evaluate_selection

        start = time.perf_counter()
        params = ctx.spec.sections[self.name]
        config = pruning_config(ctx, params)
        data = ctx.dataset(job.dataset)
        if params["max_queries"] is not None:
            data = data.subset(max_queries=params["max_queries"])
        memo = ("candidates", data.fingerprint, tuple(data.queries), params["pool"],
                params["depth"])
        if memo not in ctx.cache:  # one pool per process, shared by its evaluations
            ctx.cache[memo] = candidate_pool(ctx.model, data, config)
        selection = job.payload.get("selection")
        selection = None if selection is None else Selection(**selection)
        aggregate = evaluate_selection(ctx.model, data, ctx.cache[memo], selection, config)
        return self.result(ctx, job, seconds=time.perf_counter() - start,
                           values={"aggregate": aggregate, "metrics": list(params["metrics"]),
                                   "n_units": 0 if selection is None else selection.n})

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
              figure_png(fig, dpi=90))])


def pruning_config(ctx: Context, params: dict[str, Any]):
    """The :class:`irlens.neurons.PruningConfig` of this section's parameters (the one
    place that maps the study's option names to pruning's)."""
    from irlens.neurons import PruningConfig

    return PruningConfig(ps=tuple(params["p"]), seeds=params["seeds"], kind=params["kind"],
                         score=params["score"], layer_p=None, metrics=tuple(params["metrics"]),
                         depth=params["depth"], pool=params["pool"],
                         max_length=params["max_length"], batch_size=ctx.spec.batch_size)
