"""Activation cache: a retriever's vectors written once to disk, shard by shard.

A cache is an irlens :class:`~irlens.artifacts.Store` folder (``manifest.json`` with the
model fingerprint, the datasets' fingerprints and the hook point) whose jobs are shards::

    jobs/<source>-<side>-00000/arrays.safetensors   x [rows, dim] float32
    jobs/<source>-<side>-00000/table.parquet        source, side, id, position

Rows are pooled query/document embeddings by default (reusing the vectors that
:func:`irlens.retrieval.encode_corpus` already cached, read through a memory map), or the
token activations of any hook point (``layer.3.resid``: one row per non-padding token).
Shards are written atomically and a rerun skips finished ones, so an interrupted run
resumes; only one shard is ever in memory while writing, and readers stream shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, Store, check_compatible, make_manifest
from irlens.cache import embedding_folder
from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.sae.heldout import corpus_fingerprint, query_hash

__all__ = ["ActivationShard", "Activations", "cache_activations", "cache_array", "hook_width"]

KIND = "sae-activations"
SIDES = ("doc", "query")


@dataclasses.dataclass(repr=False)
class ActivationShard(Artifact):
    """One shard: ``x`` [rows, dim] and, per row, where it came from."""

    manifest: Manifest
    x: np.ndarray
    source: str
    side: str
    ids: list[str]
    positions: list[int]

    kind: ClassVar[str] = "sae-activation-shard"
    array_fields: ClassVar[tuple[str, ...]] = ("x",)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"source": self.source, "side": self.side, "id": self.ids,
                             "position": self.positions})


BUFFER_BYTES = 256 * 2**20  # the shuffle buffer of Activations.batches


class Activations:
    """A finished activation cache, read shard by shard (never all rows at once)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        check_compatible(self.manifest, kind=KIND, what=f"activation cache {self.folder}")
        self.keys: list[str] = list(self.manifest.extra.get("shards", []))
        missing = [k for k in self.keys if not (self._path(k) / "manifest.json").is_file()]
        if not self.keys or missing:
            raise IrlensError(f"activation cache {self.folder} is unfinished "
                              f"({len(missing)} shards missing); rerun cache_activations "
                              "(irlens sae train) with the same options to finish it")
        self.rows_per_shard: list[int] = list(self.manifest.extra["rows"])
        self.dim = int(self.manifest.extra["dim"])

    def _path(self, key: str) -> Path:
        return self.folder / "jobs" / key

    def __len__(self) -> int:
        return int(sum(self.rows_per_shard))

    def __repr__(self) -> str:
        return (f"<Activations {len(self)} rows x {self.dim}, {len(self.keys)} shards, "
                f"model={self.manifest.model_id}, hook={self.hook}>")

    @property
    def hook(self) -> str:
        return str(self.manifest.config.get("hook") or "pooled")

    def check_model(self, model) -> None:
        """Refuse a model other than the one that made the cache (one-line error)."""
        check_compatible(self.manifest, model=model, what=f"activation cache {self.folder}")

    def shard(self, key: str) -> np.ndarray:
        from safetensors.numpy import load_file

        return load_file(str(self._path(key) / "arrays.safetensors"))["x"]

    def shards(self) -> Iterator[np.ndarray]:
        for key in self.keys:
            yield self.shard(key)

    def index(self) -> pd.DataFrame:
        """source, side, id, position of every row, in cache order."""
        return pd.concat([pd.read_parquet(self._path(k) / "table.parquet") for k in self.keys],
                         ignore_index=True)

    def sources(self) -> list[str]:
        """The source (dataset) of each shard, in shard order."""
        return [key.rsplit("-", 2)[0] for key in self.keys]

    def _epoch_rows(self, rng: np.random.Generator, balance: bool) -> list[np.ndarray | None]:
        """Rows each shard gives to one epoch: all (``None``) or, balanced, an equal
        share of ``len(self)`` per source (small sources repeat, large ones subsample)."""
        if not balance:
            return [None] * len(self.keys)
        sources = self.sources()
        names = sorted(set(sources))
        quota = len(self) // len(names)
        picks: list[np.ndarray | None] = [None] * len(self.keys)
        for name in names:
            shards = [i for i, s in enumerate(sources) if s == name]
            sizes = np.array([self.rows_per_shard[i] for i in shards])
            total = int(sizes.sum())
            reps, rest = divmod(quota, total)
            rows = np.concatenate([np.tile(np.arange(total), reps),
                                   rng.choice(total, rest, replace=False)])
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            for j, i in enumerate(shards):
                mine = rows[(rows >= offsets[j]) & (rows < offsets[j + 1])]
                picks[i] = mine - offsets[j]
        return picks

    def batches(self, batch_size: int, *, seed: int = 0, epoch: int = 0,
                buffer_shards: int | None = None, balance: bool = False
                ) -> Iterator[torch.Tensor]:
        """Shuffled float32 batches, ``ceil(rows / batch_size)`` of them, all full: shards in
        random order, rows shuffled within a buffer of ``buffer_shards`` shards (the usual
        streaming shuffle; by default as many as fit in 256 MB, so a cache that fits is
        shuffled whole: a smaller buffer measurably slows training, see docs/sae.md); the
        last batch is topped up with random rows.

        ``balance=True`` draws every source (dataset) equally often per epoch, so a large
        collection does not crowd out small ones; the epoch keeps its length.
        """
        if buffer_shards is None:
            largest = max(self.rows_per_shard) * self.dim * 4
            buffer_shards = max(1, BUFFER_BYTES // max(largest, 1))
        rng = np.random.default_rng([seed, epoch])
        picks = self._epoch_rows(rng, balance)
        order = rng.permutation(len(self.keys))
        rest = np.empty((0, self.dim), dtype=np.float32)
        n_batches, served = math.ceil(len(self) / batch_size), 0
        for start in range(0, len(order), buffer_shards):
            block = [self.shard(self.keys[i]) if picks[i] is None
                     else self.shard(self.keys[i])[picks[i]]
                     for i in order[start:start + buffer_shards]]
            pool = np.concatenate([rest, *block])
            pool = pool[rng.permutation(len(pool))]
            n_full = len(pool) // batch_size * batch_size
            for b in range(0, n_full, batch_size):
                if served == n_batches:
                    return
                served += 1
                yield torch.from_numpy(np.ascontiguousarray(pool[b:b + batch_size]))
            rest = pool[n_full:]
        if served < n_batches:  # a last full batch: the leftover rows plus random others
            fill = max(0, min(batch_size, len(self)) - len(rest))
            extra = self.shard(self.keys[int(order[-1])])
            extra = extra[rng.choice(len(extra), min(fill, len(extra)), replace=False)]
            yield torch.from_numpy(np.ascontiguousarray(np.concatenate([rest, extra])))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Up to ``n`` random rows (for initialisation and quick statistics)."""
        rng = np.random.default_rng(seed)
        share = min(1.0, n / max(len(self), 1))
        parts = []
        for x in self.shards():
            take = rng.random(len(x)) < share
            parts.append(x[take])
        return torch.from_numpy(np.concatenate(parts)[:n])


def cache_activations(
    model,
    datasets: Sequence[Dataset],
    out: str | Path,
    *,
    hook: str | None = None,
    sides: Sequence[str] = SIDES,
    shard_size: int = 4096,
    batch_size: int = 32,
    embedding_cache: str | Path | None = None,
    progress: bool = True,
) -> Activations:
    """Write the activations of every document and query of ``datasets`` to ``out``.

    ``hook=None`` stores pooled embeddings (documents reuse the
    :func:`~irlens.retrieval.encode_corpus` cache under ``embedding_cache`` when it holds
    them); a hook name such as ``layer.3.resid`` stores one row per non-padding token.
    A rerun finishes an interrupted cache; a folder made by another model, other data or
    other options is refused.
    """
    from irlens.models import BiEncoder

    bad = [s for s in sides if s not in SIDES]
    if bad or not sides:
        raise IrlensError(f"unknown side(s) {bad or sides}; use doc and/or query")
    if not datasets:
        raise IrlensError("no datasets given; pass at least one BEIR folder")
    if shard_size < 1 or batch_size < 1:
        raise IrlensError("shard_size and batch_size must be positive")
    if not isinstance(model, BiEncoder):
        raise IrlensError(f"SAEs here are trained on bi-encoder vectors, got "
                          f"{type(model).__name__}; load a bi-encoder")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise IrlensError(f"dataset listed twice in {', '.join(names)}; list each once")
    if hook is not None:
        hook_width(model, hook)  # an unknown hook or attention maps fail here, in one line
    # what the rows are: recorded in every SAE trained on them (irlens.sae.heldout)
    config = {"hook": hook, "sides": list(sides), "shard_size": shard_size,
              "sources": [{"name": d.name, "fingerprint": d.fingerprint,
                           "queries": _queries_fingerprint(d),
                           "corpus": corpus_fingerprint(d) if "doc" in sides else None,
                           "docs": len(d.corpus) if "doc" in sides else 0,
                           "split": d.split,
                           "query_hashes": sorted(query_hash(t) for t in d.queries.values())
                           if "query" in sides else []}
                          for d in datasets]}
    fingerprint = model.fingerprint
    manifest = dataclasses.replace(
        make_manifest(KIND, config, hooks=[hook] if hook else []),
        model_id=model.model_id, model_fingerprint=fingerprint)
    store = Store(out, manifest)
    plan: list[tuple[str, Dataset, str, list[str]]] = []
    for data in datasets:
        for side in sides:
            ids = data.doc_ids if side == "doc" else data.query_ids
            for i, start in enumerate(range(0, len(ids), shard_size)):
                plan.append((f"{data.name}-{side}-{i:05d}", data, side,
                             ids[start:start + shard_size]))
    from tqdm.auto import tqdm

    todo = [p for p in plan if not store.done(p[0])]
    bar = tqdm(total=sum(len(p[3]) for p in plan), desc=f"cache {hook or 'pooled'}",
               unit="text", disable=not progress)
    bar.update(sum(len(p[3]) for p in plan if store.done(p[0])))
    pooled_docs: dict[str, np.ndarray | None] = {}
    for key, data, side, ids in todo:
        if hook is None:
            if side == "doc" and data.name not in pooled_docs:
                pooled_docs[data.name] = _cached_doc_vectors(model, data, embedding_cache,
                                                             fingerprint)
            x = _pooled(model, data, side, ids, batch_size, pooled_docs.get(data.name))
            positions = [-1] * len(ids)
            row_ids = list(ids)
        else:
            x, row_ids, positions = _tokens(model, data, side, ids, batch_size, hook)
        store.save(key, ActivationShard(manifest=make_manifest("sae-activation-shard"),
                                        x=x.astype(np.float32), source=data.name, side=side,
                                        ids=row_ids, positions=positions))
        bar.update(len(ids))
    bar.close()
    rows, dim = [], 0
    for key, *_ in plan:
        meta = Manifest.read(store.job_path(key))
        n = len(meta.extra["fields"]["ids"])
        rows.append(n)
    if plan:
        from safetensors import safe_open

        with safe_open(str(store.job_path(plan[0][0]) / "arrays.safetensors"), "np") as fh:
            dim = int(fh.get_slice("x").get_shape()[1])
    final = dataclasses.replace(manifest, extra={**manifest.extra, "dim": dim,
                                                 "shards": [p[0] for p in plan],
                                                 "rows": rows})
    final.write(store.folder)
    return Activations(store.folder)


def hook_width(model, hook: str | None) -> int:
    """Width of the rows a cache of ``hook`` holds (the pooled vector's size for
    ``None``): the FFN's intermediate size for ``ffn.pre``/``ffn.post``, the hidden size
    for the residual stream, ``ffn.out`` and the concatenated heads (``attn.heads``)."""
    if hook is None:
        return int(model.doc_encoder.config.hidden_size)
    from irlens.hooks import hook_points

    points = hook_points(model)
    if hook not in points:
        raise IrlensError(f"unknown hook point '{hook}'; use one of "
                          f"{', '.join(list(points)[:6])}, ... (irlens hooks)")
    point = points[hook]
    if point.kind == "attn.probs":
        raise IrlensError(f"hook point '{hook}' holds attention maps, not token rows; use "
                          "a resid, ffn or attn.heads hook point")
    if point.kind == "attn.heads":
        return int(points["embeddings"].units)
    return int(point.units)


def cache_array(x: np.ndarray | torch.Tensor, out: str | Path, *, source: str = "array",
                shard_size: int = 4096, ids: Sequence[str] | None = None,
                model=None) -> Activations:
    """An activation cache of given vectors ``x`` [rows, dim]: for vectors made elsewhere
    (pass the ``model`` that made them to record its fingerprint) and synthetic data."""
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        raise IrlensError(f"expected a non-empty [rows, dim] array, got shape {x.shape}")
    ids = [str(i) for i in range(len(x))] if ids is None else list(ids)
    digest = hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()
    manifest = make_manifest(KIND, {"hook": None, "source": source, "sha1": digest,
                                    "shard_size": shard_size}, model=model)
    store = Store(out, manifest)
    keys = []
    for i, start in enumerate(range(0, len(x), shard_size)):
        key = f"{source}-vec-{i:05d}"
        keys.append(key)
        if not store.done(key):
            part = x[start:start + shard_size]
            store.save(key, ActivationShard(
                manifest=make_manifest("sae-activation-shard"), x=part, source=source,
                side="vec", ids=ids[start:start + shard_size], positions=[-1] * len(part)))
    rows = [len(x[s:s + shard_size]) for s in range(0, len(x), shard_size)]
    dataclasses.replace(manifest, extra={"dim": x.shape[1], "shards": keys, "rows": rows}
                        ).write(store.folder)
    return Activations(store.folder)


def _queries_fingerprint(data: Dataset) -> str:
    digest = hashlib.sha1()
    for qid, text in data.queries.items():
        digest.update(f"{qid}\x1f{text}\x1e".encode())
    return digest.hexdigest()


def _cached_doc_vectors(model, data: Dataset, cache_dir, fingerprint: str
                        ) -> np.ndarray | None:
    path = embedding_folder(model, data, cache_dir, fingerprint) / "embeddings.npy"
    if not path.is_file():
        return None
    vectors = np.load(path, mmap_mode="r")
    return vectors if vectors.shape[0] == len(data.corpus) else None


def _pooled(model, data: Dataset, side: str, ids: list[str], batch_size: int,
            doc_vectors: np.ndarray | None) -> np.ndarray:
    if side == "doc" and doc_vectors is not None:
        row = {d: i for i, d in enumerate(data.doc_ids)}
        return np.asarray(doc_vectors[[row[d] for d in ids]], dtype=np.float32)
    if side == "doc":
        return model.encode_docs(data.doc_texts(ids), batch_size=batch_size).numpy()
    return model.encode_queries(data.query_texts(ids), batch_size=batch_size).numpy()


@torch.no_grad()
def _tokens(model, data: Dataset, side: str, ids: list[str], batch_size: int, hook: str
            ) -> tuple[np.ndarray, list[str], list[int]]:
    from irlens.hooks import capture

    texts = data.doc_texts(ids) if side == "doc" else data.query_texts(ids)
    parts, row_ids, positions = [], [], []
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize(texts[start:start + batch_size], side)
        with capture(model, hook, side=side) as seen:
            model.forward_embeds(batch)
        acts = seen[hook]
        mask = batch.attention_mask.bool()
        parts.append(acts[mask].float().cpu().numpy())
        for j, row in enumerate(mask.cpu()):
            where = torch.nonzero(row).flatten().tolist()
            row_ids.extend([ids[start + j]] * len(where))
            positions.extend(where)
    return np.concatenate(parts), row_ids, positions
