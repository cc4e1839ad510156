"""The relevance-neuron study of one dataset, resumable, saved as artefacts.

Steps (Vast et al., "Which Neurons Matter in IR? Applying Integrated Gradients-based
Methods to Understand Cross-Encoders", ICTIR 2024):

1. sample (query, relevant, BM25 negative) triplets (:func:`irlens.data.sample_triplets`);
2. keep those the model gets right (``keep="ordered"``: relevant scored above the
   negative; ``"classified"``, cross-encoders: relevant probability > 0.5 and negative
   < 0.5, the paper's filter; ``"all"``);
3. NIG of the relevant and of the non-relevant pair of each kept triplet, one job per
   shard of ``shard_size`` triplets (a :class:`NeuronShard` artefact);
4. aggregate: per unit and segment, the mean over relevant pairs, over non-relevant
   pairs, and the contrast (relevant minus non-relevant) -> ``scores.parquet``; per layer
   completeness -> ``completeness.parquet``.

The folder is a :class:`irlens.artifacts.Store`: its ``manifest.json`` holds the
configuration, the model and dataset fingerprints, the hook names and the unit counts;
``jobs/`` holds the triplets and one artefact per shard. A rerun with the same
configuration computes only the missing shards; another configuration, model or dataset
in the same folder is refused with what changed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from irlens._io import atomic_path, read_json, write_json
from irlens.artifacts import (
    Artifact,
    Manifest,
    Store,
    check_compatible,
    library_versions,
    make_manifest,
    resume,
)
from irlens.errors import IrlensError
from irlens.executors import Executor
from irlens.hooks import hook_points
from irlens.models import CrossEncoder, Retriever
from irlens.neurons.nig import NeuronIntegratedGradients
from irlens.neurons.result import SEGMENTS, NeuronAttribution
from irlens.neurons.selection import check_options, fuse, intersect, overlaps, select

__all__ = ["KEEP", "NeuronShard", "Study", "StudyConfig", "TripletTable", "attribute_shard",
           "check_model", "library_versions", "resolve_neurons", "run_neurons", "run_study",
           "scores_frame", "triplet_table"]

KEEP = ("ordered", "classified", "all")
KIND = "neurons.study"
FUSION = "neurons.fusion"
_META_KEY = b"irlens.neurons"


@dataclass
class StudyConfig:
    """Parameters of one study (see the module docstring); recorded in the manifest."""

    n_triplets: int = 100
    seed: int = 0
    split: str = "test"
    min_relevance: int | None = None  # None: 2 on a 0-3 scale (TREC DL), else 1
    bm25_depth: int = 100
    keep: str = "ordered"
    shard_size: int = 10
    max_length: int | None = None
    n_steps: int = 21  # points on each path (20 intervals)
    ffn: str = "post"
    attention: bool = True
    output: str | None = None
    target: str | None = None
    baseline: str = "pad"
    rule: str = "riemann_right"
    memory_budget: str | None = "1GB"

    def engine(self, model: Retriever) -> NeuronIntegratedGradients:
        return NeuronIntegratedGradients(
            model, n_steps=self.n_steps, ffn=self.ffn, attention=self.attention,
            output=self.output, target=self.target, baseline=self.baseline, rule=self.rule,
            memory_budget=self.memory_budget)

    def key(self) -> dict[str, Any]:
        """What must match to resume (``memory_budget`` only changes speed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "memory_budget"}


@dataclass(repr=False)
class TripletTable(Artifact):
    """The sampled triplets, their scores and which were kept (one row per triplet)."""

    kind: ClassVar[str] = "neurons.triplets"
    manifest: Manifest
    rows: list[dict[str, Any]]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        return f"{len(self.rows)} triplets"


_PARTS = ("ffn", "attn", "score", "baseline_score", "resid")


@dataclass(repr=False)
class NeuronShard(Artifact):
    """NIG of one shard: the relevant and the non-relevant pair of each kept triplet."""

    kind: ClassVar[str] = "neurons.shard"
    array_fields: ClassVar[tuple[str, ...]] = tuple(
        f"{label}_{part}" for label in ("relevant", "nonrelevant") for part in _PARTS)
    manifest: Manifest
    model_id: str
    hook_names: list[str]
    parameters: dict[str, Any]
    segments: list[str]
    relevant_ffn: np.ndarray | None = None
    relevant_attn: np.ndarray | None = None
    relevant_score: np.ndarray | None = None
    relevant_baseline_score: np.ndarray | None = None
    relevant_resid: np.ndarray | None = None
    nonrelevant_ffn: np.ndarray | None = None
    nonrelevant_attn: np.ndarray | None = None
    nonrelevant_score: np.ndarray | None = None
    nonrelevant_baseline_score: np.ndarray | None = None
    nonrelevant_resid: np.ndarray | None = None

    @classmethod
    def of(cls, manifest: Manifest, relevant: NeuronAttribution,
           nonrelevant: NeuronAttribution) -> NeuronShard:
        arrays = {f"{label}_{part}": getattr(result, part) for label, result in
                  (("relevant", relevant), ("nonrelevant", nonrelevant)) for part in _PARTS}
        return cls(manifest=manifest, model_id=relevant.model_id,
                   hook_names=list(relevant.hook_names), parameters=dict(relevant.parameters),
                   segments=list(relevant.segments), **arrays)

    def attribution(self, label: str) -> NeuronAttribution:
        """The shard's NIG of ``relevant`` or ``nonrelevant`` pairs."""
        def get(part: str) -> np.ndarray | None:
            value = getattr(self, f"{label}_{part}")
            return None if value is None else np.asarray(value, dtype=np.float64)

        return NeuronAttribution(self.model_id, list(self.hook_names), get("ffn"),
                                 get("attn"), get("score"), get("baseline_score"),
                                 get("resid"), dict(self.parameters), tuple(self.segments))

    def summary(self) -> str:
        return f"{0 if self.relevant_score is None else len(self.relevant_score)} triplets"


def min_relevance(dataset, asked: int | None) -> int:
    """``asked``, or 2 when grades go up to 3 (TREC DL: 2 = highly relevant), else 1."""
    if asked is not None:
        return asked
    top = max((g for judged in dataset.qrels.values() for g in judged.values()), default=1)
    return 2 if top >= 3 else 1


def _units(model: Retriever, side: str | None) -> dict[str, int]:
    points = hook_points(model, side)
    return {"layers": sum(p.kind == "resid" for p in points.values()),
            "ffn": points["layer.0.ffn.post"].units, "heads": points["layer.0.attn.probs"].units}


def check_model(manifest: Manifest, model: Retriever, what: str = "neuron study") -> None:
    """Refuse a neuron study made with another model (kind, unit counts or weights)."""
    side = "doc" if "shared" not in model.encoders() else None
    made_by = manifest.extra.get("model_class")
    if made_by and made_by != type(model).__name__:
        raise IrlensError(
            f"the {what} was made with a {made_by} ({manifest.model_id}), not a "
            f"{type(model).__name__} ({model.model_id}): pass --model {manifest.model_id} or "
            "a study of this model")
    have, want = _units(model, side), manifest.extra.get("units")
    if want is not None and have != want:
        raise IrlensError(
            f"the {what} was made for a model with {want['layers']} layers x {want['ffn']} "
            f"FFN units x {want['heads']} heads ({manifest.model_id}); this model has "
            f"{have['layers']} x {have['ffn']} x {have['heads']}: use a neuron study of the "
            "same model")
    check_compatible(manifest, model=model, what=what)


class Study:
    """A study folder (or the fusion of several): manifest, triplets, scores, completeness."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if folder.is_file() and folder.suffix == ".parquet":
            folder = folder.parent
        if not (folder / "manifest.json").is_file():
            raise IrlensError(f"{folder} is not a neuron study (no manifest.json); pass a "
                              "folder written by `irlens neurons`")
        self.folder = folder
        self.manifest = Manifest.read(folder)
        if self.manifest.kind.startswith("irlens.neurons."):
            raise IrlensError(f"{folder} was written by an older irlens (no job folders); "
                              "rerun `irlens neurons` into a new folder")
        if self.manifest.kind not in (KIND, FUSION):
            raise IrlensError(f"{folder} holds a '{self.manifest.kind}', not a neuron study; "
                              "pass a folder written by `irlens neurons`")

    @property
    def info(self) -> dict[str, Any]:
        """Manifest fields for display: model, config, NIG parameters, pair counts."""
        m = self.manifest
        out = {"model_id": m.model_id, "model_fingerprint": m.model_fingerprint,
               "config": m.config, "hook_names": m.hooks, "versions": m.versions, **m.extra}
        if self.finished and self.manifest.kind == KIND:
            kept = self.triplets["kept"]
            out["n_relevant"] = out["n_nonrelevant"] = int(kept.sum())
        return out

    @property
    def name(self) -> str:
        return self.manifest.extra.get("dataset", {}).get("name", self.folder.name)

    @property
    def finished(self) -> bool:
        return (self.folder / "scores.parquet").is_file()

    @property
    def scores(self) -> pd.DataFrame:
        if not self.finished:
            raise IrlensError(f"the study in {self.folder} has not finished; rerun it to "
                              "resume")
        return pd.read_parquet(self.folder / "scores.parquet")

    @property
    def triplets(self) -> pd.DataFrame:
        return TripletTable.load(self.folder / "jobs" / "triplets").to_frame()

    @property
    def completeness(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "completeness.parquet")

    def shards(self) -> list[str]:
        """Keys of the finished shard jobs, in order."""
        jobs = self.folder / "jobs"
        return sorted(p.name for p in jobs.glob("shard-*") if (p / "manifest.json").is_file())

    def attributions(self, label: str) -> NeuronAttribution:
        """Every pair's NIG of ``label`` (``relevant`` or ``nonrelevant``), in shard order."""
        parts = [NeuronShard.load(self.folder / "jobs" / key).attribution(label)
                 for key in self.shards()]
        return NeuronAttribution.concat(parts)


def resolve_neurons(path: str | Path, which: str | None = None) -> tuple[Study, str | None]:
    """The study a ``--neurons`` path names, and a note when it had to choose.

    ``path`` is a study folder, a fusion folder, a ``scores.parquet`` or the folder
    ``irlens neurons --out`` wrote (``<dataset>/``, ``fusion/``, ``summary.json``): then
    ``which`` picks one of its studies, by default the in-domain one.
    """
    path = Path(path)
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        if which is not None:
            raise IrlensError(f"{path} is a single study; drop --which or pass the folder "
                              "`irlens neurons --out` wrote")
        return Study(path), None
    summary = read_json(summary_file)
    names = list(summary.get("studies", {}))
    if (path / "fusion" / "manifest.json").is_file():
        names.append("fusion")
    choice = which or summary.get("in_domain") or (names[0] if names else None)
    if choice not in names:
        raise IrlensError(f"no study '{choice}' in {path}; it holds {', '.join(names)}: pick "
                          "one with --which")
    note = None
    if which is None and len(names) > 1:
        others = ", ".join(n for n in names if n != choice)
        note = (f"using the in-domain study '{choice}' of {path}; it also holds {others} "
                "(pick one with --which)")
    return Study(path / choice), note


def run_study(model: Retriever, data: str | Path, out_dir: str | Path,
              config: StudyConfig | None = None, *, progress: bool = True,
              executor: Executor | None = None) -> Study:
    """Run (or resume) the study of ``data`` (a BEIR folder) into ``out_dir``; its jobs
    run on ``executor`` (:mod:`irlens.executors`; ``None``: in this process)."""
    from irlens.data import load_dataset

    config = config or StudyConfig()
    if config.keep not in KEEP:
        raise IrlensError(f"unknown keep '{config.keep}'; use {', '.join(KEEP)}")
    if config.keep == "classified" and not isinstance(model, CrossEncoder):
        raise IrlensError("keep 'classified' needs a cross-encoder (a probability); use "
                          "ordered for bi-encoders")
    if config.n_triplets < 1 or config.shard_size < 1:
        raise IrlensError("n_triplets and shard_size must be >= 1")
    engine = config.engine(model)  # validates the NIG options early
    out = Path(out_dir)
    dataset = load_dataset(data, split=config.split)
    store = Store(out, _manifest(model, engine, dataset, data, config))
    [triplets] = resume(store, {"triplets": lambda: triplet_table(model, store.manifest, config,
                                                                   dataset, progress)},
                        TripletTable, executor=executor).values()
    frame = triplets.to_frame()
    kept = frame[frame["kept"]]
    if kept.empty:
        raise IrlensError(
            f"no relevant pairs left after filtering: the model gets 0 of {len(frame)} "
            f"sampled triplets of {dataset.name} right (keep={config.keep}); use keep all "
            "or sample more triplets")

    def shard_job(rows: pd.DataFrame):
        return lambda: attribute_shard(model, engine, config, rows, store.manifest)

    jobs = {f"shard-{int(shard):05d}": shard_job(kept[kept["shard"] == shard])
            for shard in sorted(kept["shard"].unique())}
    resume(store, jobs, NeuronShard, progress=progress, desc=f"NIG {dataset.name}",
           executor=executor)
    study = Study(out)
    if not study.finished:
        _aggregate(study)
    return study


class _max_length:  # noqa: N801 - a context manager used like a function
    """Set ``model.max_length`` while the block runs (None: leave it)."""

    def __init__(self, model: Retriever, limit: int | None):
        self.model, self.limit, self.saved = model, limit, model.max_length

    def __enter__(self) -> None:
        if self.limit is not None:
            self.model.max_length = self.limit

    def __exit__(self, *exc: Any) -> None:
        self.model.max_length = self.saved


def _manifest(model: Retriever, engine: NeuronIntegratedGradients, dataset, data,
              config: StudyConfig) -> Manifest:
    side = engine._sides()[0]
    return make_manifest(
        KIND, config.key(), model=model, data=dataset, hooks=engine.hook_names(side),
        model_class=type(model).__name__, units=_units(model, side), nig=engine.parameters,
        dataset={"name": dataset.name, "path": str(data), "split": dataset.split,
                 "min_relevance": min_relevance(dataset, config.min_relevance),
                 "n_docs": len(dataset.corpus), "n_queries": len(dataset.queries)})


def attribute_shard(model: Retriever, engine: NeuronIntegratedGradients, config: StudyConfig,
                    rows: pd.DataFrame, manifest: Manifest) -> NeuronShard:
    """One shard job: NIG of the relevant and the non-relevant pair of each row (kept
    triplets of a :class:`TripletTable`)."""
    with _max_length(model, config.max_length):
        queries = rows["query"].tolist()
        rel = engine.attribute(queries, rows["pos_text"].tolist())
        non = engine.attribute(queries, rows["neg_text"].tolist())
    return NeuronShard.of(manifest, rel, non)


def triplet_table(model: Retriever, manifest: Manifest, config: StudyConfig, dataset,
                  progress: bool = False) -> TripletTable:
    """The triplets job: sample, score with ``model``, mark the kept ones and their shard."""
    from irlens.data import sample_triplets

    triplets = sample_triplets(dataset, config.n_triplets, negatives="bm25", seed=config.seed,
                               min_relevance=min_relevance(dataset, config.min_relevance),
                               bm25_depth=config.bm25_depth)
    frame = pd.DataFrame([asdict(t) for t in triplets])
    with _max_length(model, config.max_length):
        pos, neg = _pair_scores(model, frame, progress)
    frame["pos_score"], frame["neg_score"] = pos, neg
    if config.keep == "ordered":
        frame["kept"] = frame["pos_score"] > frame["neg_score"]
    elif config.keep == "classified":
        frame["kept"] = (frame["pos_score"] > 0.5) & (frame["neg_score"] < 0.5)
    else:
        frame["kept"] = True
    order = np.cumsum(frame["kept"].to_numpy()) - 1
    frame["shard"] = np.where(frame["kept"], order // config.shard_size, -1)
    return TripletTable(manifest, frame.to_dict("records"))


def _pair_scores(model: Retriever, frame: pd.DataFrame, progress: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    queries = frame["query"].tolist()
    out = []
    for col in ("pos_text", "neg_text"):
        docs = frame[col].tolist()
        if isinstance(model, CrossEncoder):
            out.append(model.predict(queries, docs, output="prob").numpy())
        else:
            with torch.no_grad():
                q = model.encode_queries(queries)
                d = model.encode_docs(docs)
            out.append(model.pair_similarity(q, d).numpy())
    return out[0], out[1]


def _write_scores(folder: Path, scores: pd.DataFrame, meta: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(scores, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           _META_KEY: json.dumps(meta, default=str)})
    with atomic_path(folder / "scores.parquet") as tmp:
        pq.write_table(table, tmp)


def _aggregate(study: Study) -> None:
    """Means over pairs -> scores.parquet; per-layer completeness -> completeness.parquet."""
    rel, non = study.attributions("relevant"), study.attributions("nonrelevant")
    scores = scores_frame(rel.ffn, non.ffn, study.manifest.extra["nig"]["ffn"], rel.attn,
                          non.attn)
    comp = pd.concat([rel.completeness().assign(label="relevant"),
                      non.completeness().assign(label="nonrelevant")], ignore_index=True)
    with atomic_path(study.folder / "completeness.parquet") as tmp:
        comp.to_parquet(tmp, index=False)
    meta = {**study.manifest.to_dict(), "n_relevant": len(rel), "n_nonrelevant": len(non)}
    _write_scores(study.folder, scores, meta)


def scores_frame(rel_ffn: np.ndarray, non_ffn: np.ndarray, ffn_hook: str,
                 rel_attn: np.ndarray | None = None, non_attn: np.ndarray | None = None
                 ) -> pd.DataFrame:
    """The scores table (hook, kind, layer, unit, segment, relevant, nonrelevant, contrast)
    of every FFN unit (and head) from the NIG of all relevant and all non-relevant pairs
    (``ffn`` [P, L, 5, I], ``attn`` [P, L, A, 5, 5]): means over pairs."""
    frames = [_ffn_rows(rel_ffn.mean(0), non_ffn.mean(0), ffn_hook)]
    if rel_attn is not None:
        frames.append(_attn_rows(rel_attn.mean(0), non_attn.mean(0)))
    scores = pd.concat(frames, ignore_index=True)
    for col in ("hook", "kind", "segment"):
        scores[col] = scores[col].astype("category")
    return scores


def _ffn_rows(rel: np.ndarray, non: np.ndarray, ffn: str) -> pd.DataFrame:
    """[L, 5, I] means -> rows for segments 'all' + SEGMENTS."""
    def with_all(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a.sum(1, keepdims=True), a], axis=1)  # [L, 6, I]

    r, n = with_all(rel), with_all(non)
    layers, segs, units = r.shape
    li, si, ui = np.meshgrid(np.arange(layers), np.arange(segs), np.arange(units),
                             indexing="ij")
    names = np.array(["all", *SEGMENTS])
    return pd.DataFrame({
        "hook": [f"layer.{i}.ffn.{ffn}" for i in li.ravel()], "kind": "ffn",
        "layer": li.ravel().astype(np.int16), "unit": ui.ravel().astype(np.int32),
        "segment": names[si.ravel()], "relevant": r.ravel(), "nonrelevant": n.ravel(),
        "contrast": (r - n).ravel()})


def _attn_rows(rel: np.ndarray, non: np.ndarray) -> pd.DataFrame:
    """[L, A, 5, 5] means -> rows for blocks 'all' + 'query->doc' etc."""
    def flat(a: np.ndarray) -> np.ndarray:
        blocks = a.reshape(*a.shape[:2], -1)
        return np.concatenate([blocks.sum(-1, keepdims=True), blocks], axis=-1)  # [L, A, 26]

    r, n = flat(rel), flat(non)
    layers, heads, blocks = r.shape
    li, hi, bi = np.meshgrid(np.arange(layers), np.arange(heads), np.arange(blocks),
                             indexing="ij")
    names = np.array(["all"] + [f"{a}->{b}" for a in SEGMENTS for b in SEGMENTS])
    return pd.DataFrame({
        "hook": [f"layer.{i}.attn.probs" for i in li.ravel()], "kind": "attn",
        "layer": li.ravel().astype(np.int16), "unit": hi.ravel().astype(np.int32),
        "segment": names[bi.ravel()], "relevant": r.ravel(), "nonrelevant": n.ravel(),
        "contrast": (r - n).ravel()})


def run_neurons(model: Retriever, data: str | Path, out_dir: str | Path,
                ood: list[str | Path] | None = None, config: StudyConfig | None = None, *,
                p: float = 1.0, kind: str = "ffn", score: str = "relevant",
                segment: str = "all", progress: bool = True,
                executor: Executor | None = None) -> dict[str, Any]:
    """Studies of ``data`` (in-domain) and each ``ood`` set, then their combination
    (``executor``: where their jobs run, see :func:`run_study`).

    Writes ``<out>/<dataset>/`` per study, ``<out>/fusion/`` (mean scores, usable as a
    neuron file), ``selections.json`` (each dataset's top ``p``%, their intersection and
    the fusion's top ``p``%) and ``overlaps.parquet`` (in-domain vs each other set, per
    layer). Returns a summary dict (also ``summary.json``).
    """
    check_options(p, score, "global", kind)
    out = Path(out_dir)
    studies: list[Study] = []
    for source in [data, *(ood or [])]:
        name = Path(source).name
        taken = {s.folder.name for s in studies}
        folder = out / (name if name not in taken else f"{name}-{len(studies)}")
        studies.append(run_study(model, source, folder, config, progress=progress,
                                 executor=executor))
    tables = [s.scores for s in studies]
    fused = fuse(tables)
    fusion_dir = out / "fusion"
    first = studies[0].manifest
    manifest = dataclasses.replace(
        first, kind=FUSION, data_name="fusion", data_fingerprint=None,
        extra={**first.extra, "dataset": {"name": "fusion", "of": [s.name for s in studies]}})
    fusion_dir.mkdir(parents=True, exist_ok=True)
    manifest.write(fusion_dir)
    _write_scores(fusion_dir, fused, manifest.to_dict())
    names = [s.folder.name for s in studies]
    chosen = {name: select(t, p, kind=kind, score=score, segment=segment)
              for name, t in zip(names, tables, strict=True)}
    chosen["intersection"] = intersect([chosen[name] for name in names])
    chosen["fusion"] = select(fused, p, kind=kind, score=score, segment=segment)
    write_json(out / "selections.json", {k: json.loads(v.to_json()) for k, v in chosen.items()})
    frames = [overlaps(tables[0], t, p, kind=kind, score=score, segment=segment)
              .assign(a=names[0], b=name)
              for name, t in zip(names[1:], tables[1:], strict=True)]
    if frames:
        with atomic_path(out / "overlaps.parquet") as tmp:
            pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    summary = {"studies": {n: str(s.folder) for n, s in zip(names, studies, strict=True)},
               "in_domain": names[0], "p": p, "kind": kind, "score": score,
               "segment": segment, "selected": {k: v.n for k, v in chosen.items()},
               "kept_pairs": {n: s.info.get("n_relevant")
                              for n, s in zip(names, studies, strict=True)}}
    write_json(out / "summary.json", summary)
    return summary
