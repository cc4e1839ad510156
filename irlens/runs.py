"""Runs: ranked results per query, and TREC run files.

A :data:`Run` maps query id -> {doc id: score}; higher scores rank first. Every search
in :mod:`irlens.retrieval` returns one, and :func:`irlens.evaluation.evaluate` scores one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias

from irlens._io import atomic_path
from irlens.errors import IrlensError

__all__ = ["Run", "load_run", "ranked", "save_run"]

Run: TypeAlias = dict[str, dict[str, float]]
"""Query id -> {doc id: score}; higher scores rank first."""


def ranked(scores: Mapping[str, float], depth: int | None = None) -> list[str]:
    """Doc ids by descending score (ties by id), the first ``depth`` of them."""
    return sorted(scores, key=lambda d: (-scores[d], d))[:depth]


def save_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "irlens") -> Path:
    """Write ``run`` in TREC format (``qid Q0 docid rank score tag``), atomically.

    Scores are written as the shortest text that reads back as the same float (numpy
    scalars included), so :func:`load_run` returns exactly the scores saved.
    """
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        for qid in sorted(run):
            for rank, doc_id in enumerate(ranked(run[qid]), start=1):
                fh.write(f"{qid} Q0 {doc_id} {rank} {float(run[qid][doc_id])!r} {tag}\n")
    return path


def load_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into a :data:`Run`."""
    path = Path(path)
    if not path.is_file():
        raise IrlensError(f"no such run file: {path}")
    run: Run = {}
    with path.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 6:
                raise IrlensError(
                    f"{path}:{lineno}: expected 6 columns (qid Q0 docid rank score tag), "
                    f"found {len(cols)}"
                )
            try:
                score = float(cols[4])
            except ValueError:
                raise IrlensError(f"{path}:{lineno}: score {cols[4]!r} is not a number") from None
            run.setdefault(cols[0], {})[cols[2]] = score
    return run
