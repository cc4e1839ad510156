"""The ``irlens`` command line: thin commands over the Python API.

Each command module registers its commands on the shared Typer app.
"""

from __future__ import annotations

from irlens.cli import _modules  # noqa: F401  (registers every command)
from irlens.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
