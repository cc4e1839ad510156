"""Second moment of FFN keys, ``C = E[k k^T]`` over a corpus sample, for rank-one edits.

ROME (Meng et al. 2022) constrains its update by the covariance of the keys (the FFN
intermediate activations ``layer.{l}.ffn.post``) so that keys the model usually sees
move as little as possible. One batched pass reads every token's key of many
documents; ``key_covariance_loop`` is the obvious one-document-at-a-time version the
benchmark compares against. Estimates are cached on disk, keyed by model and data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.cache import cache_folder
from irlens.hooks import capture
from irlens.models import BiEncoder

__all__ = ["KeyCovariance", "cached_covariance", "key_covariance", "key_covariance_loop"]


@dataclass(repr=False)
class KeyCovariance(Artifact):
    """``moment`` [I, I] = mean of k k^T over the keys of a corpus sample at ``layer``."""

    kind: ClassVar[str] = "key-covariance"
    array_fields: ClassVar[tuple[str, ...]] = ("moment",)

    manifest: Manifest
    moment: np.ndarray
    layer: int

    def summary(self) -> str:
        return f"layer {self.layer}, {self.moment.shape[0]} units"


@torch.no_grad()
def key_covariance(model: BiEncoder, texts: list[str], layer: int, *, batch_size: int = 32,
                   side: str = "doc") -> torch.Tensor:
    """``E[k k^T]`` [I, I] (float64) over every real token of ``texts``, batched."""
    name = f"layer.{layer}.ffn.post"
    total, count = None, 0
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize([texts[i] for i in order[start:start + batch_size]], side)
        with capture(model, name, side=side) as cache:
            model.forward_embeds(batch)
        keys = cache[name][batch.attention_mask.bool()].double()
        moment = keys.T @ keys
        total = moment if total is None else total + moment
        count += keys.shape[0]
    return total / count


@torch.no_grad()
def key_covariance_loop(model: BiEncoder, texts: list[str], layer: int,
                        side: str = "doc") -> torch.Tensor:
    """The same moment, one document per forward and one token at a time (reference)."""
    body = model._encoder_for(side)
    module = body.encoder.layer[layer].intermediate if hasattr(body, "encoder") else None
    if module is None:
        raise NotImplementedError("the reference loop knows BERT-style bodies only")
    keys: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: keys.append(out.detach()))
    try:
        total, count = None, 0
        for text in texts:
            enc = model.tokenizer(model.doc_prefix + text, truncation=True,
                                  max_length=model.max_length, return_tensors="pt")
            keys.clear()
            body(**enc)
            for k in keys[0][0].double():
                outer = torch.outer(k, k)
                total = outer if total is None else total + outer
                count += 1
    finally:
        handle.remove()
    return total / count


def cached_covariance(model: BiEncoder, dataset, layer: int, n_docs: int = 1000,
                      seed: int = 0, cache_dir: str | Path | None = None,
                      side: str = "doc") -> torch.Tensor:
    """:func:`key_covariance` over ``n_docs`` random documents read by ``side``'s tower,
    cached on disk; on the model's device."""
    rng = np.random.default_rng(seed)
    ids = dataset.doc_ids
    pick = sorted(rng.choice(len(ids), size=min(n_docs, len(ids)), replace=False).tolist())
    config = {"layer": layer, "n_docs": len(pick), "seed": seed}
    if "shared" not in model.encoders():
        config["side"] = side
    key = f"{model.fingerprint}|{dataset.fingerprint}|{sorted(config.items())}"
    folder = cache_folder("covariance", key, cache_dir)
    if (folder / "manifest.json").is_file():
        return torch.from_numpy(KeyCovariance.load(folder).moment).to(model.device)
    texts = dataset.doc_texts([ids[i] for i in pick])
    moment = key_covariance(model, texts, layer, side=side)
    KeyCovariance(make_manifest("key-covariance", config, model=model, data=dataset),
                  moment.cpu().numpy(), layer).save(folder)
    return moment
