"""An editing run: requests from real data, one editor, every edit measured; resumable.

Each request is one job of a :class:`~irlens.artifacts.Store` (its rows saved as an
:class:`EditRecord`), so an interrupted run resumes where it stopped and a changed
config, model or dataset is refused rather than mixed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.data import load_dataset
from irlens.editing.covariance import cached_covariance
from irlens.editing.editors import EDITORS, edited_side, make_editor
from irlens.editing.measures import EditBench
from irlens.editing.requests import KINDS, make_requests
from irlens.errors import IrlensError
from irlens.hooks import hook_points
from irlens.models import BiEncoder

__all__ = ["EditConfig", "EditRecord", "edit_data", "run_edits", "summarise"]


@dataclass
class EditConfig:
    """What one editing run does (recorded in its manifest)."""

    editor: str = "rome"
    kind: str = "insert"
    n: int = 50
    seed: int = 0
    layer: int | None = None  # rome: the last when unset; ft: every weight; kn: every layer
    steps: int = 60
    split: str = "test"
    covariance_docs: int = 1000
    max_docs: int | None = None  # quick runs: judged documents plus distractors up to N
    max_queries: int | None = None

    def __post_init__(self) -> None:
        if self.editor not in EDITORS:
            raise IrlensError(f"unknown editor '{self.editor}'; use {', '.join(EDITORS)}")
        if self.kind not in KINDS:
            raise IrlensError(f"unknown edit kind '{self.kind}'; use insert or remove")
        if self.n < 1:
            raise IrlensError(f"--n must be >= 1 edit request, got {self.n}")


@dataclass(repr=False)
class EditRecord(Artifact):
    """The measured rows of one job (one request, or several edited together)."""

    kind: ClassVar[str] = "edit-record"

    manifest: Manifest
    rows: list[dict]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        return f"{len(self.rows)} edits"


def _editor(config: EditConfig, model: BiEncoder, dataset, bench: EditBench | None = None):
    """The config's editor; ``bench`` (the model as loaded, on ``dataset``) lets the
    rank-one editor fit against the whole corpus's competitors."""
    if config.editor == "rome":
        last = sum(1 for p in hook_points(model, "doc").values() if p.kind == "resid") - 1
        layer = last if config.layer is None else config.layer
        moment = cached_covariance(model, dataset, layer, config.covariance_docs,
                                   side=edited_side(model))
        return make_editor("rome", moment=moment, layer=layer, steps=config.steps,
                           corpus=bench)
    if config.editor == "kn":
        return make_editor("kn", layer=config.layer)
    return make_editor(config.editor, layer=config.layer, steps=config.steps)


def edit_data(data: str | Path, config: EditConfig):
    """The split the requests come from, cut to ``max_docs``/``max_queries`` if set."""
    dataset = load_dataset(data, split=config.split)
    if config.max_docs or config.max_queries:
        dataset = dataset.subset(config.max_docs, config.max_queries)
    return dataset


def run_edits(model: BiEncoder, data: str | Path, out: str | Path, config: EditConfig,
              progress: bool = True, bench: EditBench | None = None) -> pd.DataFrame:
    """Make ``config.n`` requests, edit and measure each one; rows of every edit.
    ``bench`` (of ``model`` on this config's data) may be shared by several runs, so its
    layer states are computed once."""
    if not isinstance(model, BiEncoder):
        raise IrlensError("editing measures retrieval by a bi-encoder; load one (e.g. "
                          "'default')")
    dataset = edit_data(data, config)
    store = Store(out, make_manifest("edit-study", asdict(config), model=model, data=dataset))
    if bench is None or bench.model is not model or bench.dataset.fingerprint != \
            dataset.fingerprint:
        bench = EditBench(model, dataset, progress=progress)
    requests = make_requests(model, dataset, config.kind, config.n, seed=config.seed,
                             ranking=bench.before)
    start = time.perf_counter()
    editor = _editor(config, model, dataset, bench)
    setup = time.perf_counter() - start

    def job(request):
        def run() -> EditRecord:
            rows = bench.measure(editor.fit(model, [request]), [request])
            return EditRecord(make_manifest("edit-record", asdict(config), model=model,
                                            data=dataset), rows)
        return run

    jobs = {f"{i:03d}-{r.kind}-{r.query_id}-{r.doc_id}".replace("/", "_"): job(r)
            for i, r in enumerate(requests)}
    done = resume(store, jobs, EditRecord, progress=progress, desc=f"{config.editor} edits")
    frame = pd.concat([d.to_frame() for d in done.values()], ignore_index=True)
    frame.insert(0, "editor", config.editor)
    frame["setup_seconds"] = setup
    return frame


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (editor, kind): efficacy, median ranks, generalisation (mean over the
    edits that have other judged queries; how many edits and queries that is), robustness
    (shuffled / word-dropped query), locality and cost."""
    grouped = frame.groupby(["editor", "kind"])
    return pd.DataFrame({
        "edits": grouped.size(),
        "efficacy": grouped["efficacy"].mean(),
        "median_rank_before": grouped["rank_before"].median(),
        "median_rank_after": grouped["rank_after"].median(),
        "generalisation": grouped["generalisation"].mean(),
        "generalisation_edits": grouped["n_generalisation"].apply(lambda s: int((s > 0).sum())),
        "generalisation_queries": grouped["n_generalisation"].sum(),
        "robustness": grouped["robustness"].mean(),
        "delta_ndcg10_mean": grouped["locality_delta_ndcg10"].mean(),
        "delta_ndcg10_max_abs": grouped["locality_delta_ndcg10"].apply(lambda s: s.abs().max()),
        "top10_changes_mean": grouped["locality_top10_changes"].mean(),
        "doc_cosine_mean": grouped["locality_doc_cosine"].mean(),
        "seconds_per_edit": grouped["seconds"].mean(),
    }).reset_index()
