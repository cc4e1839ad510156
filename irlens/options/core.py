"""The :class:`Option` and :class:`Table` types, their checks, and the command decorator."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from irlens.errors import IrlensError

__all__ = ["Check", "Option", "Table", "at_least", "below", "check_out", "checked", "comma_list",
           "library", "model_layers", "one_of", "positive"]

Check = Callable[[Any], "str | None"]  # a value -> a complaint ("must be ...; fix"), or None
Rule = Callable[[Mapping[str, Any]], "str | None"]  # all values -> a full message, or None


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: name, type (``int``, ``float``, ``str``, ``bool``, ``path``, ``list``),
    default (``...``: required), help, check, and whether it changes results."""

    name: str
    kind: str
    default: Any
    help: str = ""
    check: Check | None = None
    results: bool = True
    flags: tuple[str, ...] = ()  # CLI spellings [default: --the-name]
    argument: bool = False  # a positional CLI argument
    metavar: str | None = None
    last: bool = False  # checked after the others (it reads files: a model, a folder)

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")

    def but(self, **changes: Any) -> Option:
        """This option with another default, help or name (the check stays)."""
        return dataclasses.replace(self, **changes)

    def problem(self, value: Any) -> str | None:
        """The one-line complaint about ``value`` (with the flag), or None."""
        if value is None or value is ... or self.check is None:
            return None
        if isinstance(value, (list, tuple)) and self.kind == "list":
            found = (self.check(v) for v in value)
            problem = next((p for p in found if p), None)
        else:
            problem = self.check(value)
        if not problem:
            return None
        # a library's message is a whole sentence already; a check's starts "must ..."
        return f"{self.flag} {problem}" if problem.startswith(("must", "is ", "item ")) \
            else problem

    def validate(self, value: Any) -> None:
        problem = self.problem(value)
        if problem:
            raise IrlensError(problem)

    def cli(self) -> Any:
        """The ``typer.Option`` (or ``typer.Argument``) with this default and help."""
        import typer

        if self.argument:
            return typer.Argument(self.default, help=self.help)
        extra = {"metavar": self.metavar} if self.metavar else {}
        return typer.Option(self.default, *self.flags, help=self.help, **extra)


class Table:
    """One command's options (by name) and its rules over several options."""

    def __init__(self, command: str, options: Iterable[Option], rules: Iterable[Rule] = ()):
        self.command = command
        self.options = {o.name: o for o in options}
        self.rules = tuple(rules)

    def __getitem__(self, name: str) -> Option:
        return self.options[name]

    def __iter__(self):
        return iter(self.options.values())

    def cli(self, name: str) -> Any:
        return self.options[name].cli()

    def validate(self, values: Mapping[str, Any]) -> None:
        """Raise a one-line :class:`IrlensError` for the first bad value or rule."""
        for name, option in sorted(self.options.items(), key=lambda kv: kv[1].last):
            if name in values:
                option.validate(_plain(values[name]))
        plain = {k: _plain(v) for k, v in values.items()}
        for rule in self.rules:
            problem = rule(plain)
            if problem:
                raise IrlensError(problem)

    def results(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values of the options that change results (what an output records)."""
        return {n: _plain(values[n]) for n, o in self.options.items() if o.results
                and n in values}


def checked(table: Table) -> Callable:
    """Decorate a command: every value is checked against ``table`` before it runs."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            table.validate(signature.bind(*args, **kwargs).arguments)
            return fn(*args, **kwargs)

        wrapper.table = table  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") and not isinstance(value, type) else value


def check_out(folder: Any, command: str, options: Mapping[str, Any]) -> None:
    """Refuse ``folder`` when it holds a ``command`` run made with other result-changing
    ``options`` (as recorded in its manifest's ``extra.options``): the rerun would replace
    it silently. Called before any data or model loads."""
    import json
    from pathlib import Path

    from irlens.artifacts import config_diff

    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("extra", {}).get("options")
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        raise IrlensError(f"{folder} holds output that does not record its options (another "
                          "command, or an older irlens); use a new --out, or delete it")
    changed = config_diff(old, {k: _jsonable(v) for k, v in options.items()})
    if changed:
        flags = ", ".join("--" + c.replace("_", "-") for c in changed)
        raise IrlensError(f"{folder} holds an `irlens {command}` run with other {flags}; use "
                          "a new --out, or delete it to start over")


def _jsonable(value: Any) -> Any:
    from irlens.artifacts import jsonable

    return jsonable(value)


# -- checks ------------------------------------------------------------------------------
def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x) if isinstance(x, str) else str(x)


def at_least(low: float, fix: str | None = None) -> Check:
    """``value >= low``."""

    def check(value: Any) -> str | None:
        if value < low:
            return f"must be >= {_num(low)}, got {_num(value)}; " + \
                (fix or f"pass a value of {_num(low)} or more")
        return None

    return check


def positive(fix: str | None = None) -> Check:
    """``value > 0``."""

    def check(value: Any) -> str | None:
        if not value > 0:
            return f"must be > 0, got {_num(value)}; " + (fix or "pass a positive value")
        return None

    return check


def below(high: float, low: float = 0, fix: str | None = None) -> Check:
    """``low < value <= high`` (a share or a percentage)."""

    def check(value: Any) -> str | None:
        if not low < value <= high:
            return f"must be in ({_num(low)}, {_num(high)}], got {_num(value)}; " + \
                (fix or f"pass a value above {_num(low)} and at most {_num(high)}")
        return None

    return check


def one_of(*choices: Any) -> Check:
    """One of ``choices``; a single ``"module:NAME"`` string names a tuple of choices
    defined in that module (imported only when a value is checked)."""

    def check(value: Any) -> str | None:
        allowed = choices
        if len(choices) == 1 and ":" in str(choices[0]):
            import importlib

            module, name = str(choices[0]).split(":")
            allowed = tuple(getattr(importlib.import_module(module), name))
        if value not in allowed:
            return f"must be one of {', '.join(map(str, allowed))}, got {_num(value)}"
        return None

    return check


def comma_list(item: Check | None = None, kind: type = str, example: str = "a,b") -> Check:
    """A comma-separated list, not empty, each item of ``kind`` passing ``item``."""

    def check(value: Any) -> str | None:
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            return f"is empty; give a comma-separated list such as {example}"
        for part in parts:
            try:
                one = kind(part)
            except ValueError:
                return f"must be a comma-separated list of {kind.__name__}s such as " \
                    f"{example}, got {value!r}"
            problem = item(one) if item else None
            if problem:
                return f"item {part!r} {problem}"
        return None

    return check


def library(fn: Callable[[Any], Any]) -> Check:
    """A check from a library function that raises :class:`IrlensError` on bad input."""

    def check(value: Any) -> str | None:
        try:
            fn(value)
        except IrlensError as err:
            return str(err)
        return None

    return check


# -- what a model's config says (no weights) --------------------------------------------
def model_layers(model: str) -> int | None:
    """The number of transformer layers of ``model``, from its config alone; None when it
    cannot be read this way (a two-tower folder; ``load_model`` then decides)."""
    from transformers import AutoConfig

    from irlens.models import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError):
        return None
    for name in ("num_hidden_layers", "n_layers", "num_layers"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None
