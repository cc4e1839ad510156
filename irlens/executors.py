"""Where jobs run: the executor is an argument, never a hidden global.

Every resumable analysis (:func:`irlens.artifacts.resume`), the corpus encoder
(:func:`irlens.retrieval.encode_corpus`) and the study runner
(:func:`irlens.study.run_study`) take an ``executor``: ``None`` runs the work in this
process; :class:`irlens.distributed.RayExecutor` (plain commands) or
:class:`irlens.distributed.WorkerPool` (a study) run it on Ray actors. Either way only
the calling process writes results. This module imports nothing: Ray is imported when a
Ray executor is built, never before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

__all__ = ["Executor", "StudyExecutor"]

T = TypeVar("T")


class Executor(Protocol):
    """Runs the jobs of the plain commands away from this process."""

    def run(self, jobs: Mapping[str, Callable[[], T]]) -> Iterator[tuple[str, T]]:
        """Run every job; yield ``(key, result)`` as each finishes (any order)."""
        ...

    def encode(self, model: Any, chunks: list[tuple[int, list[str]]], batch_size: int
               ) -> Iterator[tuple[int, tuple[Any, int]]]:
        """Encode ``(start, texts)`` chunks as documents with ``model``'s weights; yield
        ``(start, (vectors, n_truncated))`` as each finishes (any order)."""
        ...


class StudyExecutor(Protocol):
    """Runs study jobs (:class:`irlens.study.Job`) on workers that hold the study."""

    def run(self, jobs: list) -> Iterator[tuple[Any, Any]]:
        """Run every job; yield ``(job, result)`` as each finishes (any order)."""
        ...
