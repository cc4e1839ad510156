"""``run_probes``: layer-wise probes of two (or more) encoders on one dataset, resumable.

Each model is one job of a :class:`~irlens.artifacts.Store`: its representations are
read once (queries through the query tower, passages through the passage tower, every
layer in one forward per batch), then every (layer, pooling, task) probe and its control
are fitted per fold. A rerun skips finished models; a changed config, model or dataset
is refused.

Confidence intervals over the k folds use Nadeau & Bengio's (2003) corrected resampled
t: the folds' training sets overlap, so the fold accuracies are correlated and the
variance of their mean is s^2 (1/k + n_test/n_train), not s^2/k (:func:`mean_ci`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.errors import IrlensError
from irlens.models import BiEncoder
from irlens.probing._encoders import (
    POOLINGS,
    check_specs,
    layer_names,
    layer_representations,
    load_encoder,
)
from irlens.probing.probes import (
    LISTWISE,
    TASKS,
    ProbeItem,
    build_items,
    check_items_config,
    control_labels,
    control_seen,
    fold_accuracies,
    task_data,
)
from irlens.report import mean_ci

__all__ = ["CONTROLS", "ProbeConfig", "ProbeResult", "probe_model", "run_probes"]

CONTROLS = ("passage",)


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings (all recorded in the study manifest)."""

    n_candidates: int = 5
    folds: int = 5
    max_queries: int | None = 200
    split: str = "test"
    seed: int = 0
    depth: int = 100
    min_relevance: int = 1
    poolings: tuple[str, ...] = POOLINGS
    tasks: tuple[str, ...] = TASKS
    listwise: str = "concat"
    c: float = 1.0
    max_length: int | None = 256
    batch_size: int = 32
    control: str = "passage"  # Hewitt & Liang's control, one random behaviour per passage

    def check(self) -> None:
        check_items_config(self.n_candidates, self.depth, self.folds)
        if self.control not in CONTROLS:
            raise IrlensError(f"unknown control task '{self.control}'; use "
                              f"{', '.join(CONTROLS)}")
        if self.listwise not in LISTWISE:
            raise IrlensError(f"unknown listwise probe '{self.listwise}'; use concat or shared")
        for name, values, allowed in (("task", self.tasks, TASKS),
                                      ("pooling", self.poolings, POOLINGS)):
            bad = [v for v in values if v not in allowed] or ([] if values else ["(none)"])
            if bad:
                raise IrlensError(f"unknown {name} {bad[0]}; use {', '.join(allowed)}")
        if self.max_queries is not None and self.max_queries < self.folds:
            raise IrlensError(f"max_queries={self.max_queries} cannot fill {self.folds} folds; "
                              "raise --queries or lower --folds")


@dataclass(repr=False)
class ProbeResult(Artifact):
    """Accuracy [model, layer, pooling, task, control (0 = real, 1 = control), fold];
    ``control_seen[t]``: share of task t's test rows whose passages the training folds hold
    (what a memorising probe could get on the control task)."""

    kind = "probe"
    array_fields = ("accuracy",)

    manifest: Manifest
    models: list[str]
    layers: list[str]
    poolings: list[str]
    tasks: list[str]
    n_candidates: int
    n_queries: int
    accuracy: np.ndarray
    control_seen: list[float] = dataclasses.field(default_factory=list)

    @property
    def test_fraction(self) -> float:
        """n_test / n_train of the folds (equal-sized groups): 1 / (k - 1)."""
        return 1.0 / (self.accuracy.shape[-1] - 1)

    def chance(self, task: str) -> float:
        return 1.0 / self.n_candidates if task == "listwise" else 0.5

    def to_frame(self) -> pd.DataFrame:
        """One row per (model, layer, pooling, task, probe, fold)."""
        rows = []
        for idx in np.ndindex(self.accuracy.shape):
            m, layer, p, t, c, f = idx
            rows.append({"model": self.models[m], "layer": layer, "point": self.layers[layer],
                         "pooling": self.poolings[p], "task": self.tasks[t],
                         "probe": "control" if c else "relevance", "fold": f,
                         "accuracy": float(self.accuracy[idx]),
                         "chance": self.chance(self.tasks[t])})
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """Per (model, layer, pooling, task): mean accuracy, control accuracy and selectivity
        (accuracy - control, per fold), each with its corrected 95% CI over folds."""
        rows = []
        ratio = self.test_fraction
        for m, layer, p, t in np.ndindex(self.accuracy.shape[:4]):
            acc, ctrl = self.accuracy[m, layer, p, t]
            mean, lo, hi = _ci(acc, ratio)
            c_mean, c_lo, c_hi = _ci(ctrl, ratio)
            s_mean, s_lo, s_hi = _ci(acc - ctrl, ratio)
            seen = self.control_seen[t] if self.control_seen else float("nan")
            rows.append({"model": self.models[m], "layer": layer, "point": self.layers[layer],
                         "pooling": self.poolings[p], "task": self.tasks[t],
                         "accuracy": mean, "ci_low": lo, "ci_high": hi,
                         "control": c_mean, "control_low": c_lo, "control_high": c_hi,
                         "selectivity": s_mean, "selectivity_low": s_lo,
                         "selectivity_high": s_hi, "control_seen": seen,
                         "chance": self.chance(self.tasks[t])})
        return pd.DataFrame(rows)

    def difference_frame(self, base: int = 0, other: int = 1) -> pd.DataFrame:
        """Per (layer, pooling, task): accuracy of model ``other`` minus model ``base``,
        paired by fold (same folds, same items), with its corrected 95% CI."""
        rows = []
        for layer, p, t in np.ndindex(self.accuracy.shape[1:4]):
            diff = self.accuracy[other, layer, p, t, 0] - self.accuracy[base, layer, p, t, 0]
            mean, lo, hi = _ci(diff, self.test_fraction)
            rows.append({"layer": layer, "point": self.layers[layer],
                         "pooling": self.poolings[p], "task": self.tasks[t],
                         "difference": mean, "ci_low": lo, "ci_high": hi,
                         "apart": bool(lo > 0 or hi < 0)})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        return (f"{len(self.models)} models x {len(self.layers)} layers, {self.n_queries} "
                f"queries, N={self.n_candidates}")

    @classmethod
    def _from_saved(cls, **kwargs) -> ProbeResult:
        return cls(**{k: (np.asarray(v) if k == "accuracy" else v) for k, v in kwargs.items()})


def _ci(values, test_fraction: float) -> tuple[float, float, float]:
    ci = mean_ci(values, test_fraction=test_fraction)
    return ci["mean"], ci["lo"], ci["hi"]


def probe_model(model: BiEncoder, items: Sequence[ProbeItem], dataset, config: ProbeConfig,
                *, progress: bool = False) -> ProbeResult:
    """Probe one model: every layer, pooling and task, real and control labels, per fold."""
    if not items:
        raise IrlensError("no probe items; build them with build_items on a judged split")
    config.check()
    n = config.n_candidates
    doc_ids = [d for it in items for d in it.doc_ids]
    queries = layer_representations(model, [it.query for it in items], "query",
                                    poolings=config.poolings, batch_size=config.batch_size,
                                    progress=progress)
    docs = layer_representations(model, dataset.doc_texts(doc_ids), "doc",
                                 poolings=config.poolings, batch_size=config.batch_size,
                                 progress=progress)
    names = layer_names(model, "query")
    acc = np.zeros((1, len(names), len(config.poolings), len(config.tasks), 2, config.folds))
    seen = [0.0] * len(config.tasks)
    for layer in range(len(names)):
        for p, pooling in enumerate(config.poolings):
            q = queries[pooling][layer]
            d = docs[pooling][layer].reshape(len(items), n, -1)
            for t, task in enumerate(config.tasks):
                feats, y, groups = task_data(task, q, d, items, config.listwise)
                control = control_labels(task, items, config.listwise, config.seed + 1)
                seen[t] = control_seen(task, items, groups, config.folds)
                for c, labels in enumerate((y, control)):
                    acc[0, layer, p, t, c] = fold_accuracies(
                        task, feats, labels, groups, folds=config.folds, c=config.c,
                        seed=config.seed, listwise=config.listwise)
    manifest = make_manifest("probe", dataclasses.asdict(config), model=model, data=dataset,
                             hooks=names)
    return ProbeResult(manifest, [model.model_id], names, list(config.poolings),
                       list(config.tasks), n, len(items), acc, seen)


def run_probes(models: Sequence[str], data: str | Path, out: str | Path,
               config: ProbeConfig | None = None, *, device: str = "cpu",
               progress: bool = True) -> ProbeResult:
    """Probe every model in ``models`` (specs, see :func:`load_encoder`) on ``data`` and
    write ``out``: the resumable jobs, ``probes/`` (the combined artefact, its Parquet of
    every fold), ``probe.png`` and ``probe.html``."""
    from irlens.data import load_dataset
    from irlens.probing.report import plot_probes, write_probe_page

    config = config or ProbeConfig()
    config.check()
    specs = check_specs(models, need=2, what="probe")
    dataset = load_dataset(data, split=config.split)
    items = build_items(dataset, config.n_candidates, max_queries=config.max_queries,
                        seed=config.seed, depth=config.depth,
                        min_relevance=config.min_relevance, folds=config.folds)
    loaded = [load_encoder(s, device=device, max_length=config.max_length) for s in specs]
    _check_layers(loaded)
    study_config = {**dataclasses.asdict(config),
                    "models": [[m.model_id, m.fingerprint] for m in loaded]}
    store = Store(out, make_manifest("probe-study", study_config, data=dataset))
    first = {}  # the same model (fingerprint) given twice is probed once
    for i, m in enumerate(loaded):
        first.setdefault(m.fingerprint, i)
    jobs = {f"model-{i}": (lambda m=loaded[i]: probe_model(m, items, dataset, config,
                                                           progress=progress))
            for i in sorted(set(first.values()))}
    done = resume(store, jobs, ProbeResult, progress=progress, desc="models")
    parts = [done[f"model-{first[m.fingerprint]}"] for m in loaded]
    result = ProbeResult(make_manifest("probe", study_config, data=dataset,
                                       hooks=parts[0].layers),
                         [m.model_id for m in loaded], parts[0].layers, parts[0].poolings,
                         parts[0].tasks, config.n_candidates, len(items),
                         np.concatenate([p.accuracy for p in parts]), parts[0].control_seen)
    out = Path(out)
    result.save(out / "probes")
    png = plot_probes(result, out / "probe.png")
    write_probe_page(result, out / "probe.html", png)
    return result


def _check_layers(models: Sequence[BiEncoder]) -> None:
    counts = {m.model_id: len(layer_names(m, "query")) for m in models}
    if len(set(counts.values())) > 1:
        raise IrlensError(f"the models have different depths ({counts}); compare models with "
                          "the same number of layers")
