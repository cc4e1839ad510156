"""The ``--ray`` and ``--workers`` options, shared by every command that can scale out."""

from __future__ import annotations

import typer

__all__ = ["ray_option", "workers_option"]


def ray_option():
    return typer.Option(None, "--ray", metavar="auto|ADDRESS",
                        help="Run the work on Ray: 'auto' (this machine's cluster, or a new "
                        "local one) or a cluster address (HOST:PORT, ray://HOST:10001). "
                        "Needs pip install irlens\\[ray]. Without it Ray is not imported.")


def workers_option():
    return typer.Option(None, "--workers", min=1, help="Ray workers, one model each "
                        "(default: one per CPU, or per GPU).")
