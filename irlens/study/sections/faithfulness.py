"""Section ``faithfulness``: do the top-attributed tokens drive the score?

Adapter over :func:`irlens.attribution.faithfulness_study` (comprehensiveness and
sufficiency, DeYoung et al., ACL 2020; log-odds, Shrikumar et al., 2017): relevant pairs
are sampled once (seeded) and split into groups of ``group_size``, one job per group.
The control is the ``random`` attribution (always added).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from irlens.report import figure_png, mean_ci
from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult, make_job
from irlens.study.sections import Section, SectionReport

__all__ = ["FaithfulnessSection"]

SHOWN = ("comprehensiveness", "sufficiency", "log_odds")


class FaithfulnessSection(Section):
    name = "faithfulness"
    title = "Faithfulness of token attributions"
    fields = {
        "pairs": Field("int", 20, "relevant (query, document) pairs", minimum=1),
        "methods": Field("list[str]", ["ig-mask", "sig-mask", "gxi"], "attribution methods "
                         "(random is added as the control)"),
        "n_steps": Field("int", 10, "path steps of IG/SIG", minimum=1),
        "target": Field("str", "doc", "tokens explained", choices=("query", "doc", "both")),
        "top_k": Field("float", 0.2, "share of tokens removed", minimum=0.0),
        "n_candidates": Field("int", 50, "BM25 candidates for ranks", minimum=1),
        "max_doc_tokens": Field("int", 128, "cut documents to N word pieces", minimum=1,
                                optional=True),
        "group_size": Field("int", 4, "pairs per job", minimum=1),
    }

    def check(self, params):
        from irlens.attribution.study import check_study_options
        from irlens.errors import IrlensError

        options = study_options(None, params, params["pairs"])
        options.pop("seed")
        options.pop("max_doc_tokens")
        try:
            check_study_options(rule="gausslegendre", **options)
        except IrlensError as err:
            bad = next((("methods", i) for i, m in enumerate(params["methods"])
                        if f"'{m}'" in str(err) or f"'{m.partition('-')[0]}'" in str(err)),
                       ("top_k",) if "top_k" in str(err) else ())
            return [(bad, str(err))]
        return []

    @staticmethod
    def methods(params: dict[str, Any]) -> list[str]:
        return [*params["methods"], *([] if "random" in params["methods"] else ["random"])]

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]) -> Iterator[list[Job]]:
        from irlens.data import sample_pairs

        pairs = sample_pairs(ctx.dataset(dataset), params["pairs"], seed=ctx.spec.seed)
        base = {**ctx.data_inputs(dataset), "seed": ctx.spec.seed,
                **{k: v for k, v in params.items() if k not in ("datasets", "pairs")},
                "methods": self.methods(params)}
        steps = params["n_steps"] * len(self.methods(params))
        size = params["group_size"]
        yield [make_job(self.name, dataset, f"group{n:04d}",
                        {**base, "pairs": pairs[start:start + size]},
                        work=steps * len(pairs[start:start + size]),
                        payload={"pairs": pairs[start:start + size]})
               for n, start in enumerate(range(0, len(pairs), size))]

    def run(self, ctx: Context, job: Job) -> StudyResult:
        from irlens.attribution import faithfulness_study
        from irlens.data import Dataset

        start = time.perf_counter()
        params = ctx.spec.sections[self.name]
        data = ctx.dataset(job.dataset)
        pairs = [tuple(p) for p in job.payload["pairs"]]
        qrels: dict[str, dict[str, int]] = {}
        for qid, doc_id in pairs:
            qrels.setdefault(qid, {})[doc_id] = data.qrels[qid][doc_id]
        sub = Dataset(data.name, data.corpus, {q: data.queries[q] for q in qrels}, qrels,
                      data.split)
        table = faithfulness_study(ctx.model, sub, **study_options(ctx, params, len(pairs)))
        return self.result(ctx, job, rows=table.records, seconds=time.perf_counter() - start)

    def report(self, ctx, params, results) -> SectionReport:
        from matplotlib.figure import Figure

        methods = self.methods(params)
        rows, best = [], []
        for dataset, found in results.items():
            records = [r for res in found for r in res.rows]
            stats = {}
            for method in methods:
                mine = [r for r in records if r["method"] == method]
                stats[method] = {m: mean_ci([_num(r[m]) for r in mine]) for m in SHOWN}
                rows.append({"dataset": dataset, "method": method, "pairs": len(mine),
                             **stats[method]})
            top = max(params["methods"] or methods,
                      key=lambda m: stats[m]["comprehensiveness"]["mean"])
            best.append((dataset, top, stats[top]["comprehensiveness"],
                         stats["random"]["comprehensiveness"]))
        fig = Figure(figsize=(2 + 0.9 * len(methods) * len(results), 3))
        ax = fig.subplots()
        width = 0.8 / max(1, len(results))
        for d, dataset in enumerate(results):
            cells = [r for r in rows if r["dataset"] == dataset]
            means = [c["comprehensiveness"]["mean"] for c in cells]
            err = [[c["comprehensiveness"]["mean"] - c["comprehensiveness"]["lo"]
                    for c in cells],
                   [c["comprehensiveness"]["hi"] - c["comprehensiveness"]["mean"]
                    for c in cells]]
            ax.bar(np.arange(len(methods)) + d * width, means, width, yerr=err, capsize=3,
                   label=dataset)
        ax.set_xticks(np.arange(len(methods)) + width * (len(results) - 1) / 2, methods)
        ax.set_ylabel("comprehensiveness (95% CI)")
        ax.legend()
        finding = "; ".join(f"on {d}, {m} is the most comprehensive method "
                            f"({c['mean']:.3f}, random {r['mean']:.3f})" for d, m, c, r in best)
        return SectionReport(
            self.title, finding[0].upper() + finding[1:] + ".",
            ["dataset", "method", "pairs", *SHOWN], rows,
            "Random token scores (method 'random'): a method is faithful where it beats it "
            "(comprehensiveness higher, sufficiency and log-odds lower).",
            [("Comprehensiveness (probability drop when the top tokens are deleted)",
              figure_png(fig, dpi=90))])


def study_options(ctx: Context | None, params: dict[str, Any], n_pairs: int) -> dict[str, Any]:
    """Keyword arguments of :func:`irlens.attribution.faithfulness_study` for one group of
    ``n_pairs`` pairs (the one place that maps this section's options to its names)."""
    return {"n_pairs": n_pairs, "methods": FaithfulnessSection.methods(params),
            "n_steps": params["n_steps"], "target": params["target"],
            "max_doc_tokens": params["max_doc_tokens"], "top_k": params["top_k"],
            "n_candidates": params["n_candidates"],
            "seed": None if ctx is None else ctx.spec.seed}


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)
