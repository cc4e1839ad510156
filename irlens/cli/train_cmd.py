"""``irlens train bi-encoder`` and ``irlens train cross-encoder``: thin commands over
:mod:`irlens.training`. Progress goes to stderr, the result (JSON) to stdout."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.options import checked
from irlens.options.retrieval import TRAIN_BI, TRAIN_CROSS

train_app = typer.Typer(help="Train retrievers: DPR-style bi-encoders and cross-encoder "
                        "rerankers.", no_args_is_help=True)
app.add_typer(train_app, name="train")


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
@checked(TRAIN_BI)
def train_bi_encoder_command(
    base: str = TRAIN_BI.cli("base"),
    data: Path = TRAIN_BI.cli("data"),
    out: Path = TRAIN_BI.cli("out"),
    two_towers: bool = TRAIN_BI.cli("two_towers"),
    split: str = TRAIN_BI.cli("split"),
    pooling: str = TRAIN_BI.cli("pooling"),
    hard_negatives: int = TRAIN_BI.cli("hard_negatives"),
    bm25_depth: int = TRAIN_BI.cli("bm25_depth"),
    max_queries: int = TRAIN_BI.cli("max_queries"),
    epochs: int = TRAIN_BI.cli("epochs"),
    batch_size: int = TRAIN_BI.cli("batch_size"),
    mini_batch_size: int = TRAIN_BI.cli("mini_batch_size"),
    lr: float = TRAIN_BI.cli("lr"),
    max_seq_length: int = TRAIN_BI.cli("max_seq_length"),
    eval_split: str = TRAIN_BI.cli("eval_split"),
    eval_max_queries: int = TRAIN_BI.cli("eval_max_queries"),
    eval_max_docs: int = TRAIN_BI.cli("eval_max_docs"),
    eval_max_length: int = TRAIN_BI.cli("eval_max_length"),
    seed: int = TRAIN_BI.cli("seed"),
    save_steps: int = TRAIN_BI.cli("save_steps"),
    device: str = TRAIN_BI.cli("device"),
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
            learning_rate=lr, max_seq_length=max_seq_length, seed=seed, device=device,
            save_steps=save_steps, eval_split=None if eval_split == "none" else eval_split,
            eval_max_queries=eval_max_queries, eval_max_docs=eval_max_docs,
            eval_max_length=eval_max_length)
    echo_json(_summary(result))


@train_app.command("cross-encoder")
@friendly_errors
@checked(TRAIN_CROSS)
def train_cross_encoder_command(
    data: list[Path] = TRAIN_CROSS.cli("data"),
    out: Path = TRAIN_CROSS.cli("out"),
    split: str = TRAIN_CROSS.cli("split"),
    base: str = TRAIN_CROSS.cli("base"),
    negatives: int = TRAIN_CROSS.cli("negatives"),
    max_queries: int = TRAIN_CROSS.cli("max_queries"),
    teacher_negatives: int = TRAIN_CROSS.cli("teacher_negatives"),
    bm25_negatives: int = TRAIN_CROSS.cli("bm25_negatives"),
    random_negatives: int = TRAIN_CROSS.cli("random_negatives"),
    teacher: str = TRAIN_CROSS.cli("teacher"),
    teacher_scale: float = TRAIN_CROSS.cli("teacher_scale"),
    distillation: str = TRAIN_CROSS.cli("distillation"),
    epochs: int = TRAIN_CROSS.cli("epochs"),
    batch_size: int = TRAIN_CROSS.cli("batch_size"),
    lr: float = TRAIN_CROSS.cli("lr"),
    max_length: int = TRAIN_CROSS.cli("max_length"),
    seed: int = TRAIN_CROSS.cli("seed"),
    save_steps: int = TRAIN_CROSS.cli("save_steps"),
    keep_epochs: bool = TRAIN_CROSS.cli("keep_epochs"),
    eval_data: Path = TRAIN_CROSS.cli("eval_data"),
    eval_split: str = TRAIN_CROSS.cli("eval_split"),
    eval_depth: int = TRAIN_CROSS.cli("eval_depth"),
    eval_queries: int = TRAIN_CROSS.cli("eval_queries"),
    device: str = TRAIN_CROSS.cli("device"),
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
            max_length=max_length, seed=seed, save_steps=save_steps, device=device,
            eval_data=eval_data, eval_split=eval_split, eval_depth=eval_depth,
            eval_queries=eval_queries)
    # after training, so that bad input stays a one-line error
    typer.echo(f"note: the classification head was initialised new on top of {base}", err=True)
    echo_json(_summary(result))
