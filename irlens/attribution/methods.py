"""Attribution methods by name or short spec.

``make_method("ig(baseline=mask, rule=gausslegendre, n_steps=50)", model)`` parses the
``repr`` of any method back into it; ``"ig"``, ``"sig-mask"`` or ``"occlusion-pad"``
(a baseline suffix) also work. A new method is one class (a subclass of
:class:`~irlens.attribution._base.AttributionMethod` with a ``name``) and one
:func:`register_method` call.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from irlens.attribution._base import AttributionMethod
from irlens.attribution.controls import GradientXInput, RandomAttribution
from irlens.attribution.ig import IntegratedGradients
from irlens.attribution.occlusion import Occlusion
from irlens.attribution.sig import SequentialIntegratedGradients
from irlens.errors import IrlensError
from irlens.models import Retriever

__all__ = ["METHODS", "METHOD_NAMES", "make_method", "parse_spec", "register_method"]

METHODS: dict[str, type[AttributionMethod]] = {}


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Make ``cls`` available to :func:`make_method` under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


for _cls in (IntegratedGradients, SequentialIntegratedGradients, Occlusion, GradientXInput,
             RandomAttribution):
    register_method(_cls)
METHOD_NAMES = tuple(METHODS)


def _value(text: str) -> Any:
    text = text.strip()
    if text in ("None", "none"):
        return None
    if text in ("True", "False"):
        return text == "True"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            continue
    return text.strip("'\"")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ig(n_steps=20, rule=riemann_left)"`` -> ``("ig", {...})``; ``"ig-pad"`` ->
    ``("ig", {"baseline": "pad"})``."""
    match = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*", spec or "")
    if not match:
        raise IrlensError(f"method spec '{spec}' not understood; write e.g. "
                          "ig(baseline=mask, rule=gausslegendre, n_steps=50)")
    name, args = match.group(1), match.group(2)
    params: dict[str, Any] = {}
    name, _, suffix = name.partition("-")
    if suffix:
        params["baseline"] = suffix
    for part in filter(None, (p.strip() for p in re.split(r",(?![^()]*\))", args or ""))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise IrlensError(f"'{part}' in method spec '{spec}' is not key=value")
        params[key.strip()] = _value(value)
    return name, params


def make_method(spec: str, model: Retriever, **options: Any) -> AttributionMethod:
    """Build a method from its name or spec; parameters in the spec win over
    ``options``. ``options`` a method does not take (``n_steps`` for occlusion, ``seed``
    for IG) are skipped, so one set of options serves several methods."""
    name, params = parse_spec(spec)
    if name not in METHODS:
        raise IrlensError(f"unknown attribution method '{name}'; use {', '.join(METHODS)} "
                          "(ig, sig and occlusion take a baseline suffix, e.g. ig-pad, sig-mask)")
    cls = METHODS[name]
    accepted = set(inspect.signature(cls).parameters) - {"model"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        if unknown == ["baseline"]:
            raise IrlensError(f"'{name}' takes no baseline; drop '-{params['baseline']}'")
        raise IrlensError(f"'{name}' takes no {', '.join(unknown)}; it takes "
                          f"{', '.join(sorted(accepted))}")
    kwargs = {k: v for k, v in options.items()
              if k in accepted and not (k == "baseline" and v is None)}
    return cls(model, **{**kwargs, **params})
