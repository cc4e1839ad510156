"""Private: the corpus embedding cache behind :func:`irlens.retrieval.encode_corpus`.

One folder per (model, dataset) key::

    embeddings.npy   the finished matrix [n_docs, dim], float32, rows in doc_ids order
    manifest.json    fingerprints, plus the matrix's shape and checksum (blake2b)
    partial.npy      while encoding: the matrix being filled, a numpy memory map
    progress.json    while encoding: the saved chunks of partial.npy (documents longest
                     first), each with its end, truncation count and checksum
    .lock            a file lock: one writer per entry; a second run waits, then reads

Documents are encoded longest first (batches of similar length pad little, as in
sentence-transformers) and written straight into their rows of the memory map, so the
matrix is never held twice. Progress is saved after every chunk; chunks start at one
batch and double up to ``chunk_size``, so a run killed in its first minutes (the longest
documents come first) keeps what it finished. A resumed run verifies every saved chunk's
checksum first and recomputes from the first chunk that differs (a partial matrix edited,
shifted or half-written after its progress was saved is never trusted). Every load checks
the shape and checksum; a damaged entry is recomputed with a warning. Own code rather
than a library's: sentence-transformers encodes in memory only, with no resume, lock or
integrity check.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from irlens._io import write_json
from irlens._warn import warn
from irlens.executors import Executor
from irlens.models import BiEncoder

__all__ = ["FINAL", "MANIFEST", "checksum", "encode_cached", "load_verified"]

FINAL = "embeddings.npy"
MANIFEST = "manifest.json"
PARTIAL = "partial.npy"
PROGRESS = "progress.json"
_HASH_ROWS_BYTES = 64 << 20


def checksum(matrix: np.ndarray) -> str:
    """blake2b of the matrix bytes, read in blocks (a memory map stays on disk)."""
    digest = hashlib.blake2b(digest_size=16)
    step = max(1, _HASH_ROWS_BYTES // max(1, matrix[:1].nbytes))
    for start in range(0, len(matrix), step):
        digest.update(np.ascontiguousarray(matrix[start : start + step]).data)
    return f"blake2b:{digest.hexdigest()}"


def load_verified(folder: Path, n_docs: int, spot_check=None) -> np.ndarray | None:
    """The cached matrix if its shape and checksum match its manifest, else None (a
    damaged entry is removed with a warning, so the caller recomputes it).

    An entry from an older irlens has no checksum: ``spot_check(matrix)`` (re-encode a few
    rows and compare) decides, and a passing entry gets its checksum recorded.
    """
    final, manifest_path = folder / FINAL, folder / MANIFEST
    if not final.is_file():
        return None
    problem = None
    try:
        manifest = json.loads(manifest_path.read_text())
        matrix = np.load(final, mmap_mode="c")
        expected = manifest.get("shape", [n_docs, *matrix.shape[1:]])
        if list(matrix.shape) != expected or matrix.shape[0] != n_docs:
            problem = f"shape {list(matrix.shape)}, expected {expected}"
        elif "checksum" not in manifest:
            if spot_check is None or not spot_check(matrix):
                problem = "no checksum recorded (an older irlens wrote it) and rows differ"
            else:
                write_json(manifest_path, {**manifest, "shape": list(matrix.shape),
                                           "dtype": str(matrix.dtype),
                                           "checksum": checksum(matrix)})
        elif checksum(matrix) != manifest["checksum"]:
            problem = "checksum mismatch (the file changed after it was written)"
    except (OSError, ValueError, EOFError) as err:  # truncated, missing manifest, bad JSON
        problem = f"{type(err).__name__}: {err}".splitlines()[0]
    if problem is None:
        return matrix
    warn(f"embedding cache {folder} is damaged ({problem}); recomputing it")
    for path in (final, manifest_path):
        path.unlink(missing_ok=True)
    return None


def encode_cached(model: BiEncoder, texts: list[str], folder: Path, manifest: dict[str, Any],
                  batch_size: int, chunk_size: int, progress: bool, desc: str,
                  executor: Executor | None = None) -> np.ndarray:
    """Load the entry in ``folder``, or encode ``texts`` into it (resuming a partial run);
    ``executor``: where the chunks are encoded (``None``: in this process).

    Holds the entry's lock while it works: a concurrent run on the same entry waits, then
    loads the published matrix instead of encoding it again.
    """
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"irlens: another run is encoding this corpus ({folder}); waiting for it",
              file=sys.stderr)
        lock.acquire()
    try:
        matrix = load_verified(folder, len(texts), lambda m: _rows_agree(model, texts, m))
        if matrix is not None:
            return matrix
        _encode_into(model, texts, folder, batch_size, chunk_size, progress, desc, executor)
        partial = np.load(folder / PARTIAL, mmap_mode="r")
        write_json(folder / MANIFEST, {**manifest, "shape": list(partial.shape),
                                       "dtype": str(partial.dtype),
                                       "checksum": checksum(partial)})
        del partial
        os.replace(folder / PARTIAL, folder / FINAL)
        (folder / PROGRESS).unlink(missing_ok=True)
        return np.load(folder / FINAL, mmap_mode="c")
    finally:
        lock.release()


def _rows_agree(model: BiEncoder, texts: list[str], matrix: np.ndarray, n: int = 8) -> bool:
    """Whether ``n`` evenly spaced rows equal a fresh encoding of their texts: each error
    must be under 1% of the typical distance between different rows (batch padding moves
    floats a little; a shifted or foreign row is as far as another document)."""
    rows = sorted({round(i * (len(texts) - 1) / max(1, n - 1)) for i in range(n)})
    fresh = model.encode_batch([texts[i] for i in rows], "doc")[0].numpy().astype(np.float64)
    stored = np.asarray(matrix[rows], dtype=np.float64)
    errors = np.linalg.norm(fresh - stored, axis=1)
    apart = np.linalg.norm(fresh[:, None] - fresh[None], axis=-1)[~np.eye(len(rows), dtype=bool)]
    scale = np.median(apart) if apart.size and np.median(apart) > 0 else \
        np.linalg.norm(fresh, axis=1).mean()
    return bool(np.all(errors <= 0.01 * scale + 1e-6))


def _encode_into(model: BiEncoder, texts: list[str], folder: Path, batch_size: int,
                 chunk_size: int, progress: bool, desc: str,
                 executor: Executor | None = None) -> None:
    """Fill ``partial.npy`` row by row, saving progress after every chunk."""
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    shape = (len(texts), model._dim())
    chunks = _verified_chunks(folder, shape, order)
    if chunks is None:
        matrix = open_memmap(folder / PARTIAL, mode="w+", dtype=np.float32, shape=shape)
        chunks = []
        matrix.flush()
        _save_progress(folder, shape, chunks)
    else:
        matrix = open_memmap(folder / PARTIAL, mode="r+")
        _save_progress(folder, shape, chunks)  # chunks that failed their checksum are gone
    done = chunks[-1]["end"] if chunks else 0
    truncated = sum(c["truncated"] for c in chunks)
    bar = tqdm(total=len(order), initial=done, desc=desc, unit="doc", disable=not progress)
    if executor is not None:  # e.g. Ray workers encode the chunks; only this process writes
        done = _encode_remote(executor.encode, model, texts, order, matrix, folder, shape,
                              chunks, batch_size, chunk_size, bar)
        truncated = sum(c["truncated"] for c in chunks)
    size = batch_size
    while done < len(order):
        end, cut = min(len(order), done + size), 0
        for start in range(done, end, batch_size):
            idx = order[start : min(end, start + batch_size)]
            vectors, n_cut = model.encode_batch([texts[i] for i in idx], "doc")
            matrix[idx] = vectors.numpy()
            cut += n_cut
            bar.update(len(idx))
        _add_chunk(folder, shape, chunks, matrix, order, done, end, cut)
        done, truncated = end, truncated + cut
        size = min(max(chunk_size, batch_size), size * 2)
    bar.close()
    del matrix
    model._warn_truncated(truncated, len(texts), "documents")


def _add_chunk(folder: Path, shape: tuple[int, int], chunks: list[dict[str, Any]],
               matrix: np.ndarray, order: list[int], start: int, end: int, cut: int) -> None:
    """Flush rows ``order[start:end]`` to disk, then record them as a saved chunk with
    their checksum (the progress file only ever names rows that are on disk)."""
    matrix.flush()
    chunks.append({"end": end, "truncated": cut,
                   "checksum": checksum(matrix[order[start:end]])})
    _save_progress(folder, shape, chunks)


def _save_progress(folder: Path, shape: tuple[int, int], chunks: list[dict[str, Any]]) -> None:
    write_json(folder / PROGRESS, {"shape": list(shape),
                                   "done": chunks[-1]["end"] if chunks else 0,
                                   "truncated": sum(c["truncated"] for c in chunks),
                                   "chunks": chunks})


def _encode_remote(remote, model: BiEncoder, texts: list[str], order: list[int],
                   matrix: np.ndarray, folder: Path, shape: tuple[int, int],
                   chunks: list[dict[str, Any]], batch_size: int, chunk_size: int,
                   bar) -> int:
    """Send the rows after the saved chunks to Ray workers; write each returned chunk into
    the memmap, and record chunks over the finished prefix only (a crash then resumes
    exactly as a single-process run would). Returns how many rows are done."""
    done = chunks[-1]["end"] if chunks else 0
    size = max(chunk_size, batch_size)
    jobs = [(s, [texts[i] for i in order[s : s + size]]) for s in range(done, len(order), size)]
    finished: dict[int, tuple[int, int]] = {}
    for start, (vectors, cut) in remote(model, jobs, batch_size):
        matrix[order[start : start + len(vectors)]] = vectors
        finished[start] = (len(vectors), cut)
        bar.update(len(vectors))
        while done in finished:
            rows, cut = finished.pop(done)
            _add_chunk(folder, shape, chunks, matrix, order, done, done + rows, cut)
            done += rows
    return done


def _verified_chunks(folder: Path, shape: tuple[int, int],
                     order: list[int]) -> list[dict[str, Any]] | None:
    """The saved chunks of a partial run whose rows still match their checksums, up to the
    first that does not (a warning names it); None when there is nothing to resume."""
    partial, progress = folder / PARTIAL, folder / PROGRESS
    if not (partial.is_file() and progress.is_file()):
        return None
    try:
        state = json.loads(progress.read_text())
        matrix = np.load(partial, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        warn(f"embedding cache {folder}: the partial matrix cannot be read ("
             f"{type(err).__name__}); encoding from the start")
        return None
    if state.get("shape") != list(shape) or tuple(matrix.shape) != shape:
        return None
    chunks = state.get("chunks")
    if not isinstance(chunks, list):  # an older irlens: progress without checksums
        if state.get("done"):
            warn(f"embedding cache {folder}: the partial matrix has no chunk checksums (an "
                 "older irlens wrote it); encoding from the start")
        return None
    good, start = [], 0
    for chunk in chunks:
        end = chunk.get("end") if isinstance(chunk, dict) else None
        if not (isinstance(end, int) and start < end <= len(order)) or \
                checksum(matrix[order[start:end]]) != chunk.get("checksum"):
            warn(f"embedding cache {folder}: a saved chunk of the partial matrix changed "
                 f"after it was written (checksum mismatch); recomputing from document "
                 f"{start} of {len(order)}")
            break
        good.append(chunk)
        start = end
    del matrix
    return good
