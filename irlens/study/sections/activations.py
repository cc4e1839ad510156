"""Section ``activations``: how many FFN units carry relevance, per layer and side?

Adapter over :mod:`irlens.activations` (knowledge-neuron attribution, Dai et al.,
"Knowledge Neurons in Pretrained Transformers", ACL 2022): relevant (query, document)
examples are drawn once (:func:`irlens.activations.examples_for`); one job per side and
shard of examples attributes them (:func:`irlens.activations.study.attribute_examples`,
the shard job of :func:`irlens.activations.run_activations`) and counts the active units
per layer (:func:`irlens.activations.study.count_rows`). One model has no trained-vs-base
control (``irlens activations`` compares two); the report shows how concentrated each
layer's counts are (participation ratio, Gini) beside them. Bi-encoders only. The options
passed to the analysis are mapped in :func:`activation_config` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from irlens.report import figure_png
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport

__all__ = ["ActivationsSection", "activation_config"]


class ActivationsSection(Section):
    name = "activations"
    title = "Knowledge-neuron activation counts"
    needs_bi_encoder = True
    fields = {
        "examples": Field("int", 20, "relevant (query, document) examples", minimum=2),
        "sides": Field("list[str]", ["query", "doc"], "towers attributed",
                       choices=("query", "doc")),
        "n_steps": Field("int", 20, "path steps", minimum=1),
        "threshold": Field("float", 0.1, "active: attribution above this share of the "
                           "example's largest, in (0, 1)", minimum=0.0),
        "max_length": Field("int", 128, "token limit", minimum=8, optional=True),
    }

    def check(self, params):
        from irlens.errors import IrlensError

        try:
            activation_config(0, params).check()
        except IrlensError as err:
            return [((), str(err))]
        return []

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        from irlens.activations import examples_for

        config = activation_config(ctx.spec.seed, params)
        pairs = examples_for(ctx.dataset(dataset), config.n_examples, config.seed,
                             config.min_relevance)
        inputs = {**ctx.data_inputs(dataset), "seed": ctx.spec.seed,
                  **{k: v for k, v in params.items() if k != "datasets"}}
        yield [make_job(self.name, dataset, side, {**inputs, "side": side, "pairs": pairs},
                        work=2 * (config.n_steps + 1) * len(pairs), payload={"pairs": pairs})
               for side in params["sides"]]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.activations.study import attribute_examples, count_rows

        start = time.perf_counter()
        config = activation_config(ctx.spec.seed, ctx.spec.sections[self.name])
        pairs = [tuple(p) for p in job.payload["pairs"]]
        data, model = ctx.dataset(job.dataset), ctx.model
        saved = model.max_length
        try:
            if config.max_length is not None:
                model.max_length = min(saved, config.max_length)
            shards = [attribute_examples(model, data, pairs[i:i + config.shard_size],
                                         job.part, config)
                      for i in range(0, len(pairs), config.shard_size)]
        finally:
            model.max_length = saved
        rows = count_rows(model.model_id, job.part, shards, config)
        return self.result(ctx, job, rows=rows, seconds=time.perf_counter() - start)

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        rows, parts = [], []
        fig = Figure(figsize=(4.5, 3))
        ax = fig.subplots()
        for dataset, found in results.items():
            for res in sorted(found, key=lambda r: r.part):
                for r in res.rows:
                    rows.append({"dataset": dataset, "side": r["side"],
                                 "sublayer": r["sublayer"], "layer": r["layer"],
                                 "active per example": {"mean": r["active_per_example"],
                                                        "lo": r["ci_low"], "hi": r["ci_high"]},
                                 "units": r["units"], "participation ratio":
                                 r["participation_ratio"], "gini": r["gini"]})
                keys = [r for r in res.rows if r["sublayer"] == "keys"] or res.rows
                ax.plot([r["layer"] for r in keys], [r["active_per_example"] for r in keys],
                        marker="o", label=f"{dataset} {res.part}")
                top = max(keys, key=lambda r: r["active_per_example"])
                parts.append(f"on {dataset} ({res.part} side), layer {top['layer']} activates "
                             f"the most FFN units per example ({top['active_per_example']:.1f} "
                             f"of {top['units']})")
        ax.set_xlabel("layer")
        ax.set_ylabel("active FFN units per example")
        ax.legend(fontsize=7)
        finding = "; ".join(parts)
        return SectionReport(
            self.title, finding[0].upper() + finding[1:] + ".",
            ["dataset", "side", "sublayer", "layer", "active per example", "units",
             "participation ratio", "gini"], rows,
            "None within one model (irlens activations compares a base and a trained "
            "model); participation ratio and Gini of the per-unit counts show how "
            "concentrated each layer is.",
            [("Active FFN units (keys) per example and layer", figure_png(fig, dpi=90))])


def activation_config(seed: int, params: dict[str, Any]):
    """The :class:`irlens.activations.ActivationConfig` of this section's parameters."""
    from irlens.activations import ActivationConfig

    return ActivationConfig(n_examples=params["examples"], seed=seed,
                            sides=tuple(params["sides"]), n_steps=params["n_steps"],
                            threshold=params["threshold"], max_length=params["max_length"])
