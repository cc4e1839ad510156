"""Attribution methods by short name: ``ig``, ``sig``, ``occlusion``, ``gxi``, ``random``,
with an optional baseline suffix (``ig-pad``, ``ig-mask``, ``sig-mask``, ``occlusion-mask``)."""

from __future__ import annotations

from typing import Any

from irlens.attribution._base import AttributionMethod
from irlens.attribution.controls import GradientXInput, RandomAttribution
from irlens.attribution.ig import IntegratedGradients
from irlens.attribution.occlusion import Occlusion
from irlens.attribution.sig import SequentialIntegratedGradients
from irlens.errors import IrlensError
from irlens.models import Retriever

__all__ = ["METHOD_NAMES", "make_method"]

METHOD_NAMES = ("ig", "sig", "occlusion", "gxi", "random")
_PATH = {"ig": IntegratedGradients, "sig": SequentialIntegratedGradients}


def make_method(name: str, model: Retriever, *, n_steps: int = 50,
                method: str = "gausslegendre", baseline: str | None = None, seed: int = 0,
                **common: Any) -> AttributionMethod:
    """Build a method from its short name; ``common`` holds target, output, memory_budget,
    max_tokens, max_doc_tokens. A ``-<baseline>`` suffix sets the baseline."""
    base_name, _, suffix = name.partition("-")
    if base_name not in METHOD_NAMES:
        raise IrlensError(f"unknown attribution method '{name}'; use {', '.join(METHOD_NAMES)} "
                          "(ig, sig and occlusion take a baseline suffix, e.g. ig-pad, sig-mask)")
    if base_name in _PATH:
        return _PATH[base_name](model, baseline=suffix or baseline or "mask", n_steps=n_steps,
                                method=method, **common)
    if base_name == "occlusion":
        return Occlusion(model, baseline=suffix or baseline or "mask", **common)
    if suffix:
        raise IrlensError(f"'{base_name}' takes no baseline; drop '-{suffix}'")
    common.pop("memory_budget", None) if base_name == "random" else None
    common.pop("max_tokens", None) if base_name == "random" else None
    if base_name == "gxi":
        return GradientXInput(model, **common)
    return RandomAttribution(model, seed=seed, **common)
