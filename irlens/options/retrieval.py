"""Options of ``irlens evaluate``, ``hooks``, ``train bi-encoder`` and ``train cross-encoder``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irlens.options.common import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    DTYPE,
    JSON,
    MAX_DOCS,
    MAX_LENGTH,
    MAX_QUERIES,
    MODEL,
    OUT,
    RAY,
    SEED,
    SPLIT,
    WORKERS,
    check_model,
)
from irlens.options.core import (
    Option,
    Table,
    at_least,
    library,
    one_of,
    positive,
)

__all__ = ["EVALUATE", "HOOKS", "TRAIN_BI", "TRAIN_CROSS"]


def _retriever(name: str) -> None:
    if name != "bm25":
        check_model(name)


def _metrics(text: str) -> None:
    from irlens.evaluation import parse_metrics

    parse_metrics(text)


def _same_split(values: dict[str, Any]) -> str | None:
    if values.get("eval_split") == values.get("split"):
        return (f"--eval-split {values['split']} is the training split too: training and "
                "evaluating on the same queries measures nothing; pass another --eval-split "
                "(e.g. test) or --eval-split none")
    return None


EPOCHS = Option("epochs", "int", 1, "Training epochs.", at_least(1))


LR = Option("lr", "float", 2e-05, "Learning rate (10%% linear warm-up).", positive())


SAVE_STEPS = Option("save_steps", "int", 50, "Checkpoint every N steps.", at_least(1),
                    results=False)


EVALUATE = Table("evaluate", [
    MODEL.but(default=...,
              help="The retriever: 'bm25' (lexical baseline), 'default' (all-MiniLM-L6-v2, "
                   "offline), a local model folder or a Hugging Face id. Bi-encoders search the "
                   "whole corpus; cross-encoders rerank BM25's top --k.",
              check=library(_retriever)),
    DATA.but(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or an "
                  "ir_datasets id such as beir/scifact/test.", kind="str", check=None),
    SPLIT.but(help="Which qrels/<split>.tsv to evaluate on."),
    Option("rerank_from", "str", None,
           "Rerank a first stage's top --k instead of searching the corpus: 'bm25' or a TREC run "
           "file.", flags=("--rerank-from",)),
    Option("metrics", "str", "nDCG@10,RR@10,R@100,AP",
           "Comma-separated ir_measures names. For graded qrels (TREC DL) the usual binary cut is"
           " rel=2, e.g. nDCG@10,RR(rel=2)@10,AP(rel=2).", library(_metrics)),
    Option("k", "int", 100, "Documents retrieved (or reranked) per query.", at_least(1)),
    BATCH_SIZE.but(help="Texts per model forward pass."),
    DEVICE.but(help="Where the model runs."),
    DTYPE.but(help="Model weights' precision."),
    MAX_DOCS.but(help="Quick runs: keep every judged document plus distractors up to N."),
    MAX_QUERIES.but(help="Quick runs: keep the first N judged queries."),
    Option("cache_dir", "path", None,
           "Where corpus embeddings are cached [default: $IRLENS_CACHE_DIR or ~/.cache/irlens].",
           results=False),
    Option("output", "path", None, "Also write the JSON here.", results=False,
           flags=("--output", "-o")),
    OUT.but(default=None,
            help="Save the evaluation here (a folder: manifest.json with the config and "
                 "fingerprints, table.parquet with each query's values).", flags=("--out",)),
    Option("strict", "bool", False,
           "Fail when the qrels judge documents missing from the corpus (by default: one warning "
           "with their count).", results=False, flags=("--strict",)),
    Option("run_file", "path", None, "Write the ranking here (TREC run format).", results=False),
    Option("per_query", "bool", False, "Include each query's metric values.", results=False),
    JSON.but(help="Print the metrics as JSON on stdout (evaluate always does; accepted like "
                  "elsewhere)."),
    RAY,
    WORKERS,
])


HOOKS = Table("hooks", [
    MODEL.but(help="'default', a model folder or a HF id.", argument=True, flags=()),
    Option("side", "str", None,
           "For two-encoder (DPR) models: query or doc.", one_of("query", "doc")),
    JSON.but(name="as_json", help="Print JSON instead of a table."),
])


TRAIN_BI = Table("train bi-encoder", [
    Option("base", "str", "default",
           "'default', a sentence-transformers folder, a plain encoder (CLS pooling, dot product:"
           " DPR) or a two-tower folder from this command.", library(check_model),
           flags=("--base", "-b")),
    DATA.but(help="BEIR folder with a --split qrels."),
    OUT.but(help="Model folder to write (a rerun with the same options resumes from its "
                 "checkpoints)."),
    Option("two_towers", "bool", None,
           "DPR's separate query and document towers, or one shared tower [default: as the base "
           "has].", flags=("--two-towers/--shared",)),
    SPLIT.but(default="train", help="Qrels split to train on."),
    Option("pooling", "str", None,
           "cls or mean [default: the base's; cls for plain encoders].", one_of("cls", "mean")),
    Option("hard_negatives", "int", 1,
           "BM25 hard negatives per query (never judged relevant).", at_least(0)),
    Option("bm25_depth", "int", 100, "BM25 candidates the negatives come from.", at_least(1)),
    MAX_QUERIES.but(help="Train on at most N queries."),
    EPOCHS,
    BATCH_SIZE.but(default=32,
                   help="Queries per step (in-batch negatives).",
                   check=at_least(2, "in-batch negatives need 2 or more queries per step"),
                   results=True),
    Option("mini_batch_size", "int", None,
           "Cached MNRL (GradCache): forward this many at a time, for big batches in small "
           "memory.", at_least(1)),
    LR,
    Option("max_seq_length", "int", 128,
           "Token limit while training (evaluation uses the base's).", at_least(8)),
    Option("eval_split", "str", "test",
           "Held-out split evaluated before and after ('none' to skip)."),
    Option("eval_max_queries", "int", None, "Evaluate on the first N queries only.", at_least(1)),
    Option("eval_max_docs", "int", None,
           "Evaluate on their judged documents plus distractors up to N documents.", at_least(1)),
    Option("eval_max_length", "int", None,
           "Document token limit when evaluating [default: the base's].", at_least(8)),
    SEED.but(help="Seed for data and training."),
    SAVE_STEPS,
    DEVICE.but(help="Where training runs."),
], rules=[_same_split])


TRAIN_CROSS = Table("train cross-encoder", [
    DATA.but(help="BEIR folder(s) (their --split qrels, BM25 negatives) or MS MARCO triples TSV "
                  "files.", kind="list"),
    OUT.but(default=Path("results/cross-encoder"), help="Where the model folder goes."),
    SPLIT.but(default="train", help="Qrels split of BEIR folders to train on."),
    Option("base", "str", "default", "Weights to start from.", library(check_model)),
    Option("negatives", "int", 3, "Negatives per query.", at_least(1)),
    MAX_QUERIES.but(help="Use at most N queries per source."),
    Option("teacher_negatives", "int", 0,
           "Negatives the --teacher ranks highest among the training data's own passages.",
           at_least(0)),
    Option("bm25_negatives", "int", 0,
           "BM25's top negatives among the training data's own passages.", at_least(0)),
    Option("random_negatives", "int", 0,
           "Random negatives among the training data's own passages.", at_least(0)),
    Option("teacher", "str", None,
           "Bi-encoder to distil from (e.g. 'default'); without it: binary cross-entropy.",
           library(check_model)),
    Option("teacher_scale", "float", 10.0,
           "Teacher similarities are multiplied by this (listwise: an inverse temperature).",
           positive()),
    Option("distillation", "str", "listwise",
           "With --teacher: 'listwise' (ListNet on the teacher's softmax) or 'margin-mse'.",
           one_of("listwise", "margin-mse")),
    EPOCHS,
    BATCH_SIZE.but(default=16, help="Groups (BCE: pairs) per step.", results=True),
    LR,
    MAX_LENGTH.but(default=256, help="Token limit of a (query, document) pair.", check=at_least(8)),
    SEED.but(help="Seed for data and training."),
    SAVE_STEPS,
    Option("keep_epochs", "bool", False, "Also write the model after each epoch to OUT.epochN.",
           results=False, flags=("--keep-epochs",)),
    Option("eval_data", "path", None,
           "BEIR folder to rerank on [default: the first --data folder that has --eval-split]."),
    Option("eval_split", "str", "test", "Split to evaluate on."),
    Option("eval_depth", "int", 100, "BM25 candidates reranked.", at_least(1)),
    Option("eval_queries", "int", None, "Evaluate on the first N queries only.", at_least(1)),
    DEVICE.but(help="Where training runs."),
])
