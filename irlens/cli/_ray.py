"""The ``--ray`` and ``--workers`` options, shared by every command that can scale out."""

from __future__ import annotations

import contextlib
from typing import Any

import typer

__all__ = ["check_ray", "ray_jobs", "ray_option", "workers_option"]


def ray_option():
    return typer.Option(None, "--ray", metavar="auto|ADDRESS",
                        help="Run the work on Ray: 'auto' (this machine's cluster, or a new "
                        "local one) or a cluster address (HOST:PORT, ray://HOST:10001). "
                        "Needs pip install irlens\\[ray]. Without it Ray is not imported.")


def workers_option():
    return typer.Option(None, "--workers", min=1, help="Ray workers, one model each "
                        "(default: one per CPU, or per GPU).")


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
