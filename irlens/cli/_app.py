"""The Typer application shared by every command module, and its error handling."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

from irlens.errors import IrlensError

app = typer.Typer(
    name="irlens",
    help="Look inside neural retrievers: evaluate them; attribute their scores to tokens, "
    "token pairs, neurons and components; probe, edit and train them; find concepts with "
    "sparse autoencoders; run whole studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Turn an IrlensError into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings_as_lines():
                return fn(*args, **kwargs)
        except IrlensError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; finished work is kept and a rerun resumes it", err=True)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show each distinct warning raised inside once, as ``warning: <message>`` on stderr
    (above any progress bar), instead of Python's file:line form."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        from tqdm.auto import tqdm

        tqdm.write(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def echo_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.callback()
def _root() -> None:
    """Look inside neural retrievers: evaluate them; attribute their scores to tokens,
    token pairs, neurons and components; probe, edit and train them; find concepts with
    sparse autoencoders; run whole studies. Models: 'default' (all-MiniLM-L6-v2,
    offline), a model folder, or a Hugging Face id."""
