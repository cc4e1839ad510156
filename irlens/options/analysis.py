"""Options of ``irlens patch``, ``edit``, ``activations``, ``probe`` and ``study``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irlens.options.common import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    JSON,
    MAX_DOCS,
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
    model_layers,
    one_of,
    positive,
)

__all__ = ["ACTIVATIONS", "EDIT", "PATCH", "PROBE", "STUDY"]

MODEL_HELP = ("A bi-encoder: 'default', a model folder, a HF id, or DOC+QUERY for a two-tower "
              "(DPR) pair. Give it twice: base, then trained.")


def _edit_layer(values: dict[str, Any]) -> str | None:
    """--layer within the model's layers, read from its config (no weights load)."""
    layer = values.get("layer")
    n = None if layer is None else model_layers(values["model"])
    if n is not None and layer >= n:
        return (f"--layer {layer} is out of range: {values['model']} has {n} layers "
                f"(layers 0-{n - 1}); pass one of them, or leave --layer out")
    return None


def _distinct_models(values: dict[str, Any]) -> str | None:
    models = list(values.get("model") or [])
    twice = next((m for i, m in enumerate(models) if m in models[:i]), None)
    if twice is not None:
        return (f"--model {twice} is given twice; compare two different models (base, then "
                "trained), each once")
    return None


PATCH = Table("patch", [
    MODEL.but(help="'default', a model folder or a Hugging Face id."),
    DATA.but(help="A BEIR folder.", kind="str"),
    Option("axiom", "str", "tfc1", "tfc1, tdc, lnc1 or removal.",
           one_of("irlens.patching.axioms:AXIOMS")),
    Option("pairs", "int", 100, "Relevant pairs to sample (skips are counted).", at_least(1)),
    OUT.but(help="Output folder (resumable)."),
    SPLIT.but(help="Which qrels split to sample from."),
    MIN_RELEVANCE.but(help="Grade a sampled document needs (DL19: 2)."),
    Option("max_doc_words", "int", 60, "Cut documents to N words first (0: no cut).",
           at_least(0)),
    Option("min_delta", "float", 0.001,
           "Skip pairs whose clean and corrupted scores differ by less.", at_least(0)),
    Option("ablate_top", "int", 0,
           "Ablate the top K components and measure rankings against random ones (0: no).",
           at_least(0), flags=("--ablate-top",)),
    Option("ablate_pairs", "int", 50, "Held-out pairs for --ablate-top, from queries not among "
           "the --pairs (fewer when they run out).", at_least(1)),
    Option("resid", "str", "positions",
           "Residual patching: each 'positions' or each token 'roles' at once (cheaper).",
           one_of("positions", "roles")),
    SEED.but(help="Sampling seed."),
    JSON.but(help="Print the summary as JSON."),
])


EDIT = Table("edit", [
    MODEL.but(help="A bi-encoder: 'default', a folder or a Hugging Face id."),
    DATA.but(help="A BEIR folder.", kind="str"),
    Option("editor", "str", "rome",
           "rome (rank-one FFN edit), kn (knowledge neurons) or ft (fine-tuning baseline).",
           one_of("irlens.editing.editors:EDITORS")),
    Option("kind", "str", "insert",
           "insert a document into a query's top 10, or remove one from it.",
           one_of("irlens.editing.requests:KINDS")),
    Option("n", "int", 50,
           "Edit requests, drawn from the split's queries.", at_least(1), flags=("--n",)),
    Option("layer", "int", None,
           "The FFN layer edited. Unset: rome edits the last layer, ft trains every weight, kn "
           "looks at every layer.", at_least(0, "pass a layer index from 0")),
    Option("steps", "int", 60, "Optimisation steps per edit at most.", at_least(1)),
    SEED.but(help="Seed of the insert targets and paraphrases."),
    SPLIT.but(help="Which qrels/<split>.tsv the requests use."),
    MAX_LENGTH.but(help="Cut texts to this many tokens (faster)."),
    DEVICE.but(help="Where the model and the edits run: auto, cpu or cuda."),
    MAX_DOCS.but(help="Quick runs: keep every judged document plus distractors up to N (the "
                      "corpus is re-encoded per edit)."),
    MAX_QUERIES.but(help="Quick runs: the first N judged queries."),
    OUT.but(help="Output folder (resumable)."),
    Option("save", "path", None,
           "Also write the model with every request edited (one after another) to this folder.",
           results=False, flags=("--save",)),
    Option("then_train", "bool", False,
           "Reichman & Heck's pipeline: save the edited model, retrieval-train it and an unedited"
           " control on --train-split, and report which edits survive.", flags=("--then-train",)),
    Option("train_split", "str", "train", "With --then-train: the training split."),
    Option("train_max_queries", "int", None,
           "With --then-train: cap the training queries (quick runs).", at_least(1)),
    JSON.but(help="Print the summary as JSON."),
], rules=[_edit_layer])


ACTIVATIONS = Table("activations", [
    MODEL.but(default=..., kind="list", help=MODEL_HELP),
    DATA.but(help="BEIR folder."),
    OUT.but(help="Output folder; a rerun with the same options resumes it."),
    SPLIT.but(help="Qrels split."),
    Option("examples", "int", 100, "(query, relevant passage) pairs, one per query.", at_least(2)),
    Option("steps", "int", 20, "Points on the scaling path (Dai et al.: 20).", at_least(1)),
    Option("rule", "str", "riemann_right",
           "riemann_right (Dai et al.) or gausslegendre.",
           one_of("riemann_right", "gausslegendre")),
    Option("keys", "str", "post",
           "FFN intermediate after (post) or before (pre) the activation.", one_of("post", "pre")),
    Option("sublayers", "str", "keys,values", "keys and/or values.",
           comma_list(one_of("keys", "values"), example="keys,values")),
    Option("sides", "str", "query,doc", "Towers: query and/or doc.",
           comma_list(one_of("query", "doc"), example="query,doc")),
    Option("target", "str", "relevance",
           "relevance (similarity with the relevant partner) or norm (L2 norm of the embedding).",
           one_of("relevance", "norm")),
    Option("threshold", "float", 0.1,
           "Active: attribution > threshold x the example's largest.",
           below(1, -1e-12, "pass a share of the largest attribution such as 0.1")),
    MIN_RELEVANCE.but(help="Grade that counts as relevant."),
    SEED.but(help="Sampling seed."),
    MAX_LENGTH.but(default=128, help="Token limit of queries and passages."),
    Option("shard_size", "int", 20, "Examples per saved (resumable) job.", at_least(1)),
    MEMORY_BUDGET.but(default="2GB", help="Activation memory per forward+backward chunk."),
    DEVICE.but(default="cpu", help="cpu, cuda or auto."),
    JSON.but(help="Print the counts table as JSON."),
], rules=[_distinct_models])


PROBE = Table("probe", [
    MODEL.but(default=..., kind="list", help=MODEL_HELP),
    DATA.but(help="BEIR folder."),
    OUT.but(help="Output folder; a rerun with the same options resumes it."),
    SPLIT.but(help="Qrels split."),
    Option("candidates", "int", 5,
           "N: one relevant passage and N-1 BM25 hard negatives (2-5 in the paper).",
           at_least(2, "one relevant passage and at least one negative"),
           flags=("--candidates", "-n")),
    Option("queries", "int", 200, "Queries probed (0 = all).",
           at_least(0, "pass 0 for every query")),
    Option("folds", "int", 5, "Grouped cross-validation folds.", at_least(2)),
    Option("depth", "int", 100, "BM25 depth the hard negatives come from.", at_least(1)),
    MIN_RELEVANCE.but(help="Grade that counts as relevant."),
    Option("pooling", "str", "cls,mean", "Poolings: cls and/or mean.",
           comma_list(one_of("cls", "mean"), example="cls,mean")),
    Option("task", "str", "listwise,pairwise",
           "Tasks: listwise (pick the relevant one of N) and/or pairwise (relevant or not).",
           comma_list(one_of("listwise", "pairwise"), example="listwise,pairwise")),
    Option("listwise", "str", "concat",
           "Listwise probe: concat (one multinomial layer over [q; p1..pN], the reproduction's) "
           "or shared (one scorer over [p, q*p] for every candidate).", one_of("concat", "shared")),
    Option("c", "float", 1.0,
           "Inverse L2 strength of the logistic regressions.",
           positive("pass an inverse regularisation strength such as 1.0")),
    SEED.but(help="Sampling and control-label seed."),
    MAX_LENGTH.but(default=256, help="Token limit of queries and passages."),
    BATCH_SIZE.but(default=32, help="Texts per forward pass."),
    DEVICE.but(default="cpu", help="cpu, cuda or auto."),
    JSON.but(help="Print the summary table as JSON."),
], rules=[_distinct_models])


STUDY = Table("study", [
    Option("config", "path", Path("study.yaml"), "The study config (YAML).", argument=True),
    OUT.but(default=None, help="Output folder (default: results/CONFIG-NAME); a rerun resumes it."),
    Option("init", "bool", False,
           "Write a commented example config to CONFIG and stop.", results=False,
           flags=("--init",)),
    Option("dry_run", "bool", False,
           "Print the plan (jobs, done, work left) and stop.", results=False, flags=("--dry-run",)),
    RAY,
    WORKERS,
    JSON.but(help="Print the result as JSON."),
])
