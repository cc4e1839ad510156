"""The relevance-neuron study of one dataset, resumable, saved as Parquet with a manifest.

Steps (Vast et al., ICTIR 2024, section 3 of SCIENCE.md):

1. sample (query, relevant, BM25 negative) triplets (:func:`irlens.data.sample_triplets`);
2. keep those the model gets right (``keep="ordered"``: relevant scored above the
   negative; ``"classified"``, cross-encoders: relevant probability > 0.5 and negative
   < 0.5, the paper's filter; ``"all"``);
3. NIG of the relevant and of the non-relevant pair of each kept triplet, in shards of
   ``shard_size`` triplets (``shards/00003-relevant.parquet`` and ``-nonrelevant``);
4. aggregate: per unit and segment, the mean over relevant pairs, over non-relevant
   pairs, and the contrast (relevant minus non-relevant) -> ``scores.parquet``; per layer
   completeness -> ``completeness.parquet``.

Everything goes to one folder with ``manifest.json`` (configuration, model id and
fingerprint, hook names, unit counts, dataset fingerprint, seed, library versions).
A rerun with the same configuration resumes after the last finished shard; a different
configuration in the same folder is refused.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from irlens._io import atomic_path, read_json, write_json
from irlens.errors import IrlensError
from irlens.hooks import hook_points
from irlens.models import CrossEncoder, Retriever
from irlens.neurons.nig import NeuronIntegratedGradients
from irlens.neurons.result import SEGMENTS, NeuronAttribution
from irlens.neurons.selection import check_options, fuse, intersect, overlaps, select

__all__ = ["KEEP", "Study", "StudyConfig", "check_model", "library_versions", "run_neurons",
           "run_study"]

KEEP = ("ordered", "classified", "all")
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


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import sentence_transformers
    import torch
    import transformers

    try:
        own = version("irlens")
    except PackageNotFoundError:
        own = "unknown"
    return {"irlens": own, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


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


def check_model(manifest: dict[str, Any], model: Retriever, what: str = "neuron file") -> None:
    """Refuse a neuron file made for a model with other unit counts."""
    side = "doc" if "shared" not in model.encoders() else None
    have, want = _units(model, side), manifest["units"]
    if have != want:
        raise IrlensError(
            f"the {what} was made for a model with {want['layers']} layers x {want['ffn']} "
            f"FFN units x {want['heads']} heads ({manifest.get('model_id')}); this model has "
            f"{have['layers']} x {have['ffn']} x {have['heads']}: use a neuron file of the "
            "same model")


class Study:
    """A finished (or partial) study folder: manifest, triplets, scores, completeness."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if folder.is_file() and folder.suffix == ".parquet":
            folder = folder.parent
        if not (folder / "manifest.json").is_file():
            raise IrlensError(f"{folder} is not a neuron study (no manifest.json); pass the "
                              "folder written by `irlens neurons` or its scores.parquet")
        self.folder = folder
        self.manifest: dict[str, Any] = read_json(folder / "manifest.json")

    @property
    def name(self) -> str:
        return self.manifest["dataset"]["name"]

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
        return pd.read_parquet(self.folder / "triplets.parquet")

    @property
    def completeness(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "completeness.parquet")

    def attributions(self, label: str) -> NeuronAttribution:
        """Every pair's NIG of ``label`` (``relevant`` or ``nonrelevant``), in shard order."""
        files = sorted((self.folder / "shards").glob(f"*-{label}.parquet"))
        return NeuronAttribution.concat([NeuronAttribution.from_parquet(f) for f in files])


def run_study(model: Retriever, data: str | Path, out_dir: str | Path,
              config: StudyConfig | None = None, *, progress: bool = True) -> Study:
    """Run (or resume) the study of ``data`` (a BEIR folder) into ``out_dir``."""
    from irlens.data import load_dataset, sample_triplets

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
    manifest = _manifest(model, engine, dataset, data, config)
    _claim(out, manifest)
    triplets = _triplets(model, out, config, dataset, sample_triplets, progress)
    kept = triplets[triplets["kept"]]
    if kept.empty:
        raise IrlensError(
            f"no relevant pairs left after filtering: the model gets 0 of {len(triplets)} "
            f"sampled triplets of {dataset.name} right (keep={config.keep}); use keep all "
            "or sample more triplets")
    limit = config.max_length
    saved = model.max_length
    shards = sorted(kept["shard"].unique())
    from tqdm.auto import tqdm

    try:
        if limit is not None:
            model.max_length = limit
        for shard in tqdm(shards, desc=f"NIG {dataset.name}", unit="shard",
                          disable=not progress):
            done = out / "shards" / f"{shard:05d}-nonrelevant.parquet"
            if done.is_file():
                continue
            rows = kept[kept["shard"] == shard]
            queries = rows["query"].tolist()
            for label, col in (("relevant", "pos_text"), ("nonrelevant", "neg_text")):
                result = engine.attribute(queries, rows[col].tolist())
                result.to_parquet(out / "shards" / f"{shard:05d}-{label}.parquet")
    finally:
        model.max_length = saved
    _aggregate(Study(out), manifest)
    return Study(out)


def _manifest(model: Retriever, engine: NeuronIntegratedGradients, dataset, data,
              config: StudyConfig) -> dict[str, Any]:
    side = engine._sides()[0]
    return {
        "kind": "irlens.neurons.study",
        "model_id": model.model_id,
        "model_fingerprint": model.fingerprint,
        "model_class": type(model).__name__,
        "hook_names": engine.hook_names(side),
        "units": _units(model, side),
        "nig": engine.parameters,
        "dataset": {"name": dataset.name, "path": str(data), "split": dataset.split,
                    "min_relevance": min_relevance(dataset, config.min_relevance),
                    "fingerprint": dataset.fingerprint, "n_docs": len(dataset.corpus),
                    "n_queries": len(dataset.queries)},
        "config": asdict(config),
        "seed": config.seed,
        "versions": library_versions(),
    }


def _claim(out: Path, manifest: dict[str, Any]) -> None:
    """Start a new study folder, or check that the one there is the same run."""
    path = out / "manifest.json"
    if path.is_file():
        old = read_json(path)
        diffs = [] if old.get("model_fingerprint") == manifest["model_fingerprint"] \
            else ["model"]
        for key in ("fingerprint", "split"):
            if old.get("dataset", {}).get(key) != manifest["dataset"][key]:
                diffs.append(f"dataset {key}")
        old_cfg = StudyConfig(**old.get("config", {})).key()
        new_cfg = StudyConfig(**manifest["config"]).key()
        diffs += [k for k in new_cfg if old_cfg.get(k) != new_cfg[k]]
        if diffs:
            raise IrlensError(f"{out} holds a different study ({', '.join(diffs)} differ); "
                              "pass another output folder or delete it")
        return
    (out / "shards").mkdir(parents=True, exist_ok=True)
    write_json(path, {**manifest, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _triplets(model: Retriever, out: Path, config: StudyConfig, dataset, sampler,
              progress: bool) -> pd.DataFrame:
    path = out / "triplets.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    triplets = sampler(dataset, config.n_triplets, negatives="bm25", seed=config.seed,
                       min_relevance=min_relevance(dataset, config.min_relevance),
                       bm25_depth=config.bm25_depth)
    frame = pd.DataFrame([asdict(t) for t in triplets])
    saved = model.max_length
    try:
        if config.max_length is not None:
            model.max_length = config.max_length
        pos, neg = _pair_scores(model, frame, progress)
    finally:
        model.max_length = saved
    frame["pos_score"], frame["neg_score"] = pos, neg
    if config.keep == "ordered":
        frame["kept"] = frame["pos_score"] > frame["neg_score"]
    elif config.keep == "classified":
        frame["kept"] = (frame["pos_score"] > 0.5) & (frame["neg_score"] < 0.5)
    else:
        frame["kept"] = True
    order = np.cumsum(frame["kept"].to_numpy()) - 1
    frame["shard"] = np.where(frame["kept"], order // config.shard_size, -1)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame


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


def _aggregate(study: Study, manifest: dict[str, Any]) -> None:
    """Means over pairs -> scores.parquet; per-layer completeness -> completeness.parquet."""
    rel, non = study.attributions("relevant"), study.attributions("nonrelevant")
    ffn_hook = manifest["nig"]["ffn"]
    frames = [_ffn_rows(rel.ffn.mean(0), non.ffn.mean(0), ffn_hook)]
    if rel.attn is not None:
        frames.append(_attn_rows(rel.attn.mean(0), non.attn.mean(0)))
    scores = pd.concat(frames, ignore_index=True)
    for col in ("hook", "kind", "segment"):
        scores[col] = scores[col].astype("category")
    meta = {**manifest, "n_relevant": len(rel), "n_nonrelevant": len(non)}
    table = pa.Table.from_pandas(scores, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           _META_KEY: json.dumps(meta, default=str)})
    comp = pd.concat([rel.completeness().assign(label="relevant"),
                      non.completeness().assign(label="nonrelevant")], ignore_index=True)
    with atomic_path(study.folder / "completeness.parquet") as tmp:
        comp.to_parquet(tmp, index=False)
    with atomic_path(study.folder / "scores.parquet") as tmp:
        pq.write_table(table, tmp)
    write_json(study.folder / "manifest.json",
               {**read_json(study.folder / "manifest.json"), "n_relevant": len(rel),
                "n_nonrelevant": len(non), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


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
                segment: str = "all", progress: bool = True) -> dict[str, Any]:
    """Studies of ``data`` (in-domain) and each ``ood`` set, then their combination.

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
        studies.append(run_study(model, source, folder, config, progress=progress))
    tables = [s.scores for s in studies]
    fused = fuse(tables)
    fusion_dir = out / "fusion"
    manifest = {**studies[0].manifest, "kind": "irlens.neurons.fusion",
                "dataset": {"name": "fusion", "of": [s.name for s in studies]}}
    write_json(fusion_dir / "manifest.json", manifest)
    table = pa.Table.from_pandas(fused, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           _META_KEY: json.dumps(manifest, default=str)})
    with atomic_path(fusion_dir / "scores.parquet") as tmp:
        pq.write_table(table, tmp)
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
               "kept_pairs": {n: s.manifest.get("n_relevant")
                              for n, s in zip(names, studies, strict=True)}}
    write_json(out / "summary.json", summary)
    return summary
