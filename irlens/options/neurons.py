"""Options of ``irlens neurons``, ``prune`` and ``report``."""

from __future__ import annotations

from pathlib import Path

from irlens.options.common import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    MAX_LENGTH,
    MAX_QUERIES,
    MEMORY_BUDGET,
    MIN_RELEVANCE,
    MODEL,
    OUT,
    RAY,
    SEED,
    SPLIT,
    WORKERS,
)
from irlens.options.core import (
    Option,
    Table,
    at_least,
    below,
    comma_list,
    library,
    one_of,
)

__all__ = ["NEURONS", "PRUNE", "REPORT"]


def _nig_rule(rule: str) -> None:
    from irlens.neurons.nig import check_nig_options

    check_nig_options(rule=rule)


def _baseline(baseline: str) -> None:
    from irlens.neurons.nig import check_nig_options

    check_nig_options(baseline=baseline)


def _metrics(text: str) -> None:
    from irlens.evaluation import parse_metrics

    parse_metrics(text)


def _layer_p(value: float) -> str | None:
    return None if value == 0 else below(100, fix="pass a percentage such as 1, or 0 to "
                                         "skip per-layer pruning")(value)


def _positions(value: str) -> str | None:
    from irlens.models import Segment

    return one_of("all", *Segment.NAMES)(value)


SCORE = Option("score", "str", "relevant", "relevant, contrast or nonrelevant.",
               one_of("irlens.neurons.selection:SCORES"))


NEURONS = Table("neurons", [
    MODEL.but(help="'default', a model folder (e.g. a cross-encoder from `irlens train`) or a HF "
                   "id."),
    DATA.but(help="In-domain BEIR folder."),
    Option("ood", "list", None,
           "Other (out-of-domain) BEIR folders; repeat the option.", DATA.check,
           flags=("--ood",)),
    OUT.but(default=Path("results/neurons"),
            help="Output folder; a rerun with the same options resumes it."),
    SPLIT.but(help="Qrels split to sample triplets from."),
    Option("triplets", "int", 100,
           "(query, relevant, BM25 negative) triplets sampled.", at_least(1)),
    SEED.but(help="Sampling seed."),
    MIN_RELEVANCE.but(default=None,
                      help="Grade that counts as relevant [default: 2 on a 0-3 scale (TREC DL), "
                           "else 1]."),
    Option("keep", "str", "ordered",
           "ordered (relevant above negative), classified (cross-encoders: p>0.5 and p<0.5, the "
           "paper's) or all.", one_of("irlens.neurons.study:KEEP")),
    Option("shard_size", "int", 10, "Triplets per saved shard.", at_least(1)),
    MAX_LENGTH.but(help="Token limit of attributed inputs."),
    Option("steps", "int", 21,
           "Points on each path (gradient evaluations).",
           at_least(2, "NIG needs 2 or more points on its path")),
    Option("ffn", "str", "post",
           "FFN units after (post) or before (pre) activation.", one_of("post", "pre")),
    Option("attention", "bool", True, "Also attribute attention heads."),
    Option("output", "str", None,
           "prob or logit (cross-encoders); similarity (bi).",
           one_of("prob", "logit", "similarity")),
    Option("target", "str", None,
           "Segments that move: both, query, doc [default: both for cross-encoders, doc for "
           "bi-encoders].", one_of("both", "query", "doc")),
    Option("baseline", "str", "pad", "pad, mask, zero or text:<words>.", library(_baseline)),
    Option("rule", "str", "riemann_right",
           "riemann_right (paper), riemann_left (Captum) or riemann_trapezoid.",
           library(_nig_rule)),
    Option("p", "float", 1.0,
           "Top p% of units for selections and overlaps.",
           below(100, fix="pass a percentage such as 1")),
    Option("kind", "str", "ffn", "Units to select: ffn or attn (heads).", one_of("ffn", "attn")),
    SCORE,
    Option("segment", "str", "all", "Aggregate to select on: all or a segment."),
    DEVICE.but(help="Where the model runs."),
    MEMORY_BUDGET.but(help="Activation memory per NIG chunk."),
    RAY,
    WORKERS,
])


PRUNE = Table("prune", [
    Option("neurons", "path", ...,
           "The folder `irlens neurons --out` wrote (its in-domain study is used), or one study "
           "in it, e.g. OUT/msmarco-dl19 or OUT/fusion.", flags=("--neurons", "-n")),
    Option("which", "str", None,
           "Which study of a `irlens neurons` folder to use [default: the in-domain one].",
           flags=("--which",)),
    DATA.but(help="BEIR folder(s) to evaluate on; repeat the option.", kind="list"),
    MODEL.but(default=None, help="The model [default: the one the neuron file was made with]."),
    OUT.but(default=None, help="Output folder [default: NEURONS/pruning]; a rerun resumes it."),
    Option("p", "str", "0.1,0.5,1,2,5", "Percentages of units to prune.",
           comma_list(below(100), float, "0.1,1,5"), flags=("--p",)),
    Option("seeds", "int", 5, "Random-unit controls per p.",
           at_least(1, "pass 1 or more random-unit controls")),
    Option("layer_p", "float", 1.0,
           "Per-layer pruning: top p% of each layer alone (0 to skip).", _layer_p),
    Option("kind", "str", "ffn", "ffn units or attn heads.", one_of("ffn", "attn")),
    SCORE,
    Option("segment", "str", "all", "Aggregate the units are ranked by."),
    Option("scope", "str", "global",
           "Top p% over all layers, or of each layer.", one_of("irlens.neurons.selection:SCOPES")),
    Option("positions", "str", "all",
           "Where to ablate: all, query, doc, cls, sep, end.", _positions),
    Option("how", "str", "zero", "zero or mean ablation.", one_of("irlens.neurons.pruning:HOWS")),
    Option("random_match", "str", "global",
           "Random units drawn globally, or as many per layer as the selection.",
           one_of("global", "layer"), flags=("--random",)),
    Option("metrics", "str", "nDCG@10,RR@10", "ir_measures names.", library(_metrics)),
    SPLIT.but(help="Qrels split to evaluate on."),
    Option("depth", "int", 100, "BM25 candidates (cross-encoders; bi-encoder pools).", at_least(1)),
    Option("pool", "str", "auto",
           "Bi-encoders: full corpus search, judged+bm25 (each query's judged docs plus BM25 top "
           "--depth), bm25 (BM25 top --depth only, as a cross-encoder reranks) or auto (full up "
           "to 20,000 docs, else judged+bm25).", one_of("irlens.neurons.pruning:POOLS")),
    MAX_LENGTH.but(help="Cap documents at N tokens (cheaper)."),
    MAX_QUERIES.but(help="Evaluate on the first N judged queries."),
    Option("held_out", "bool", False, "Leave out the queries of the neuron study's triplets "
           "(the units were chosen on them).", flags=("--held-out",)),
    BATCH_SIZE.but(default=128, help="Texts per forward pass (as large as fits)."),
    DEVICE.but(help="Where the model runs."),
    RAY,
    WORKERS,
])


REPORT = Table("report", [
    Option("pruning", "list", ...,
           "Output folders of `irlens prune` (their pruning-* runs) or single pruning-* folders; "
           "repeat the option.", flags=("--pruning", "-p")),
    Option("neurons", "path", None,
           "The `irlens neurons` output folder to show beside them.", flags=("--neurons", "-n")),
    OUT.but(help="Folder for report.html, the plots and summary.json."),
])
