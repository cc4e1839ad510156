"""``run_probes``: layer-wise probes of two (or more) encoders on one dataset, resumable.

Each model is one job of a :class:`~irlens.artifacts.Store`: its representations are
read once (queries through the query tower, passages through the passage tower, every
layer in one forward per batch), then every (layer, pooling, task) probe and its control
are fitted per fold. A rerun skips finished models; a changed config, model or dataset
is refused.
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
    fold_accuracies,
    task_data,
)
from irlens.report import mean_ci

__all__ = ["ProbeConfig", "ProbeResult", "probe_model", "run_probes"]


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

    def check(self) -> None:
        check_items_config(self.n_candidates, self.depth, self.folds)
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
    """Accuracy [model, layer, pooling, task, control (0 = real, 1 = control), fold]."""

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
        """Per (model, layer, pooling, task): mean accuracy, 95% CI, control, selectivity."""
        rows = []
        for m, layer, p, t in np.ndindex(self.accuracy.shape[:4]):
            acc, ctrl = self.accuracy[m, layer, p, t]
            ci = mean_ci(acc)
            mean = ci["mean"]
            rows.append({"model": self.models[m], "layer": layer, "point": self.layers[layer],
                         "pooling": self.poolings[p], "task": self.tasks[t],
                         "accuracy": mean, "ci_low": ci["lo"], "ci_high": ci["hi"],
                         "control": float(ctrl.mean()),
                         "selectivity": mean - float(ctrl.mean()),
                         "chance": self.chance(self.tasks[t])})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        return (f"{len(self.models)} models x {len(self.layers)} layers, {self.n_queries} "
                f"queries, N={self.n_candidates}")

    @classmethod
    def _from_saved(cls, **kwargs) -> ProbeResult:
        return cls(**{k: (np.asarray(v) if k == "accuracy" else v) for k, v in kwargs.items()})


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
    for layer in range(len(names)):
        for p, pooling in enumerate(config.poolings):
            q = queries[pooling][layer]
            d = docs[pooling][layer].reshape(len(items), n, -1)
            for t, task in enumerate(config.tasks):
                feats, y, groups = task_data(task, q, d, items, config.listwise)
                control = control_labels(y, groups, task, config.listwise, config.seed + 1)
                for c, labels in enumerate((y, control)):
                    acc[0, layer, p, t, c] = fold_accuracies(
                        task, feats, labels, groups, folds=config.folds, c=config.c,
                        seed=config.seed, listwise=config.listwise)
    manifest = make_manifest("probe", dataclasses.asdict(config), model=model, data=dataset,
                             hooks=names)
    return ProbeResult(manifest, [model.model_id], names, list(config.poolings),
                       list(config.tasks), n, len(items), acc)


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
    jobs = {f"model-{i}": (lambda m=m: probe_model(m, items, dataset, config, progress=progress))
            for i, m in enumerate(loaded)}
    done = resume(store, jobs, ProbeResult, progress=progress, desc="models")
    parts = [done[k] for k in jobs]
    result = ProbeResult(make_manifest("probe", study_config, data=dataset,
                                       hooks=parts[0].layers),
                         [m.model_id for m in loaded], parts[0].layers, parts[0].poolings,
                         parts[0].tasks, config.n_candidates, len(items),
                         np.concatenate([p.accuracy for p in parts]))
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
