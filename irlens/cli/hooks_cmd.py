"""``irlens hooks MODEL``: list a model's hook points with their shapes and unit counts."""

from __future__ import annotations

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.options import checked
from irlens.options.retrieval import HOOKS


@app.command("hooks")
@friendly_errors
@checked(HOOKS)
def hooks_command(
    model: str = HOOKS.cli("model"),
    side: str = HOOKS.cli("side"),
    as_json: bool = HOOKS.cli("as_json"),
) -> None:
    """List the named hook points of MODEL (the same names for every architecture)."""
    from irlens.hooks import describe
    from irlens.models import load_model

    rows = describe(load_model(model, device="cpu"), side=side)
    if as_json:
        echo_json([row.__dict__ for row in rows])
        return
    typer.echo(f"{'hook point':<22} {'shape':<14} {'units':>6}  module")
    for row in rows:
        typer.echo(f"{row.name:<22} {row.shape:<14} {row.units:>6}  {row.module}")
