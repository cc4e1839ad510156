"""Private: resumable, chunked corpus encoding for :func:`irlens.retrieval.encode_corpus`."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from irlens._io import atomic_path
from irlens._warn import warn
from irlens.models import BiEncoder

__all__ = ["encode_in_chunks", "remove_chunks"]


def encode_in_chunks(
    model: BiEncoder,
    texts: list[str],
    parts: Path,
    batch_size: int,
    chunk_size: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Vectors [len(texts), dim] in input order, saving every ``chunk_size`` texts to ``parts``.

    Texts are encoded longest first (batches of similar length pad little, as in
    sentence-transformers); chunks already in ``parts`` are loaded, not re-encoded.
    The caller removes ``parts`` once it has stored the result.
    """
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    parts.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(order), chunk_size)
    todo = [s for s in starts if not (parts / f"{s:09d}.npy").is_file()]

    from tqdm.auto import tqdm

    bar = tqdm(total=len(order), desc=desc, unit="doc", disable=not progress)
    bar.update(len(order) - sum(len(order[s : s + chunk_size]) for s in todo))
    truncated = _Truncations()
    from irlens.distributed import chunk_encoder  # set by irlens.distributed.scale_out

    remote = chunk_encoder()
    if remote is not None:  # Ray workers encode the chunks; this process saves them
        chunks = [(s, [texts[i] for i in order[s : s + chunk_size]]) for s in todo]
        for start, vectors in remote(model, chunks, batch_size):
            with atomic_path(parts / f"{start:09d}.npy") as tmp, tmp.open("wb") as fh:
                np.save(fh, vectors)
            bar.update(len(vectors))
        todo = []
    for start in todo:
        idx = order[start : start + chunk_size]
        batches = []
        with truncated.collect(len(idx)):
            for b in range(0, len(idx), batch_size):  # one call per batch: a live progress bar
                batch = [texts[i] for i in idx[b : b + batch_size]]
                batches.append(model.encode_docs(batch, batch_size=batch_size))
                bar.update(len(batch))
        with atomic_path(parts / f"{start:09d}.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, torch.cat(batches).numpy())
    bar.close()
    truncated.report(model.max_length)

    vectors = np.concatenate([np.load(parts / f"{s:09d}.npy") for s in starts])
    embeddings = np.empty_like(vectors)
    embeddings[order] = vectors
    return embeddings


def remove_chunks(parts: Path) -> None:
    shutil.rmtree(parts, ignore_errors=True)


class _Truncations:
    """Sums the model's per-call "N of M documents ... truncated" warnings into one."""

    _PATTERN = re.compile(r"^(\d+) of \d+ documents were longer than")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    @contextmanager
    def collect(self, n_docs: int) -> Iterator[None]:
        self.total += n_docs
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            match = self._PATTERN.match(str(w.message))
            if match:
                self.count += int(match.group(1))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def report(self, max_length: int) -> None:
        if self.count:
            warn(
                f"{self.count} of {self.total} documents were longer than {max_length} "
                f"tokens and were truncated to {max_length}"
            )
