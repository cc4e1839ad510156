"""Section ``neurons``: relevance neurons by Neuron Integrated Gradients.

Vast et al., "Which Neurons Matter in IR?", ICTIR 2024. Adapter over the jobs of
:func:`irlens.neurons.run_study` (:mod:`irlens.neurons.study`): the triplets job
(:func:`~irlens.neurons.study.triplet_table`: sample, score, keep, shard), one job per
shard of kept triplets (:func:`~irlens.neurons.study.attribute_shard`: NIG of the relevant
and the non-relevant pair) and a last (driver) job averaging them into the scores table
(:func:`~irlens.neurons.study.scores_frame`). The control is the non-relevant pairs.
The options passed to the neuron study are mapped in :func:`study_config` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from irlens.report import figure_png, mean_ci
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport

__all__ = ["NeuronsSection", "scores_table"]

NIG_FIELDS = ("n_steps", "ffn", "attention", "baseline", "rule")


class NeuronsSection(Section):
    name = "neurons"
    title = "Relevance neurons (NIG)"
    fields = {
        "triplets": Field("int", 30, "(query, relevant, BM25 negative) triplets", minimum=1),
        "shard_size": Field("int", 5, "triplets per job", minimum=1),
        "n_steps": Field("int", 21, "points on the NIG path (21 = 20 intervals)", minimum=2),
        "keep": Field("str", "ordered", "triplets kept: ordered (relevant scored higher), "
                      "classified (cross-encoders: p > 0.5 > p') or all",
                      choices=("ordered", "classified", "all")),
        "ffn": Field("str", "post", "FFN activation hooked", choices=("post", "pre")),
        "attention": Field("bool", True, "also attribute attention heads"),
        "baseline": Field("str", "pad", "path start token", choices=("pad", "mask", "zero")),
        "rule": Field("str", "right", "quadrature rule", choices=("right", "left", "trapezoid")),
        "bm25_depth": Field("int", 100, "BM25 pool of negatives", minimum=1),
        "max_length": Field("int", 256, "token limit of attributed inputs", minimum=8,
                            optional=True),
    }

    def cross_encoder_field(self, params):
        return "keep" if params["keep"] == "classified" else None

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        base = {**ctx.data_inputs(dataset), "seed": ctx.spec.seed,
                **{k: params[k] for k in ("triplets", "keep", "bm25_depth", "max_length")}}
        triplets = make_job(self.name, dataset, "triplets", base, work=2 * params["triplets"])
        yield [triplets]
        kept = [r for r in ctx.result(triplets.key).rows if r["kept"]]
        if not kept:
            from irlens.errors import IrlensError

            raise IrlensError(f"no triplet of {dataset} is kept (keep: {params['keep']}): the "
                              "model gets none right; use keep: all or more triplets")
        nig = {**base, **{k: params[k] for k in NIG_FIELDS}, "triplets_job": triplets.key}
        size = params["shard_size"]
        shards = [make_job(self.name, dataset, f"shard{n:04d}",
                           {**nig, "rows": [(r["qid"], r["pos_id"], r["neg_id"])
                                            for r in kept[start:start + size]]},
                           work=2 * params["n_steps"] * len(kept[start:start + size]),
                           payload={"rows": kept[start:start + size]})
                  for n, start in enumerate(range(0, len(kept), size))]
        yield shards
        yield [make_job(self.name, dataset, "scores", {"shards": [s.key for s in shards]},
                        local=True, work=0, payload={"shards": [s.key for s in shards]})]

    def estimate(self, ctx, dataset, params, planned):
        if any(j.part.startswith("shard") for j in planned):
            return 1, 0.0  # the scores job
        shards = -(-params["triplets"] // params["shard_size"])
        return shards + 1, 2 * params["n_steps"] * params["triplets"]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.errors import IrlensError
        from irlens.neurons.study import attribute_shard, triplet_table

        start = time.perf_counter()
        config = study_config(ctx, ctx.spec.sections[self.name])
        if job.part == "triplets":
            table = triplet_table(ctx.model, ctx.manifest(job), config,
                                  ctx.dataset(job.dataset))
            return self.result(ctx, job, rows=table.rows, seconds=time.perf_counter() - start)
        if job.part == "scores":
            return self._scores(ctx, job, start)
        if not job.payload["rows"]:
            raise IrlensError("empty NIG shard; rerun the study")
        shard = attribute_shard(ctx.model, config.engine(ctx.model), config,
                                pd.DataFrame(job.payload["rows"]), ctx.manifest(job))
        return self.result(ctx, job, seconds=time.perf_counter() - start,
                           values={"hooks": shard.hook_names, "parameters": shard.parameters,
                                   "n_pairs": len(job.payload["rows"])},
                           ffn_relevant=shard.relevant_ffn, ffn_nonrelevant=shard.nonrelevant_ffn,
                           attn_relevant=shard.relevant_attn,
                           attn_nonrelevant=shard.nonrelevant_attn)

    def _scores(self, ctx: Context, job: Job, start: float) -> StudyResult:
        shards = [ctx.result(k) for k in job.payload["shards"]]
        out: dict[str, Any] = {}
        rows = []
        for label in ("relevant", "nonrelevant"):
            ffn = np.concatenate([getattr(s, f"ffn_{label}") for s in shards])
            out[f"ffn_{label}"] = ffn.mean(0)  # means over pairs, as the neuron study's
            if shards[0].attn_relevant is not None:
                out[f"attn_{label}"] = np.concatenate([getattr(s, f"attn_{label}")
                                                       for s in shards]).mean(0)
            per_layer = ffn.sum(axis=(2, 3))  # [P, L]
            for pair, layers in enumerate(per_layer):
                rows += [{"label": label, "pair": pair, "layer": layer, "ffn_sum": float(v)}
                         for layer, v in enumerate(layers)]
        values = {"hooks": shards[0].values["hooks"],
                  "ffn": shards[0].values["parameters"]["ffn"],
                  "n_pairs": int(sum(s.values["n_pairs"] for s in shards))}
        return self.result(ctx, job, rows=rows, values=values,
                           seconds=time.perf_counter() - start, **out)

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        rows, parts = [], []
        fig = Figure(figsize=(4.5, 3))
        ax = fig.subplots()
        for dataset, found in results.items():
            scores = next(r for r in found if r.part == "scores")
            triplets = next(r for r in found if r.part == "triplets")
            frame = pd.DataFrame(scores.rows)
            wide = frame.pivot_table(index=["pair", "layer"], columns="label",
                                     values="ffn_sum").reset_index()
            layer_rows = []
            for layer, group in wide.groupby("layer"):
                layer_rows.append({"dataset": dataset, "layer": int(layer),
                                   "relevant": mean_ci(group["relevant"]),
                                   "nonrelevant": mean_ci(group["nonrelevant"]),
                                   "contrast": mean_ci(group["relevant"]
                                                       - group["nonrelevant"])})
            rows += layer_rows
            top = max(layer_rows, key=lambda r: r["contrast"]["mean"])
            kept = sum(r["kept"] for r in triplets.rows)
            parts.append(f"on {dataset} ({kept} of {len(triplets.rows)} triplets kept), "
                         f"layer {top['layer']}'s FFN units separate relevant from "
                         f"non-relevant pairs most (contrast {top['contrast']['mean']:.3g})")
            ax.plot([r["layer"] for r in layer_rows],
                    [r["relevant"]["mean"] for r in layer_rows], marker="o",
                    label=f"{dataset} relevant")
            ax.plot([r["layer"] for r in layer_rows],
                    [r["nonrelevant"]["mean"] for r in layer_rows], marker="x", ls="--",
                    label=f"{dataset} non-relevant")
        ax.set_xlabel("layer")
        ax.set_ylabel("FFN attribution per pair")
        ax.legend(fontsize=7)
        finding = "; ".join(parts)
        return SectionReport(
            self.title, finding[0].upper() + finding[1:] + ".",
            ["dataset", "layer", "relevant", "nonrelevant", "contrast"], rows,
            "The non-relevant (BM25 negative) pair of each triplet, attributed the same way; "
            "contrast = relevant - non-relevant, paired per triplet.",
            [("Summed FFN attribution per layer (mean over pairs)", figure_png(fig, dpi=90))])


def study_config(ctx: Context, params: dict[str, Any]):
    """The :class:`irlens.neurons.StudyConfig` of this section's parameters (the one place
    that maps the study's option names to the neuron study's)."""
    from irlens.neurons import StudyConfig

    return StudyConfig(
        n_triplets=params["triplets"], seed=ctx.spec.seed, keep=params["keep"],
        shard_size=params["shard_size"], bm25_depth=params["bm25_depth"],
        max_length=params["max_length"], n_steps=params["n_steps"], ffn=params["ffn"],
        attention=params["attention"], baseline=params["baseline"], rule=params["rule"])


def scores_table(result: StudyResult) -> pd.DataFrame:
    """The neuron study's scores table (:func:`irlens.neurons.study.scores_frame`) of a
    ``scores`` result (mean attributions over pairs)."""
    from irlens.neurons.study import scores_frame

    def one(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a)[None]  # a single "pair": the mean

    return scores_frame(one(result.ffn_relevant), one(result.ffn_nonrelevant),
                        result.values["ffn"], one(result.attn_relevant),
                        one(result.attn_nonrelevant))
