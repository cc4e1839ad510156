"""``run_activations``: knowledge-neuron activation counts of two encoders, resumable.

Examples are (query, relevant passage) pairs, one per query: the query goes through the
query tower (target: similarity with its passage's vector), the passage through the
passage tower (target: similarity with its query's vector), or, with ``target="norm"``,
each embedding's L2 norm. Each (model, side, shard of examples) is one job of a
:class:`~irlens.artifacts.Store`: finished shards are never recomputed, and a changed
model, dataset or config is refused.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from irlens.activations.attribution import SUBLAYERS, KnowledgeNeurons, check_options
from irlens.activations.counts import active_mask, layer_stats
from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.errors import IrlensError
from irlens.models import check_specs, load_encoder
from irlens.paths import parse_memory

__all__ = ["ActivationConfig", "ActivationCounts", "KnowledgeScores", "attribute_examples",
           "count_rows", "examples_for", "run_activations"]

SIDES = ("query", "doc")


@dataclass(frozen=True)
class ActivationConfig:
    """Activation-analysis settings (all recorded in the study manifest)."""

    n_examples: int = 100
    split: str = "test"
    seed: int = 0
    min_relevance: int = 1
    n_steps: int = 20
    rule: str = "riemann_right"
    keys: str = "post"
    sublayers: tuple[str, ...] = SUBLAYERS
    sides: tuple[str, ...] = SIDES
    target: str = "relevance"
    threshold: float = 0.1
    min_share: float = 0.01
    max_length: int | None = 128
    shard_size: int = 20
    memory_budget: str = "2GB"  # activation memory per chunk; changes speed only

    def check(self) -> None:
        check_options(n_steps=self.n_steps, rule=self.rule, keys=self.keys,
                      sublayers=self.sublayers, target=self.target)
        bad = [s for s in self.sides if s not in SIDES]
        if bad or not self.sides:
            raise IrlensError(f"unknown side {bad[0] if bad else '(none)'}; use query and/or "
                              "doc")
        if not isinstance(self.n_examples, int) or self.n_examples < 2:
            raise IrlensError(f"n_examples must be an integer >= 2, got {self.n_examples}")
        if self.shard_size < 1:
            raise IrlensError(f"shard_size must be >= 1, got {self.shard_size}")
        parse_memory(self.memory_budget)
        if not 0 < self.threshold < 1 or not 0 < self.min_share < 1:
            raise IrlensError("threshold and min_share must be between 0 and 1")


@dataclass(repr=False)
class KnowledgeScores(Artifact):
    """Attributions of one shard: ``keys`` [n, layers, ffn], ``values`` [n, layers, hidden],
    ``score`` [n] (F(x)), ``zeroed`` [n, sublayers, layers] (F with the layer at 0)."""

    kind = "knowledge-neurons"
    array_fields = ("keys", "values", "score", "zeroed")

    manifest: Manifest
    side: str
    example_ids: list[str]
    keys: np.ndarray | None
    values: np.ndarray | None
    score: np.ndarray
    zeroed: np.ndarray

    def summary(self) -> str:
        return f"{len(self.example_ids)} {self.side} examples"

    def completeness_gap(self, sublayers: Sequence[str]) -> np.ndarray:
        """[n, sublayers, layers]: sum of a layer's attributions - (F(x) - F(0 * layer))."""
        sums = np.stack([getattr(self, s).sum(-1) for s in sublayers], axis=1)
        return sums - (self.score[:, None, None] - self.zeroed)


@dataclass(repr=False)
class ActivationCounts(Artifact):
    """Per (model, side, sublayer, layer) statistics of active units (see ``to_frame``)."""

    kind = "activation-counts"

    manifest: Manifest
    models: list[str]
    rows: list[dict]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def difference(self) -> pd.DataFrame:
        """Second model minus first, per (side, sublayer, layer)."""
        frame = self.to_frame()
        keys = ["side", "sublayer", "layer"]
        cols = ["active_per_example", "units_on_share", "gini", "participation_ratio"]
        a = frame[frame["model"] == self.models[0]].set_index(keys)[cols]
        b = frame[frame["model"] == self.models[1]].set_index(keys)[cols]
        return (b - a).reset_index()

    def summary(self) -> str:
        return f"{len(self.models)} models, {len(self.rows)} rows"


def examples_for(dataset, n: int, seed: int = 0, min_relevance: int = 1
                 ) -> list[tuple[str, str]]:
    """``n`` (query id, relevant doc id) pairs, one per query, in a seeded order."""
    judged = sorted(q for q in dataset.query_ids if dataset.relevant(q, min_relevance))
    if not judged:
        raise IrlensError(f"{dataset.name} ({dataset.split}) has no query with a relevant "
                          f"document (grade >= {min_relevance}); pick another split")
    rng = random.Random(seed)
    rng.shuffle(judged)
    if len(judged) < n:
        raise IrlensError(f"asked for {n} examples but {dataset.name} ({dataset.split}) has "
                          f"only {len(judged)} judged queries; lower --examples")
    return [(q, rng.choice(sorted(dataset.relevant(q, min_relevance)))) for q in judged[:n]]


def _shard_job(model, dataset, pairs, side: str, config: ActivationConfig):
    def run() -> KnowledgeScores:
        kn = KnowledgeNeurons(model, n_steps=config.n_steps, rule=config.rule,
                              keys=config.keys, sublayers=config.sublayers,
                              target=config.target, memory_budget=config.memory_budget)
        queries = [dataset.queries[q] for q, _ in pairs]
        docs = dataset.doc_texts([d for _, d in pairs])
        texts, other = (queries, docs) if side == "query" else (docs, queries)
        partners = None
        if config.target == "relevance":
            encode = model.encode_docs if side == "query" else model.encode_queries
            partners = encode(other)
        out = kn.attribute(texts, side, partners)
        names = [name for _, _, name in kn.point_names(side)]
        manifest = make_manifest("knowledge-neurons", dataclasses.asdict(config), model=model,
                                 data=dataset, hooks=names)
        ids = [q if side == "query" else d for q, d in pairs]
        return KnowledgeScores(manifest, side, ids, out.get("keys"), out.get("values"),
                               out["score"], out["zeroed"])

    return run


def attribute_examples(model, dataset, pairs: Sequence[tuple[str, str]], side: str,
                       config: ActivationConfig) -> KnowledgeScores:
    """One shard job of :func:`run_activations`: knowledge-neuron attributions of ``side``
    for (query id, relevant doc id) ``pairs``."""
    return _shard_job(model, dataset, pairs, side, config)()


def count_rows(model_id: str, side: str, shards: Sequence[KnowledgeScores],
               config: ActivationConfig) -> list[dict]:
    rows = []
    for sub in config.sublayers:
        attr = np.concatenate([getattr(s, sub) for s in shards])
        gap = np.concatenate([s.completeness_gap(config.sublayers) for s in shards])
        mask = active_mask(attr, config.threshold)
        for row in layer_stats(mask, config.min_share):
            scale = np.abs(attr[:, row["layer"]].sum(-1)).mean() or 1.0
            rows.append({"model": model_id, "side": side, "sublayer": sub, **row,
                         "completeness_gap": float(np.abs(
                             gap[:, config.sublayers.index(sub), row["layer"]]).mean()),
                         "mean_layer_attribution": float(scale)})
    return rows


def run_activations(models: Sequence[str], data: str | Path, out: str | Path,
                    config: ActivationConfig | None = None, *, device: str = "cpu",
                    progress: bool = True) -> ActivationCounts:
    """Knowledge-neuron counts of two models on ``data``; writes ``out``: the jobs,
    ``counts/`` (artefact + Parquet), ``activations.png`` and ``activations.html``."""
    from irlens.activations.report import plot_counts, write_activation_page
    from irlens.data import load_dataset

    config = config or ActivationConfig()
    config.check()
    specs = check_specs(models, need=2, what="activations")
    if len(specs) != 2:
        raise IrlensError(f"activations compares exactly two models (base, trained), got "
                          f"{len(specs)}; give --model twice")
    dataset = load_dataset(data, split=config.split)
    pairs = examples_for(dataset, config.n_examples, config.seed, config.min_relevance)
    loaded = [load_encoder(s, device=device, max_length=config.max_length) for s in specs]
    study_config = {**{k: v for k, v in dataclasses.asdict(config).items()
                       if k != "memory_budget"},  # speed only: a resume may change it
                    "models": [[m.model_id, m.fingerprint] for m in loaded]}
    store = Store(out, make_manifest("activation-study", study_config, data=dataset))
    shards = [pairs[i:i + config.shard_size] for i in range(0, len(pairs), config.shard_size)]
    jobs = {f"m{m}-{side}-{k:03d}": _shard_job(model, dataset, shard, side, config)
            for m, model in enumerate(loaded) for side in config.sides
            for k, shard in enumerate(shards)}
    done = resume(store, jobs, KnowledgeScores, progress=progress, desc="shards")
    rows = []
    for m, model in enumerate(loaded):
        for side in config.sides:
            parts = [done[k] for k in jobs if k.startswith(f"m{m}-{side}-")]
            rows += count_rows(model.model_id, side, parts, config)
    counts = ActivationCounts(make_manifest("activation-counts", study_config, data=dataset),
                              [m.model_id for m in loaded], rows)
    out = Path(out)
    counts.save(out / "counts")
    png = plot_counts(counts, out / "activations.png")
    write_activation_page(counts, out / "activations.html", png)
    return counts
