"""Per-layer vectors of the encoders a probe compares (their specs:
:mod:`irlens.models.specs`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points
from irlens.models import BiEncoder, check_specs, load_encoder, split_spec

__all__ = ["POOLINGS", "check_specs", "layer_names", "layer_representations", "load_encoder",
           "split_spec"]

POOLINGS = ("cls", "mean")


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
