"""What a trained model read: sha1 fingerprints of its training files, and the leak check.

A trainer writes ``irlens_training_data.json`` into the model folder: ``{"files":
[{"path", "role", "sha1"}]}`` for every dataset file it read (corpus, queries, qrels,
triples TSV). :func:`leak_warning` compares the files an evaluation reads (a BEIR
folder's corpus, queries and split qrels) with them by content, so a copy or a renamed
folder is caught too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PROVENANCE_FILE", "dataset_files", "file_sha1", "leak_warning",
           "read_provenance", "training_files", "warn_if_trained_on"]

PROVENANCE_FILE = "irlens_training_data.json"
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha1(path: str | Path) -> str:
    """sha1 of a file's bytes (cached by path, size and modification time)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha1()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def dataset_files(data: str | Path, split: str) -> list[tuple[str, Path]]:
    """(role, path) of the files that loading ``data`` (a BEIR folder with ``split``, or a
    triples TSV) reads; files that do not exist are left out."""
    path = Path(data)
    if path.is_file():
        return [("triples", path)]
    found = []
    for role, stem in (("corpus", "corpus"), ("queries", "queries")):
        found += [(role, f) for f in sorted(path.glob(f"{stem}.jsonl*")) if f.is_file()][:1]
    qrels = path / "qrels" / f"{split}.tsv"
    if qrels.is_file():
        found.append((f"qrels:{split}", qrels))
    return found


def training_files(sources: Iterable[str | Path], split: str) -> list[dict[str, str]]:
    """The ``files`` record of every training source."""
    return [{"path": str(f), "role": role, "sha1": file_sha1(f)}
            for src in sources for role, f in dataset_files(src, split)]


def read_provenance(model_dir: str | Path) -> list[dict[str, str]]:
    """The recorded training files of a model folder ([] when none are recorded)."""
    from irlens._io import read_json

    path = Path(model_dir) / PROVENANCE_FILE
    return list(read_json(path).get("files", [])) if path.is_file() else []


def leak_warning(model_dir: str | Path | None, data: str | Path, split: str) -> str | None:
    """One line when ``data``'s ``split`` (corpus, queries or judgements) was read in
    training the model in ``model_dir``; None otherwise (or when nothing is recorded)."""
    if model_dir is None or not Path(model_dir).is_dir() or not Path(data).exists():
        return None
    seen = {r["sha1"]: r for r in read_provenance(model_dir)}
    if not seen:
        return None
    hits = [role for role, f in dataset_files(data, split) if file_sha1(f) in seen]
    if not hits:
        return None
    return (f"warning: {Path(model_dir).name} was trained on {', '.join(hits)} of {data} "
            f"({split}); this evaluation is not held out")


def warn_if_trained_on(model: str | Path | None, data: str | Path, split: str) -> str | None:
    """Print :func:`leak_warning`'s line on stderr when ``model`` (a local folder) was
    trained on ``data``'s ``split``; return it."""
    import sys

    if model is None or not Path(model).is_dir():
        return None
    line = leak_warning(model, data, split)
    if line is not None:
        print(line, file=sys.stderr)
    return line
