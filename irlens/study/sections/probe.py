"""Section ``probe``: is relevance linearly decodable from each layer of the model?

Adapter over :func:`irlens.probing.build_items` and :func:`irlens.probing.probe_model`
(layer-wise linear probes, Alain and Bengio, "Understanding intermediate layers using
linear classifier probes", 2016; control tasks with shuffled labels, Hewitt and Liang,
"Designing and Interpreting Probes with Control Tasks", EMNLP 2019): one job per dataset
probes the study's model at every layer. The control is the same probe trained on
control labels; selectivity = accuracy - control. Bi-encoders only. The options passed
to the probes are mapped in :func:`probe_config` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from irlens.report import figure_png
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport

__all__ = ["ProbeSection", "probe_config"]


class ProbeSection(Section):
    name = "probe"
    title = "Layer-wise relevance probes"
    needs_bi_encoder = True
    fields = {
        "queries": Field("int", 100, "judged queries probed", minimum=5),
        "n_candidates": Field("int", 5, "documents per query (1 relevant + BM25 negatives)",
                              minimum=2),
        "folds": Field("int", 5, "cross-validation folds (split by query)", minimum=2),
        "poolings": Field("list[str]", ["mean"], "token poolings", choices=("cls", "mean")),
        "tasks": Field("list[str]", ["pairwise", "listwise"], "probe tasks",
                       choices=("listwise", "pairwise")),
        "max_length": Field("int", 256, "token limit", minimum=8, optional=True),
    }

    def check(self, params):
        from irlens.errors import IrlensError

        try:
            probe_config(0, 32, params).check()
        except IrlensError as err:
            return [((), str(err))]
        return []

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        inputs = {**ctx.data_inputs(dataset), "seed": ctx.spec.seed,
                  **{k: v for k, v in params.items() if k != "datasets"}}
        yield [make_job(self.name, dataset, "probes", inputs,
                        work=params["queries"] * (params["n_candidates"] + 1))]

    def estimate(self, ctx, dataset, params, planned):
        return 0, 0.0

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.probing import build_items, probe_model

        start = time.perf_counter()
        params = ctx.spec.sections[self.name]
        config = probe_config(ctx.spec.seed, ctx.spec.batch_size, params)
        data = ctx.dataset(job.dataset)
        items = build_items(data, config.n_candidates, max_queries=config.max_queries,
                            seed=config.seed, depth=config.depth,
                            min_relevance=config.min_relevance, folds=config.folds)
        model = ctx.model
        saved = model.max_length
        try:
            if config.max_length is not None:
                model.max_length = min(saved, config.max_length)
            result = probe_model(model, items, data, config)
        finally:
            model.max_length = saved
        rows = result.summary_frame().to_dict("records")
        return self.result(ctx, job, rows=rows, seconds=time.perf_counter() - start,
                           values={"n_queries": result.n_queries})

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        rows, parts = [], []
        fig = Figure(figsize=(4.5, 3))
        ax = fig.subplots()
        for dataset, found in results.items():
            [res] = found
            for r in res.rows:
                rows.append({"dataset": dataset, "layer": r["layer"], "pooling": r["pooling"],
                             "task": r["task"],
                             "accuracy": {"mean": r["accuracy"], "lo": r["ci_low"],
                                          "hi": r["ci_high"]},
                             "control": r["control"], "selectivity": r["selectivity"],
                             "chance": r["chance"]})
            best = max(res.rows, key=lambda r: r["selectivity"])
            parts.append(f"on {dataset} ({res.values['n_queries']} queries), the "
                         f"{best['task']} probe is most selective at layer {best['layer']} "
                         f"(accuracy {best['accuracy']:.3f}, control {best['control']:.3f})")
            for task in params["tasks"]:
                for pooling in params["poolings"]:
                    mine = [r for r in res.rows if r["task"] == task and r["pooling"] == pooling]
                    ax.plot([r["layer"] for r in mine], [r["accuracy"] for r in mine],
                            marker="o", label=f"{dataset} {task} {pooling}")
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("probe accuracy")
        ax.legend(fontsize=7)
        finding = "; ".join(parts)
        return SectionReport(
            self.title, finding[0].upper() + finding[1:] + ".",
            ["dataset", "layer", "pooling", "task", "accuracy", "control", "selectivity",
             "chance"], rows,
            "The same probe trained on control labels (shuffled within each query); "
            "selectivity = accuracy - control.",
            [("Probe accuracy per layer (95% CI over folds in the table)",
              figure_png(fig, dpi=90))])


def probe_config(seed: int, batch_size: int, params: dict[str, Any]):
    """The :class:`irlens.probing.ProbeConfig` of this section's parameters."""
    from irlens.probing import ProbeConfig

    return ProbeConfig(n_candidates=params["n_candidates"], folds=params["folds"],
                       max_queries=params["queries"], seed=seed,
                       poolings=tuple(params["poolings"]), tasks=tuple(params["tasks"]),
                       max_length=params["max_length"], batch_size=batch_size)
