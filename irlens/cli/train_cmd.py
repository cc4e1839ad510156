"""``irlens train bi-encoder`` and ``irlens train cross-encoder``: thin commands over
:mod:`irlens.training`. Progress goes to stderr, the result (JSON) to stdout."""

from __future__ import annotations

import contextlib
from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors

train_app = typer.Typer(help="Train retrievers: DPR-style bi-encoders and cross-encoder "
                        "rerankers.", no_args_is_help=True)
app.add_typer(train_app, name="train")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@contextlib.contextmanager
def _quiet_loading():
    """transformers' coloured load report (a new head is expected) and its nested
    checkpoint-writing bars (cursor-moving escape codes) stay off stderr."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _summary(result) -> dict:
    return {"model_dir": result.model_dir, "n_pairs": result.n_pairs,
            "n_queries": result.n_positive, "seconds": result.seconds,
            "evaluation": result.evaluation, "parameters": result.parameters}


@train_app.command("bi-encoder")
@friendly_errors
def train_bi_encoder_command(
    base: str = typer.Option("default", "--base", "-b", help="'default', a "
                             "sentence-transformers folder, a plain encoder (CLS pooling, dot "
                             "product: DPR) or a two-tower folder from this command."),
    data: Path = typer.Option(..., "--data", "-d", help="BEIR folder with a --split qrels."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (a rerun with "
                             "the same options resumes from its checkpoints)."),
    two_towers: bool = typer.Option(None, "--two-towers/--shared", help="DPR's separate "
                                    "query and document towers, or one shared tower "
                                    "[default: as the base has]."),
    split: str = typer.Option("train", help="Qrels split to train on."),
    pooling: str = typer.Option(None, help="cls or mean [default: the base's; cls for plain "
                                "encoders]."),
    hard_negatives: int = typer.Option(1, help="BM25 hard negatives per query (never judged "
                                       "relevant)."),
    bm25_depth: int = typer.Option(100, help="BM25 candidates the negatives come from."),
    max_queries: int = typer.Option(None, help="Train on at most N queries."),
    epochs: int = typer.Option(1, help="Training epochs."),
    batch_size: int = typer.Option(32, help="Queries per step (in-batch negatives)."),
    mini_batch_size: int = typer.Option(None, help="Cached MNRL (GradCache): forward this "
                                        "many at a time, for big batches in small memory."),
    lr: float = typer.Option(2e-5, help="Learning rate (10%% linear warm-up)."),
    max_seq_length: int = typer.Option(128, help="Token limit while training (evaluation "
                                       "uses the base's)."),
    eval_split: str = typer.Option("test", help="Held-out split evaluated before and after "
                                   "('none' to skip)."),
    eval_max_queries: int = typer.Option(None, help="Evaluate on the first N queries only."),
    eval_max_docs: int = typer.Option(None, help="Evaluate on their judged documents plus "
                                      "distractors up to N documents."),
    eval_max_length: int = typer.Option(None, help="Document token limit when evaluating "
                                        "[default: the base's]."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    save_steps: int = typer.Option(50, help="Checkpoint every N steps."),
    device: Device = typer.Option(Device.auto, help="Where training runs."),
) -> None:
    """DPR-style contrastive training: in-batch plus BM25 hard negatives.

    Example: irlens train bi-encoder --base default --data ../shared/data/nfcorpus
    --out /work/models/bi-nfcorpus
    """
    from irlens.training import train_bi_encoder

    with _quiet_loading():
        result = train_bi_encoder(
            base, data, out, split=split, two_towers=two_towers, pooling=pooling,
            hard_negatives=hard_negatives, bm25_depth=bm25_depth, max_queries=max_queries,
            epochs=epochs, batch_size=batch_size, mini_batch_size=mini_batch_size,
            learning_rate=lr, max_seq_length=max_seq_length, seed=seed, device=device.value,
            save_steps=save_steps, eval_split=None if eval_split == "none" else eval_split,
            eval_max_queries=eval_max_queries, eval_max_docs=eval_max_docs,
            eval_max_length=eval_max_length)
    echo_json(_summary(result))


@train_app.command("cross-encoder")
@friendly_errors
def train_cross_encoder_command(
    data: list[Path] = typer.Option(..., "--data", "-d", help="BEIR folder(s) (their --split "
                                    "qrels, BM25 negatives) or MS MARCO triples TSV files."),
    out: Path = typer.Option(Path("results/cross-encoder"), "--out", "-o",
                             help="Where the model folder goes."),
    split: str = typer.Option("train", help="Qrels split of BEIR folders to train on."),
    base: str = typer.Option("default", help="Weights to start from."),
    negatives: int = typer.Option(3, help="Negatives per query."),
    max_queries: int = typer.Option(None, help="Use at most N queries per source."),
    teacher_negatives: int = typer.Option(0, help="Negatives the --teacher ranks highest "
                                          "among the training data's own passages."),
    bm25_negatives: int = typer.Option(0, help="BM25's top negatives among the training "
                                       "data's own passages."),
    random_negatives: int = typer.Option(0, help="Random negatives among the training "
                                         "data's own passages."),
    teacher: str = typer.Option(None, help="Bi-encoder to distil from (e.g. 'default'); "
                                "without it: binary cross-entropy."),
    teacher_scale: float = typer.Option(10.0, help="Teacher similarities are multiplied "
                                        "by this (listwise: an inverse temperature)."),
    distillation: str = typer.Option("listwise", help="With --teacher: 'listwise' (ListNet "
                                     "on the teacher's softmax) or 'margin-mse'."),
    epochs: int = typer.Option(1, help="Training epochs."),
    batch_size: int = typer.Option(16, help="Groups (BCE: pairs) per step."),
    lr: float = typer.Option(2e-5, help="Learning rate (10%% linear warm-up)."),
    max_length: int = typer.Option(256, help="Token limit of a (query, document) pair."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    save_steps: int = typer.Option(50, help="Checkpoint every N steps."),
    keep_epochs: bool = typer.Option(False, help="Also write the model after each epoch "
                                     "to OUT.epochN."),
    eval_data: Path = typer.Option(None, help="BEIR folder to rerank on [default: the first "
                                   "--data folder that has --eval-split]."),
    eval_split: str = typer.Option("test", help="Split to evaluate on."),
    eval_depth: int = typer.Option(100, help="BM25 candidates reranked."),
    eval_queries: int = typer.Option(None, help="Evaluate on the first N queries only."),
    device: Device = typer.Option(Device.auto, help="Where training runs."),
) -> None:
    """Fine-tune a cross-encoder reranker from the default model's weights.

    Example: irlens train cross-encoder --data ../shared/data/msmarco-triples/
    triples.train.small.head1000.tsv --teacher default --teacher-negatives 8
    --bm25-negatives 4 --random-negatives 2 --negatives 15
    --eval-data ../shared/data/msmarco-dl19 --out /work/models/ce
    """
    from irlens.training import train_cross_encoder

    with _quiet_loading():
        result = train_cross_encoder(
            list(data), out, split=split, base=base, negatives=negatives,
            max_queries=max_queries,
            teacher_negatives=teacher_negatives, bm25_negatives=bm25_negatives,
            random_negatives=random_negatives, teacher=teacher, keep_epochs=keep_epochs,
            teacher_scale=teacher_scale, distillation=distillation, epochs=epochs,
            batch_size=batch_size, learning_rate=lr,
            max_length=max_length, seed=seed, save_steps=save_steps, device=device.value,
            eval_data=eval_data, eval_split=eval_split, eval_depth=eval_depth,
            eval_queries=eval_queries)
    # after training, so that bad input stays a one-line error
    typer.echo(f"note: the classification head was initialised new on top of {base}", err=True)
    echo_json(_summary(result))
