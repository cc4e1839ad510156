"""Jobs, their results, and the context they run in.

A *job* is one unit of work of one section on one dataset (a corpus-encoding chunk, a
group of attributed pairs, a NIG triplet shard, one pruning evaluation). Its key hashes
everything its result depends on (:attr:`Job.inputs`: model and data fingerprints, the
section's parameters, the keys of the jobs it builds on), so editing the config
invalidates exactly the jobs whose inputs changed. Each result is a
:class:`StudyResult` artefact saved under ``OUT/jobs/<key>/`` (:mod:`irlens.artifacts`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from irlens.artifacts import Artifact, Manifest, jsonable
from irlens.errors import IrlensError

__all__ = ["Context", "Job", "StudyResult", "make_job"]


@dataclasses.dataclass
class Job:
    """One unit of work; ``payload`` is what a worker needs (derived from ``inputs``)."""

    key: str
    section: str
    dataset: str
    part: str
    inputs: dict[str, Any]
    work: float = 1.0  # estimated forward passes, for the plan
    local: bool = False  # cheap: run in the driver, never on a worker
    payload: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)


def make_job(section: str, dataset: str, part: str, inputs: dict[str, Any], *,
             work: float = 1.0, local: bool = False, payload: dict | None = None) -> Job:
    digest = hashlib.sha1(json.dumps(jsonable(inputs), sort_keys=True).encode()).hexdigest()
    key = f"{section}-{dataset}-{part}-{digest[:12]}".replace("/", "_")
    return Job(key, section, dataset, part, inputs, work, local, payload or {})


@dataclasses.dataclass(repr=False)
class StudyResult(Artifact):
    """The result of one job: small values, table rows and optional arrays."""

    kind = "irlens.study.result"
    array_fields = ("vectors", "ffn_relevant", "ffn_nonrelevant", "attn_relevant",
                    "attn_nonrelevant")

    manifest: Manifest
    section: str
    dataset: str
    part: str
    seconds: float = 0.0
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    vectors: np.ndarray | None = None
    ffn_relevant: np.ndarray | None = None
    ffn_nonrelevant: np.ndarray | None = None
    attn_relevant: np.ndarray | None = None
    attn_nonrelevant: np.ndarray | None = None

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        return f"{self.section} {self.dataset} {self.part}, {len(self.rows)} rows"


class Context:
    """The model and datasets of a study, loaded once per process (driver or worker)."""

    def __init__(self, spec, model=None):
        self.spec = spec
        self._model = model
        self._datasets: dict[str, Any] = {}
        self.cache: dict[Any, Any] = {}  # per-process memo (e.g. BM25 runs)
        self.results: dict[str, StudyResult] = {}
        self.planned: dict[tuple[str, str], list[Job]] = {}  # (section, dataset) -> jobs

    @property
    def model(self):
        if self._model is None:
            from irlens.models import load_model

            self._model = load_model(self.spec.model, device=self.spec.device)
        return self._model

    def dataset(self, name: str):
        if name not in self._datasets:
            from irlens.training.provenance import warn_if_trained_on

            spec = self.spec.datasets[name]
            self._datasets[name] = spec.load()
            warn_if_trained_on(self.spec.model, spec.path, spec.split)
        return self._datasets[name]

    def data_inputs(self, name: str) -> dict[str, Any]:
        """What a job on dataset ``name`` depends on: its fingerprint and selection."""
        spec = self.spec.datasets[name]
        return {"data": self.dataset(name).fingerprint, "split": spec.split,
                "max_docs": spec.max_docs, "max_queries": spec.max_queries,
                "model": self.fingerprint}

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint (its weights are hashed once, by the model)."""
        return self.model.fingerprint

    def manifest(self, job: Job) -> Manifest:
        from irlens.artifacts import make_manifest

        return make_manifest(StudyResult.kind, job.inputs, model=self.model,
                             data=self.dataset(job.dataset), key=job.key)

    def result(self, key: str) -> StudyResult:
        if key not in self.results:
            raise IrlensError(f"job {key} has not run; rerun the study")
        return self.results[key]
