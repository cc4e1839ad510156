"""What the trainers share: the training-extras import, data checks, the atomic model save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irlens.errors import IrlensError

__all__ = ["check_split", "checkpoint_dir", "require_training", "run_trainer"]


def require_training() -> Any:
    """Import ``datasets`` (with ``accelerate``) or fail with the install line."""
    try:
        import accelerate  # noqa: F401
        import datasets
    except ImportError as err:
        raise IrlensError("training needs datasets and accelerate: pip install "
                          f"'irlens[train]' ({err})") from None
    return datasets


def check_split(folder: str | Path, split: str, what: str = "training",
                flag: str = "--split") -> Path:
    """A BEIR folder must hold ``qrels/<split>.tsv`` with at least one judgement (``flag``
    is the option a user passes the split with, named in the message)."""
    folder = Path(folder)
    if not folder.exists():
        raise IrlensError(f"{what} data {folder} does not exist")
    if folder.is_dir():
        qrels = folder / "qrels" / f"{split}.tsv"
        if not qrels.is_file():
            have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) \
                if (folder / "qrels").is_dir() else []
            raise IrlensError(f"{folder} has no '{split}' split (qrels/{split}.tsv); "
                              f"its splits: {', '.join(have) or 'none'}; pass {flag} with "
                              "one of them")
        lines = [ln for ln in qrels.read_text().splitlines()
                 if ln.strip() and not ln.startswith("query-id")]
        if not lines:
            raise IrlensError(f"{folder} split '{split}' is empty (qrels/{split}.tsv has no "
                              "judgements); pass another split")
    return folder


def checkpoint_dir(out: Path, config: dict[str, Any]) -> Path:
    """``.NAME.ckpt`` beside ``out``; refuses to resume checkpoints of another config."""
    from irlens._io import read_json, write_json
    from irlens.artifacts import config_diff

    ckpt = out.with_name(f".{out.name}.ckpt")
    stamp = ckpt / "irlens_config.json"
    if stamp.is_file():
        changed = config_diff(read_json(stamp), config)
        if changed:
            raise IrlensError(f"{ckpt} holds checkpoints of another run (differs in "
                              f"{', '.join(changed)}); delete it or use another --out")
    else:
        ckpt.mkdir(parents=True, exist_ok=True)
        write_json(stamp, config)
    return ckpt


def run_trainer(trainer: Any, ckpt: Path) -> list[float]:
    """Train, resuming from the last checkpoint in ``ckpt``; return the logged losses.

    The trainer prints its log lines; they go to stderr, so stdout stays data only."""
    import contextlib
    import sys

    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(ckpt)) if ckpt.is_dir() else None
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train(resume_from_checkpoint=last)
    return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
