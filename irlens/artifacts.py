"""One artefact protocol and one resume for every irlens result and study.

An *artefact* is a folder::

    manifest.json        kind, config, model/data fingerprints, hook names, versions
    arrays.safetensors   the large arrays (optional)
    table.parquet        the tidy table from ``to_frame()`` (optional)

Every result class subclasses :class:`Artifact` (a dataclass mixin): it declares which
fields are arrays and gets ``save``/``load``/``to_frame``/a short ``repr`` for free.
Folders are written under a temporary name and renamed into place, so a crash never
leaves a half-written artefact under the final name.

A *study* is a config plus job keys (:class:`Store`): :func:`resume` runs only the jobs
whose artefact is missing, and refuses to mix rows from another config, model or
dataset: the run says what changed and stops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from irlens.errors import IrlensError
from irlens.executors import Executor

__all__ = ["Artifact", "Manifest", "Store", "atomic_dir", "check_compatible",
           "jsonable", "library_versions", "make_manifest", "resume"]

T = TypeVar("T", bound="Artifact")
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"
TABLE = "table.parquet"


def library_versions() -> dict[str, str]:
    """Versions of irlens and the libraries that change numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("irlens", "torch", "transformers", "sentence-transformers", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@dataclasses.dataclass
class Manifest:
    """What produced an artefact: enough to refuse mixing it with anything else."""

    kind: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_id: str | None = None
    model_fingerprint: str | None = None
    data_name: str | None = None
    data_fingerprint: str | None = None
    hooks: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=library_versions)
    created: str = dataclasses.field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - names
        extra = {**payload.get("extra", {}), **{k: payload[k] for k in unknown}}
        return cls(**{k: v for k, v in payload.items() if k in names and k != "extra"},
                   extra=extra)

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise IrlensError(f"{folder} is not an irlens artefact (no {MANIFEST}); pass the "
                              "folder an irlens command wrote")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise IrlensError(f"{path} is damaged ({err}); delete the folder and rerun") from None

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST
        _write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def make_manifest(kind: str, config: Mapping[str, Any] | None = None, *, model=None,
                  data=None, hooks: Iterable[str] = (), **extra: Any) -> Manifest:
    """A manifest for ``kind``; ``model`` (a Retriever) and ``data`` (a Dataset) give the
    fingerprints."""
    return Manifest(
        kind=kind, config=jsonable(dict(config or {})),
        model_id=getattr(model, "model_id", None),
        model_fingerprint=getattr(model, "fingerprint", None),
        data_name=None if data is None else Path(str(getattr(data, "source", "") or "")).name
        or None,
        data_fingerprint=getattr(data, "fingerprint", None),
        hooks=list(hooks), extra=jsonable(extra))


def check_compatible(manifest: Manifest, *, model=None, data=None, kind: str | None = None,
                     config: Mapping[str, Any] | None = None, what: str = "artefact") -> None:
    """Raise a one-line :class:`IrlensError` if ``manifest`` was made by another kind,
    model, dataset or config than the ones given (``None`` means: do not check)."""
    problems = []
    if kind is not None and manifest.kind != kind:
        problems.append(f"it is a '{manifest.kind}', not a '{kind}'")
    if model is not None and manifest.model_fingerprint is not None \
            and manifest.model_fingerprint != model.fingerprint:
        problems.append(f"it was made by model {manifest.model_id} "
                        f"({manifest.model_fingerprint}), not {model.model_id} "
                        f"({model.fingerprint})")
    if data is not None and manifest.data_fingerprint is not None \
            and manifest.data_fingerprint != data.fingerprint:
        problems.append(f"it was made on other data ({manifest.data_name})")
    if config is not None:
        changed = config_diff(manifest.config, jsonable(dict(config)))
        if changed:
            problems.append(f"its config differs in {', '.join(changed)}")
    if problems:
        raise IrlensError(f"this {what} does not fit: {'; '.join(problems)}; use a new "
                          "output folder or the matching model, data and config")


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ between two configs (sorted)."""
    keys = set(old) | set(new)
    return sorted(k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>"))


class Artifact:
    """Mixin for result dataclasses: ``save``/``load``/``to_frame``/short ``repr``.

    Subclasses are dataclasses with a ``manifest: Manifest`` field, set ``kind`` and list
    their numpy/torch fields in ``array_fields``; every other field must be JSON-able and
    is stored in the manifest's ``extra['fields']``. Override :meth:`to_frame` for a tidy
    table (it is saved beside the arrays) and :meth:`summary` for the repr.
    """

    kind: ClassVar[str] = "artifact"
    array_fields: ClassVar[tuple[str, ...]] = ()

    def to_frame(self) -> pd.DataFrame:
        """A tidy table of the result (one row per observation)."""
        return pd.DataFrame()

    def summary(self) -> str:
        """A few words for the repr, e.g. ``'12 pairs, gap 0.3%'``."""
        shapes = [f"{n}{list(np.shape(getattr(self, n)))}" for n in self.array_fields
                  if getattr(self, n) is not None]
        return ", ".join(shapes)

    def __repr__(self) -> str:
        manifest: Manifest = self.manifest  # type: ignore[attr-defined]
        model = f" model={manifest.model_id}" if manifest.model_id else ""
        return f"<{type(self).__name__} {self.summary()}{model}>"

    def save(self, path: str | Path) -> Path:
        """Write the artefact folder atomically (replacing an old one) and return it."""
        path = Path(path)
        manifest: Manifest = self.manifest  # type: ignore[attr-defined]
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                  if f.name not in self.array_fields and f.name != "manifest"}
        manifest = dataclasses.replace(manifest, kind=self.kind,
                                       extra={**manifest.extra, "fields": jsonable(fields)})
        arrays = {n: _as_numpy(getattr(self, n)) for n in self.array_fields
                  if getattr(self, n) is not None}
        with atomic_dir(path) as tmp:
            if arrays:
                from safetensors.numpy import save_file

                save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                          str(tmp / ARRAYS))
            frame = self.to_frame()
            if len(frame.columns):
                frame.to_parquet(tmp / TABLE, index=False)
            manifest.write(tmp)
        return path

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read an artefact folder written by :meth:`save` (the kind must match)."""
        path = Path(path)
        manifest = Manifest.read(path)
        check_compatible(manifest, kind=cls.kind, what=f"folder {path}")
        arrays: dict[str, np.ndarray] = {}
        if (path / ARRAYS).is_file():
            from safetensors.numpy import load_file

            try:
                arrays = load_file(str(path / ARRAYS))
            except Exception as err:  # safetensors raises its own types on damaged files
                raise IrlensError(f"{path / ARRAYS} is damaged ({err}); rerun to "
                                  "recompute it") from None
        fields = dict(manifest.extra.get("fields", {}))
        extra = {k: v for k, v in manifest.extra.items() if k != "fields"}
        manifest = dataclasses.replace(manifest, extra=extra)
        kwargs = {**fields, **{n: arrays.get(n) for n in cls.array_fields}}
        return cls._from_saved(manifest=manifest, **kwargs)

    @classmethod
    def _from_saved(cls: type[T], **kwargs: Any) -> T:
        """Build from saved fields; override to convert JSON lists back to tuples etc."""
        return cls(**kwargs)


class Store:
    """A study folder: one manifest (kind, config, fingerprints) and one artefact per job.

    ``Store(folder, manifest)`` claims an empty folder or reopens one made with the same
    kind, config, model and data; anything else is refused with what changed, unless no
    job of it has finished (a run that failed early never blocks the corrected rerun).
    """

    def __init__(self, folder: str | Path, manifest: Manifest):
        self.folder = Path(folder)
        self.manifest = manifest
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / MANIFEST).is_file():
            old = Manifest.read(self.folder)
            problems = []
            if old.kind != manifest.kind:
                problems.append(f"it holds a '{old.kind}', not a '{manifest.kind}'")
            if old.model_fingerprint != manifest.model_fingerprint:
                problems.append(f"it was made by model {old.model_id} "
                                f"({old.model_fingerprint})")
            if old.data_fingerprint != manifest.data_fingerprint:
                problems.append(f"it was made on other data ({old.data_name})")
            changed = config_diff(old.config, manifest.config)
            if changed:
                problems.append(f"its config differs in {', '.join(changed)}")
            if problems and self.holds_work():
                raise IrlensError(f"{self.folder} cannot be resumed: {'; '.join(problems)}; "
                                  "use a new output folder, or delete this one to start over")
            if problems:  # a run that failed before its first job: nothing to mix, reuse
                manifest.write(self.folder)
        else:
            manifest.write(self.folder)

    def job_path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise IrlensError(f"job key '{key}' is not a plain name")
        return self.folder / "jobs" / key

    def done(self, key: str) -> bool:
        return (self.job_path(key) / MANIFEST).is_file()

    def holds_work(self) -> bool:
        """A finished job, or any other file a run wrote (a checkpoint, an output), besides
        the manifest, the run's own config copy and lock files."""
        skip = {MANIFEST, "study.yaml"}
        return bool(self.finished()) or any(
            p.is_file() and not p.name.startswith(".")
            and not (p.parent == self.folder and p.name in skip)
            for p in self.folder.rglob("*"))

    def finished(self) -> list[str]:
        jobs = self.folder / "jobs"
        if not jobs.is_dir():
            return []
        return sorted(p.name for p in jobs.iterdir() if (p / MANIFEST).is_file())

    def save(self, key: str, artifact: Artifact) -> Path:
        return artifact.save(self.job_path(key))

    def load(self, key: str, cls: type[T]) -> T:
        return cls.load(self.job_path(key))


def resume(store: Store, jobs: Mapping[str, Callable[[], Artifact]], cls: type[T], *,
           progress: bool = False, desc: str = "jobs",
           executor: Executor | None = None) -> dict[str, T]:
    """Run every job whose artefact is missing, save each as it finishes, and return all
    results by key (finished ones are loaded, never recomputed). ``executor``: where the
    jobs run (:mod:`irlens.executors`; ``None``: in this process, in order); this process
    alone saves their results."""
    from tqdm.auto import tqdm

    todo = [k for k in jobs if not store.done(k)]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc,
               disable=not progress)
    finished = executor.run({k: jobs[k] for k in todo}) if executor is not None and todo \
        else ((k, jobs[k]()) for k in todo)
    for key, result in finished:
        store.save(key, result)
        bar.update(1)
    bar.close()
    return {k: store.load(k, cls) for k in jobs}


# -- atomic writes ------------------------------------------------------------------------
class atomic_dir:  # noqa: N801 - used like a function: ``with atomic_dir(path) as tmp``
    """Build a folder under a unique temporary name beside ``path``; on success it replaces
    ``path`` (the old one is removed only after the new one is complete)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, old)
        try:
            os.replace(self.tmp, self.path)
        except BaseException:  # the new folder could not be published: put the old back
            if old is not None:
                os.replace(old, self.path)
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, tuples and paths converted."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
