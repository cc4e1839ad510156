"""Model specs for the comparison studies (probes, activations): one bi-encoder each.

A *spec* names one bi-encoder: ``default``, a model folder or Hugging Face id (one
shared tower), or ``DOC+QUERY`` for a DPR-style pair (``facebook/dpr-ctx_encoder-...``
``+facebook/dpr-question_encoder-...``), each side then read through its own tower.
"""

from __future__ import annotations

from collections.abc import Sequence

from irlens.errors import IrlensError
from irlens.models.bi_encoder import BiEncoder
from irlens.models.loading import load_model, resolve_model_path

__all__ = ["check_specs", "load_encoder", "split_spec"]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``DOC+QUERY`` -> (doc, query); a plain spec -> (spec, None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise IrlensError("empty model spec; pass 'default', a model folder, a HF id or "
                          "DOC+QUERY for a two-tower pair")
    if "+" in spec:
        doc, _, query = spec.partition("+")
        if not doc or not query or "+" in query:
            raise IrlensError(f"model spec '{spec}' is not DOC+QUERY; write e.g. "
                              "facebook/dpr-ctx_encoder-single-nq-base+"
                              "facebook/dpr-question_encoder-single-nq-base")
        return doc, query
    return spec, None


def _config_of(name: str):
    from transformers import AutoConfig

    path = resolve_model_path(name)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        raise IrlensError(f"unknown model '{name}': not a local folder, and not in the local "
                          "Hugging Face cache (offline?); pass a model folder or 'default'"
                          ) from None


def check_specs(specs: Sequence[str], *, need: int = 2, what: str = "probe") -> list[str]:
    """Check model specs before any weights load: ``need`` of them, bi-encoders only."""
    specs = list(specs or [])
    if len(specs) < need:
        raise IrlensError(f"{what} compares {need} models but got {len(specs)}; give --model "
                          "twice, e.g. --model default --model /path/to/fine-tuned")
    for spec in specs:
        for name in filter(None, split_spec(spec)):
            config = _config_of(name)
            if any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
                raise IrlensError(f"'{name}' is a cross-encoder: it has no query and document "
                                  f"towers to read; {what} needs a bi-encoder (a "
                                  "sentence-transformers folder, an encoder, or DOC+QUERY)")
    return specs


def load_encoder(spec: str, device: str = "cpu", max_length: int | None = None) -> BiEncoder:
    """Load a spec as a :class:`BiEncoder` (two towers for ``DOC+QUERY``)."""
    doc, query = split_spec(spec)
    model = load_model(doc, device=device, kind="bi", query_model=query, max_length=max_length)
    if not isinstance(model, BiEncoder):
        raise IrlensError(f"'{spec}' did not load as a bi-encoder; pass a bi-encoder")
    model.model_id = spec
    return model
