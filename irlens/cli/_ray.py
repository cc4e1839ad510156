"""What ``--ray`` and ``--workers`` do (the options are declared in :mod:`irlens.options`)."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["check_ray", "ray_jobs"]


def check_ray(ray: str | None) -> None:
    """Fail fast (one line) on an unreachable cluster, before any data or model loads."""
    if ray is not None:
        from irlens.distributed import connect

        connect(ray)


def ray_jobs(ray: str | None, model: str, workers: int | None, **load: Any):
    """The block in which a command's resumable jobs run on Ray workers holding
    ``load_model(model, **load)`` (``--ray``), or nothing at all without it."""
    if ray is None:
        return contextlib.nullcontext()
    from irlens.distributed import scale_jobs

    return scale_jobs(ray, model, workers=workers, **load)
