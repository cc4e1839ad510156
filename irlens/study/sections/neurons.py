"""Section ``neurons``: relevance neurons by Neuron Integrated Gradients.

Vast et al., "Which Neurons Matter in IR?", ICTIR 2024. Adapter over
:class:`irlens.neurons.NeuronIntegratedGradients`: one job samples (query, relevant,
BM25 negative) triplets (:func:`irlens.data.sample_triplets`) and keeps those the model
orders right; one job per shard of ``shard_size`` kept triplets attributes the relevant
and the non-relevant pair; a last (driver) job averages them into a scores table in the
layout of :mod:`irlens.neurons.selection`. The control is the non-relevant pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport, figure_png, mean_ci

__all__ = ["NeuronsSection", "scores_table"]

NIG_FIELDS = ("n_steps", "ffn", "attention", "baseline", "rule")


class NeuronsSection(Section):
    name = "neurons"
    title = "Relevance neurons (NIG)"
    fields = {
        "triplets": Field("int", 30, "(query, relevant, BM25 negative) triplets", minimum=1),
        "shard_size": Field("int", 5, "triplets per job", minimum=1),
        "n_steps": Field("int", 20, "NIG path steps", minimum=1),
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
                           work=2 * (params["n_steps"] + 1) * len(kept[start:start + size]),
                           payload={"rows": kept[start:start + size]})
                  for n, start in enumerate(range(0, len(kept), size))]
        yield shards
        yield [make_job(self.name, dataset, "scores", {"shards": [s.key for s in shards]},
                        local=True, work=0, payload={"shards": [s.key for s in shards]})]

    def estimate(self, ctx, dataset, params, planned):
        if any(j.part.startswith("shard") for j in planned):
            return 1, 0.0  # the scores job
        shards = -(-params["triplets"] // params["shard_size"])
        return shards + 1, 2 * (params["n_steps"] + 1) * params["triplets"]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        start = time.perf_counter()
        params = ctx.spec.sections[self.name]
        if job.part == "triplets":
            rows = self._triplets(ctx, job.dataset, params)
            return self.result(ctx, job, rows=rows, seconds=time.perf_counter() - start)
        if job.part == "scores":
            return self._scores(ctx, job, start)
        from irlens.errors import IrlensError
        from irlens.neurons import NeuronIntegratedGradients

        if not job.payload["rows"]:
            raise IrlensError("empty NIG shard; rerun the study")
        engine = NeuronIntegratedGradients(ctx.model, n_steps=params["n_steps"],
                                           ffn=params["ffn"], attention=params["attention"],
                                           baseline=params["baseline"], rule=params["rule"])
        queries = [r["query"] for r in job.payload["rows"]]
        out: dict[str, Any] = {}
        with _max_length(ctx.model, params["max_length"]):
            for label, col in (("relevant", "pos_text"), ("nonrelevant", "neg_text")):
                res = engine.attribute(queries, [r[col] for r in job.payload["rows"]])
                out[f"ffn_{label}"] = res.ffn
                out[f"attn_{label}"] = res.attn
                out[f"{label}_delta"] = res.delta.tolist()
        return self.result(ctx, job, seconds=time.perf_counter() - start,
                           values={"hooks": res.hook_names, "parameters": res.parameters,
                                   "relevant_delta": out.pop("relevant_delta"),
                                   "nonrelevant_delta": out.pop("nonrelevant_delta")},
                           **out)

    def _triplets(self, ctx: Context, dataset: str, params) -> list[dict[str, Any]]:
        from dataclasses import asdict

        from irlens.data import sample_triplets
        from irlens.models import CrossEncoder

        data = ctx.dataset(dataset)
        top = max((g for judged in data.qrels.values() for g in judged.values()), default=1)
        triplets = sample_triplets(data, params["triplets"], negatives="bm25",
                                   seed=ctx.spec.seed, min_relevance=2 if top >= 3 else 1,
                                   bm25_depth=params["bm25_depth"])
        rows = [asdict(t) for t in triplets]
        model = ctx.model
        queries = [r["query"] for r in rows]
        with _max_length(model, params["max_length"]), torch.no_grad():
            scores = []
            for col in ("pos_text", "neg_text"):
                docs = [r[col] for r in rows]
                if isinstance(model, CrossEncoder):
                    scores.append(model.predict(queries, docs, output="prob").tolist())
                else:
                    scores.append(model.pair_similarity(model.encode_queries(queries),
                                                        model.encode_docs(docs)).tolist())
        for row, pos, neg in zip(rows, *scores, strict=True):
            row["pos_score"], row["neg_score"] = float(pos), float(neg)
            row["kept"] = {"ordered": pos > neg, "classified": pos > 0.5 > neg,
                           "all": True}[params["keep"]]
        return rows

    def _scores(self, ctx: Context, job: Job, start: float) -> StudyResult:
        shards = [ctx.result(k) for k in job.payload["shards"]]
        out: dict[str, Any] = {}
        rows = []
        for label in ("relevant", "nonrelevant"):
            ffn = np.concatenate([s.__dict__[f"ffn_{label}"] for s in shards])
            out[f"ffn_{label}"] = ffn.mean(0)
            if shards[0].__dict__[f"attn_{label}"] is not None:
                out[f"attn_{label}"] = np.concatenate(
                    [s.__dict__[f"attn_{label}"] for s in shards]).mean(0)
            per_layer = ffn.sum(axis=(2, 3))  # [P, L]
            for pair, layers in enumerate(per_layer):
                rows += [{"label": label, "pair": pair, "layer": layer, "ffn_sum": float(v)}
                         for layer, v in enumerate(layers)]
        values = {"hooks": shards[0].values["hooks"], "ffn": shards[0].values["parameters"]
                  ["ffn"], "n_pairs": int(sum(len(s.values["relevant_delta"]) for s in shards))}
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
            [("Summed FFN attribution per layer (mean over pairs)", figure_png(fig))])


def scores_table(result: StudyResult) -> pd.DataFrame:
    """The neurons' scores table (the :mod:`irlens.neurons.selection` layout: hook, kind,
    layer, unit, segment, relevant, nonrelevant, contrast) from a ``scores`` result."""
    from irlens.neurons import SEGMENTS

    frames = []
    rel, non = result.ffn_relevant, result.ffn_nonrelevant  # [L, 5, I]
    rel = np.concatenate([rel.sum(1, keepdims=True), rel], 1)
    non = np.concatenate([non.sum(1, keepdims=True), non], 1)
    li, si, ui = np.meshgrid(*(np.arange(n) for n in rel.shape), indexing="ij")
    segments = np.array(["all", *SEGMENTS])
    ffn = result.values["ffn"]
    frames.append(pd.DataFrame({
        "hook": [f"layer.{i}.ffn.{ffn}" for i in li.ravel()], "kind": "ffn",
        "layer": li.ravel(), "unit": ui.ravel(), "segment": segments[si.ravel()],
        "relevant": rel.ravel(), "nonrelevant": non.ravel(), "contrast": (rel - non).ravel()}))
    if result.attn_relevant is not None:
        r = result.attn_relevant.sum(axis=(2, 3))  # [L, A]
        n = result.attn_nonrelevant.sum(axis=(2, 3))
        li, hi = np.meshgrid(*(np.arange(k) for k in r.shape), indexing="ij")
        frames.append(pd.DataFrame({
            "hook": [f"layer.{i}.attn.probs" for i in li.ravel()], "kind": "attn",
            "layer": li.ravel(), "unit": hi.ravel(), "segment": "all",
            "relevant": r.ravel(), "nonrelevant": n.ravel(), "contrast": (r - n).ravel()}))
    return pd.concat(frames, ignore_index=True)


class _max_length:  # noqa: N801 - a context manager used like a function
    """Set ``model.max_length`` while the block runs (restored on every exit)."""

    def __init__(self, model, limit: int | None):
        self.model, self.limit, self.saved = model, limit, model.max_length

    def __enter__(self):
        if self.limit is not None:
            self.model.max_length = min(self.limit, self.saved)

    def __exit__(self, *exc):
        self.model.max_length = self.saved
