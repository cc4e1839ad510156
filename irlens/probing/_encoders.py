"""Encoder pairs for the comparison studies: model specs, tower checks, per-layer vectors.

A *spec* names one bi-encoder: ``default``, a model folder or Hugging Face id (one
shared tower), or ``DOC+QUERY`` for a DPR-style pair (``facebook/dpr-ctx_encoder-...``
``+facebook/dpr-question_encoder-...``), each side then read through its own tower.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points
from irlens.models import BiEncoder

__all__ = ["POOLINGS", "check_specs", "layer_names", "layer_representations", "load_encoder",
           "split_spec"]

POOLINGS = ("cls", "mean")


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

    from irlens.models import resolve_model_path

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
    from irlens.models import load_model

    doc, query = split_spec(spec)
    model = load_model(doc, device=device, kind="bi", query_model=query, max_length=max_length)
    if not isinstance(model, BiEncoder):
        raise IrlensError(f"'{spec}' did not load as a bi-encoder; pass a bi-encoder")
    model.model_id = spec
    return model


def layer_names(model: BiEncoder, side: str) -> list[str]:
    """``embeddings`` then every ``layer.{i}.resid`` of ``side``'s tower."""
    points = hook_points(model, side)
    return ["embeddings"] + [n for n, p in points.items() if p.kind == "resid"]


@torch.no_grad()
def layer_representations(model: BiEncoder, texts: Sequence[str], side: str, *,
                          poolings: Sequence[str] = POOLINGS, batch_size: int = 32,
                          progress: bool = False) -> dict[str, np.ndarray]:
    """Pooled vectors at ``embeddings`` and every ``layer.{i}.resid``: pooling -> array
    [layers + 1, len(texts), hidden]. One forward per batch reads every layer (hooks)."""
    from tqdm.auto import tqdm

    if side not in ("query", "doc"):
        raise IrlensError(f"unknown side '{side}'; use query or doc")
    unknown = set(poolings) - set(POOLINGS)
    if unknown:
        raise IrlensError(f"unknown pooling {sorted(unknown)}; use cls and/or mean")
    texts = list(texts)
    names = layer_names(model, side)
    hidden = hook_points(model, side)["embeddings"].units
    out = {p: np.zeros((len(names), len(texts), hidden), dtype=np.float32) for p in poolings}
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc=f"{side} layers", disable=not progress, unit="batch"):
        idx = order[start:start + batch_size]
        batch = model.tokenize([texts[i] for i in idx], side)
        with capture(model, names, side=side) as cache:
            model.forward_embeds(batch)
        states = torch.stack([cache[n] for n in names]).float()  # [L+1, B, T, H]
        mask = batch.attention_mask.to(states.dtype)[None, :, :, None]
        for pooling in poolings:
            if pooling == "cls":
                pooled = states[:, :, 0]
            else:
                pooled = (states * mask).sum(2) / mask.sum(2).clamp(min=1e-9)
            out[pooling][:, idx] = pooled.cpu().numpy()
    return out
