"""The on-disk cache: one root folder and one key per kind of entry.

The root is ``cache_dir`` when given, else ``$IRLENS_CACHE_DIR``, else ``~/.cache/irlens``;
each entry is ``ROOT/<kind>/<first 20 hex digits of sha1(key)>``. The corpus embeddings
(:func:`irlens.retrieval.encode_corpus`) are keyed by :func:`embedding_key`; anything that
reads them (the SAE activation cache) finds them with :func:`embedding_folder`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_folder", "cache_root", "embedding_folder", "embedding_key"]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$IRLENS_CACHE_DIR``, else ``~/.cache/irlens`` (user expanded)."""
    return Path(cache_dir or os.environ.get("IRLENS_CACHE_DIR") or "~/.cache/irlens"
                ).expanduser()


def cache_folder(kind: str, key: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of the ``kind`` entry (``"embeddings"``, ``"covariance"``) for ``key``."""
    return cache_root(cache_dir) / kind / hashlib.sha1(key.encode()).hexdigest()[:20]


def embedding_key(model, dataset, fingerprint: str | None = None) -> str:
    """What a corpus embedding depends on: the model fingerprint (weights, configuration
    and interventions in force; ``fingerprint`` if already known), dtype, ``max_length``
    and the dataset fingerprint."""
    return "|".join(str(v) for v in (fingerprint or model.fingerprint, model.dtype,
                                     model.max_length, dataset.fingerprint))


def embedding_folder(model, dataset, cache_dir: str | Path | None = None,
                     fingerprint: str | None = None) -> Path:
    """The cache folder of ``model``'s document vectors of ``dataset``."""
    return cache_folder("embeddings", embedding_key(model, dataset, fingerprint), cache_dir)
