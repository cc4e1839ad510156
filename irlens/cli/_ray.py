"""What ``--ray`` and ``--workers`` do (the options are declared in :mod:`irlens.options`)."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["check_ray", "ray_executor", "study_executor"]


def check_ray(ray: str | None) -> None:
    """Fail fast (one line) on an unreachable cluster, before any data or model loads."""
    if ray is not None:
        from irlens.distributed import connect

        connect(ray)


def ray_executor(ray: str | None, model: str, workers: int | None, **load: Any):
    """A ``with`` block giving the executor of a command's jobs: Ray workers holding
    ``load_model(model, **load)`` (``--ray``; closed at the end), or None (this process)
    without it."""
    if ray is None:
        return contextlib.nullcontext()
    from irlens.distributed import RayExecutor

    return RayExecutor(ray, model, workers=workers, **load)


def study_executor(ray: str | None, spec, workers: int | None):
    """A ``with`` block giving a study's executor: Ray workers each holding the study
    (``--ray``; closed at the end), or None (this process) without it."""
    if ray is None:
        return contextlib.nullcontext()
    from irlens.distributed import WorkerPool

    return WorkerPool(spec, workers, address=ray)
