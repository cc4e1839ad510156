"""Reichman & Heck's pipeline: edit the base model, retrieval-train it, and check which
edits survive, against an unedited model trained the same way (the control).

Stages, each a resumable job: ``base`` (the model as loaded), ``edited`` (every request
edited, one after another, saved as a model folder), ``edited+trained`` (that folder
trained with :func:`irlens.training.train_bi_encoder`) and ``control+trained`` (the base
trained with the same options). For each stage and request the table says the
document's rank for the request's query and whether the edit holds there (insert: top
10; remove: out of it), with the stage's nDCG@10 over the dataset's judged queries. The
trainings skip their own test evaluation (``eval_split=None``) unless ``train`` asks
for one: the stages are measured here, on the same corpus as the edits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.editing.measures import EditBench, ranking_run
from irlens.editing.requests import make_requests, rank_corpus
from irlens.editing.study import EditConfig, _editor, edit_data
from irlens.errors import IrlensError
from irlens.evaluation import evaluate
from irlens.models import load_model

__all__ = ["STAGES", "StageRanks", "edit_then_train"]

STAGES = ("base", "edited", "edited+trained", "control+trained")


@dataclass(repr=False)
class StageRanks(Artifact):
    """Ranks of every request's document at one stage."""

    kind: ClassVar[str] = "edit-survival"

    manifest: Manifest
    rows: list[dict]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        return f"{len(self.rows)} requests"


def edit_then_train(model: str, data: str | Path, out: str | Path, config: EditConfig,
                    train: dict[str, Any] | None = None, progress: bool = True,
                    max_length: int | None = None, device: str = "auto") -> pd.DataFrame:
    """Run the four stages (see the module docstring); one row per (stage, request)."""
    from irlens.training import train_bi_encoder

    train = {"eval_split": None, **(train or {})}
    out = Path(out)
    if config.split == train.get("split", "train"):
        raise IrlensError("edit requests and training use the same split; edit test "
                          "queries and train on the train split")
    base = load_model(model, device=device, max_length=max_length)
    dataset = edit_data(data, config)
    store = Store(out, make_manifest("edit-pipeline", {**asdict(config), "train": train,
                                                       "model": model,
                                                       "max_length": max_length},
                                     model=base, data=dataset))
    bench = EditBench(base, dataset, progress=progress)
    requests = make_requests(base, dataset, config.kind, config.n, seed=config.seed,
                             ranking=bench.before)
    folders = {"base": model, "edited": str(out / "models" / "edited"),
               "edited+trained": str(out / "models" / "edited-trained"),
               "control+trained": str(out / "models" / "control-trained")}
    if not (Path(folders["edited"]) / "config.json").is_file():
        edit = _editor(config, base, dataset, bench).fit(base, requests)
        edit.save_model(base, folders["edited"])
    for source, target in (("edited", "edited+trained"), ("base", "control+trained")):
        if not (Path(folders[target]) / "config.json").is_file():
            train_bi_encoder(folders[source], data, folders[target], progress=progress,
                             **train)

    def stage(name: str):
        def run() -> StageRanks:
            m = base if name == "base" else load_model(folders[name], device=device,
                                                       max_length=max_length)
            ranking = bench.before if name == "base" else rank_corpus(m, dataset)
            ndcg = evaluate(ranking_run(ranking, bench.judged), dataset.qrels, ["nDCG@10"])
            rows = []
            for r in requests:
                rank = ranking.rank(r.query_id, r.doc_id)
                rows.append({"stage": name, "kind": r.kind, "query_id": r.query_id,
                             "doc_id": r.doc_id, "rank": rank,
                             "holds": rank <= 10 if r.kind == "insert" else rank > 10,
                             "ndcg10": ndcg.aggregate["nDCG@10"]})
            return StageRanks(make_manifest("edit-survival", {"stage": name}), rows)
        return run

    jobs = {name.replace("+", "-"): stage(name) for name in STAGES}
    done = resume(store, jobs, StageRanks, progress=progress, desc="stages")
    return pd.concat([d.to_frame() for d in done.values()], ignore_index=True)
