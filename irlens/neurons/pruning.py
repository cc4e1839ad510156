"""Prune relevance neurons and measure retrieval against the intact model and random units.

:func:`prune` is a context manager over :func:`irlens.hooks.ablate`: it zeroes (or
mean-ablates) the selected units at all positions or one segment's, and the model is
the same bit for bit once it exits, exceptions included (no weight is ever touched).

:func:`evaluate_pruning` runs the study: for each p in ``ps`` the top p% relevance
units against ``seeds`` random selections of the same size, plus per-layer pruning (the
top ``layer_p``% of one layer against random units of that layer), each scored with
ir_measures. How documents are ranked:

- cross-encoders rerank BM25's top ``depth`` (default 100);
- bi-encoders search the whole corpus (``pool="full"``), re-encoded for every pruned
  model, or rank each query's candidate pool (``pool="judged+bm25"``: its judged
  documents plus BM25's top ``depth``), which encodes only the pools' union;
  ``pool="auto"`` (default) searches corpora of up to 20,000 documents in full and pools
  larger ones (msmarco-dl19's 35,697 passages); ``pool="bm25"`` ranks BM25's top
  ``depth`` only, the same candidates a cross-encoder reranks (cheapest; unjudged
  candidates count as non-relevant).
  ``max_length`` caps document tokens for both kinds (cheaper, and said in the result).

Every finished evaluation is saved at once as a job of the run folder
(:class:`irlens.artifacts.Store`), so an interrupted run resumes where it stopped; a rerun
with more p values, seeds or a per-layer p reuses the evaluations it already has, and a
rerun with another model, neuron study, dataset or configuration is refused.

The table compares the relevance drop with the random units' spread: the *excess* drop
(relevance minus the mean random drop) and its 95% confidence interval over seeds.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.errors import IrlensError
from irlens.executors import Executor
from irlens.hooks import ablate, capture
from irlens.models import BiEncoder, CrossEncoder, Retriever, Segment
from irlens.neurons.selection import Selection, check_options, random_like, select
from irlens.neurons.study import Study, check_model, library_versions, resolve_neurons

__all__ = ["VERDICTS", "PruningConfig", "PruningEval", "PruningResult", "candidate_pool",
           "evaluate_pruning", "evaluate_selection", "prune", "pruning_jobs", "unit_means"]

POOLS = ("auto", "full", "judged+bm25", "bm25")
FULL_UP_TO = 20_000
HOWS = ("zero", "mean")


@contextmanager
def prune(model: Retriever, selection: Selection, *, positions: str | None = None,
          how: str = "zero", values: dict[str, torch.Tensor] | None = None
          ) -> Iterator[Retriever]:
    """Ablate ``selection``'s units while the block runs; the model is restored on exit.

    ``positions``: None or ``"all"`` (every token), or a segment (``query``, ``doc``,
    ``cls``, ``sep``, ``end``). ``how="mean"`` needs ``values`` from :func:`unit_means`.
    """
    names = [hook for hook, units in selection.units.items() if units]
    if not names:
        raise IrlensError("empty selection: no unit to prune; raise p or check the scores")
    if positions == "all":
        positions = None
    if positions is not None and positions not in Segment.NAMES:
        raise IrlensError(f"unknown positions '{positions}'; use all, "
                          f"{', '.join(Segment.NAMES)}")
    if how not in HOWS:
        raise IrlensError(f"unknown ablation '{how}'; use zero or mean")
    if how == "mean":
        missing = [n for n in names if values is None or n not in values]
        if missing:
            raise IrlensError(f"mean ablation needs unit means for {missing[0]}; compute "
                              "them with unit_means(model, dataset, hooks)")
    with ablate(model, names, units={n: selection.units[n] for n in names},
                positions=positions, how=how, values=values):
        yield model


@torch.no_grad()
def unit_means(model: Retriever, dataset, hooks: list[str], n_texts: int = 64,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """Mean activation of each unit over the real tokens of ``n_texts`` relevant pairs
    (cross-encoders) or documents (bi-encoders) of ``dataset``, per hook -> [units]."""
    from irlens.data import sample_pairs

    pairs = sample_pairs(dataset, min(n_texts, _n_relevant(dataset)), seed=seed)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for start in range(0, len(pairs), 16):
        chunk = pairs[start:start + 16]
        docs = [dataset.corpus[d].contents for _, d in chunk]
        if isinstance(model, CrossEncoder):
            batch = model.tokenize([dataset.queries[q] for q, _ in chunk], docs)
        else:
            batch = model.tokenize(docs, "doc")
        mask = batch.attention_mask.unsqueeze(-1).float()
        with capture(model, hooks) as cache:
            model.forward_embeds(batch)
        for hook in hooks:
            act = cache[hook]
            if act.dim() != 3:
                raise IrlensError(f"mean ablation applies to FFN units, not {hook}")
            total = (act.float() * mask).sum((0, 1)).cpu()
            sums[hook] = sums[hook] + total if hook in sums else total
        count += int(mask.sum())
    return {hook: total / max(count, 1) for hook, total in sums.items()}


def _n_relevant(dataset) -> int:
    return sum(1 for qid in dataset.qrels for _ in dataset.relevant(qid))


@dataclass
class PruningConfig:
    """What to prune and how to evaluate it (see the module docstring)."""

    ps: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)
    seeds: int = 5
    kind: str = "ffn"
    score: str = "relevant"
    segment: str = "all"
    scope: str = "global"
    positions: str | None = None
    how: str = "zero"
    random_match: str = "global"
    layer_p: float | None = 1.0
    metrics: tuple[str, ...] = ("nDCG@10", "RR@10")
    split: str = "test"
    depth: int = 100
    pool: str = "auto"
    max_length: int | None = None
    max_queries: int | None = None
    batch_size: int = 128
    held_out: bool = False  # drop the queries of the neuron study's triplets from the data


@dataclass(repr=False)
class PruningEval(Artifact):
    """One finished evaluation of a pruning run (one row of :class:`PruningResult`)."""

    kind: ClassVar[str] = "pruning.eval"
    manifest: Manifest
    row: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.row])

    def summary(self) -> str:
        return str(self.row.get("key", ""))


@dataclass(repr=False)
class PruningResult(Artifact):
    """One row per evaluation: ``experiment`` (``curve`` or ``layer``), ``layer`` (-1 for
    the curve, printed ``all``), ``p``, ``selection`` (``intact``, ``relevance``,
    ``random``), ``seed``, ``n_units`` and one column per metric."""

    kind: ClassVar[str] = "pruning"
    manifest: Manifest
    records: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: pd.DataFrame, parameters: dict[str, Any],
           manifest: Manifest | None = None) -> PruningResult:
        return cls(manifest or Manifest("pruning"), rows.to_dict("records"), parameters)

    @property
    def rows(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)

    def to_frame(self) -> pd.DataFrame:
        return self.rows

    def summary(self) -> pd.DataFrame:  # type: ignore[override]
        """Per dataset, experiment, layer and p, for each metric: intact, relevance and
        random scores; the relevance drop, the random drop (mean and std over seeds), and
        the *excess* drop (relevance minus random) with its 95% confidence interval over
        seeds (Student t, :func:`scipy.stats.t.interval`)."""
        out = []
        metrics = self.parameters.get("metrics", [])
        rows = self.rows
        for (data, exp, layer, p), group in rows[rows["selection"] != "intact"] \
                .groupby(["dataset", "experiment", "layer", "p"], sort=True):
            intact = rows[(rows["dataset"] == data) & (rows["selection"] == "intact")]
            row: dict[str, Any] = {"dataset": data, "experiment": exp, "layer": int(layer),
                                   "p": float(p)}
            rel = group[group["selection"] == "relevance"]
            rnd = group[group["selection"] == "random"]
            row["n_units"] = int(rel["n_units"].iloc[0]) if len(rel) else 0
            row["seeds"] = len(rnd)
            for m in metrics:
                base = float(intact[m].iloc[0])
                r = float(rel[m].iloc[0]) if len(rel) else float("nan")
                drops = base - rnd[m].astype(float)
                mean = float(drops.mean())
                std = float(drops.std(ddof=1)) if len(drops) > 1 else float("nan")
                lo, hi = _excess_ci(base - r, drops.to_numpy())
                row |= {f"{m} intact": base, f"{m} relevance": r,
                        f"{m} random": float(rnd[m].mean()), f"{m} random std": std,
                        f"{m} drop relevance": base - r, f"{m} drop random": mean,
                        f"{m} excess": base - r - mean, f"{m} excess lo": lo,
                        f"{m} excess hi": hi, f"{m} verdict": _verdict(lo, hi)}
            out.append(row)
        return pd.DataFrame(out)

    def short(self) -> str:
        return f"{len(self.records)} evaluations"

    def __repr__(self) -> str:
        return f"<PruningResult {self.short()} on {self.parameters.get('dataset')}>"

    @classmethod
    def load(cls, path: str | Path) -> PruningResult:  # type: ignore[override]
        """A result folder, or a ``pruning-<dataset>`` run folder (its ``result``)."""
        path = Path(path)
        if (path / "result" / "manifest.json").is_file():
            path = path / "result"
        return super().load(path)

    def to_json(self) -> str:
        summary = self.summary()
        return json.dumps({"parameters": self.parameters,
                           "summary": json.loads(summary.to_json(orient="records"))}, indent=2)

    def plot(self, path: str | Path, metric: str | None = None) -> Path:
        from irlens.neurons.report import plot_pruning

        return plot_pruning(self, path, metric)


VERDICTS = {
    "above": "pruning the relevance units costs more than random units (95% CI above 0)",
    "within": "not distinguishable from random units (95% CI includes 0)",
    "below": "pruning the relevance units costs less than random units (95% CI below 0)",
    "n/a": "one random seed: no interval; rerun with --seeds 3 or more",
}


def _excess_ci(drop_relevance: float, random_drops: np.ndarray) -> tuple[float, float]:
    """95% CI of ``drop_relevance - mean(random drops)`` over seeds (t interval; the
    relevance selection is one fixed draw, so the spread is the random units')."""
    from scipy import stats

    n = len(random_drops)
    if n < 2 or not np.isfinite(drop_relevance):
        return float("nan"), float("nan")
    excess = drop_relevance - float(np.mean(random_drops))
    sem = float(stats.sem(random_drops))
    if sem == 0:
        return excess, excess
    lo, hi = stats.t.interval(0.95, n - 1, loc=excess, scale=sem)
    return float(lo), float(hi)


def _verdict(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return "above" if lo > 0 else "below" if hi < 0 else "within"


def _load_scores(neurons: Study | str | Path | pd.DataFrame
                 ) -> tuple[pd.DataFrame, Study | None]:
    if isinstance(neurons, pd.DataFrame):
        return neurons, None
    study = neurons if isinstance(neurons, Study) else resolve_neurons(neurons)[0]
    return study.scores, study


@contextmanager
def _doc_limit(model: Retriever, max_length: int | None) -> Iterator[None]:
    saved = model.max_length
    try:
        if max_length is not None:
            model.max_length = int(max_length)
        yield
    finally:
        model.max_length = saved


def candidate_pool(model: Retriever, dataset, config: PruningConfig):
    """The documents each query ranks (None: a full dense search), shared by every
    evaluation of a run."""
    from irlens.retrieval import bm25_search

    if isinstance(model, BiEncoder) and _pool(config, dataset) == "full":
        return None
    bm25 = bm25_search(dataset, k=config.depth, progress=False)
    if isinstance(model, CrossEncoder) or _pool(config, dataset) == "bm25":
        return bm25
    return {qid: {**{d: 0.0 for d in bm25.get(qid, {})},
                  **{d: 0.0 for d in dataset.qrels.get(qid, {}) if d in dataset.corpus}}
            for qid in dataset.queries}


def evaluate_selection(model: Retriever, dataset, candidates, selection: Selection | None,
                       config: PruningConfig, values: dict[str, torch.Tensor] | None = None
                       ) -> dict[str, float]:
    """One evaluation: the metrics of ``model`` with ``selection`` pruned (None: intact),
    ranking ``candidates`` (:func:`candidate_pool`); the model is restored on exit."""
    with _doc_limit(model, config.max_length):
        if selection is None:
            return _measure(model, dataset, candidates, config)
        with prune(model, selection, positions=config.positions, how=config.how,
                   values=values):
            return _measure(model, dataset, candidates, config)


def _measure(model: Retriever, dataset, candidates, config: PruningConfig
             ) -> dict[str, float]:
    from irlens.evaluation import evaluate, search_depth
    from irlens.retrieval import dense_search, rerank

    if candidates is None:
        k = search_depth(config.metrics, len(dataset.corpus))  # R@1000 needs 1000, AP all
        with tempfile.TemporaryDirectory(prefix="irlens-prune-") as cache:
            run = dense_search(model, dataset, k=k, batch_size=config.batch_size,
                               cache_dir=cache, progress=False)
    else:
        depth = max(len(v) for v in candidates.values()) if candidates else 1
        run = rerank(model, dataset, candidates, depth=depth, batch_size=config.batch_size,
                     progress=False)
    return evaluate(run, dataset.qrels, list(config.metrics)).aggregate


def evaluate_pruning(model: Retriever, data: str | Path, neurons: Study | str | Path,
                     config: PruningConfig | None = None, *, out_dir: str | Path | None = None,
                     values: dict[str, torch.Tensor] | None = None,
                     progress: bool = True,
                     executor: Executor | None = None) -> PruningResult:
    """Prune the relevance units of ``neurons`` (a study folder or its scores) and score
    retrieval on ``data``: intact, top p% and ``seeds`` random draws per p, per layer.

    The study must come from this model (same kind, unit counts and weights). With
    ``out_dir``, each evaluation is a job of the run folder ``out_dir/pruning-<dataset>``
    (:class:`irlens.artifacts.Store`): a rerun computes only the missing ones (more p
    values or seeds reuse the rest), and another model, neuron study, dataset or
    configuration in the same folder is refused. The result is also saved there
    (``result/``).
    """
    from irlens.data import load_dataset

    config = config or PruningConfig()
    _validate(config, model)
    for p in [*config.ps, *([config.layer_p] if config.layer_p is not None else [])]:
        check_options(p, config.score, config.scope, config.kind)
    scores, study = _load_scores(neurons)
    if study is not None:
        check_model(study.manifest, model)
    dataset = load_dataset(data, split=config.split, max_queries=config.max_queries)
    if config.held_out and study is not None:
        dataset = without_triplet_queries(dataset, study)
    if not any(dataset.relevant(q) for q in dataset.queries):
        raise IrlensError(f"{dataset.name} ({config.split}) has no relevant judgements")
    jobs = pruning_jobs(scores, config)  # also validates p values and catches empty selections
    neurons_id = f"{'table' if study is None else study.name}:{_scores_hash(scores)}"
    params = {**asdict(config), "dataset": dataset.name, "model_id": model.model_id,
              "n_queries": len(dataset.queries), "model_class": type(model).__name__,
              "ranking": _ranking(model, config, dataset), "versions": library_versions(),
              "neurons": None if study is None else study.info.get("dataset"),
              "neurons_id": neurons_id}
    run_config = {k: v for k, v in params.items()
                  if k not in ("versions", "batch_size", "ps", "seeds", "layer_p", "dataset",
                               "n_queries")}
    manifest = make_manifest("pruning.run", run_config, model=model, data=dataset)
    store = None if out_dir is None else Store(Path(out_dir) / f"pruning-{_safe(dataset.name)}",
                                               manifest)
    if config.how == "mean" and values is None:
        hooks = sorted({h for _, sel in jobs if sel is not None for h in sel.units})
        values = unit_means(model, dataset, hooks)
    state: dict[str, Any] = {}

    def job(key: str, sel: Selection | None):
        def run() -> PruningEval:
            if "candidates" not in state:
                state["candidates"] = candidate_pool(model, dataset, config)
            start = time.time()
            values_m = evaluate_selection(model, dataset, state["candidates"], sel, config,
                                          values)
            exp, layer, p, kind, seed = key.split("|")
            return PruningEval(manifest, {
                "key": key, "dataset": dataset.name, "experiment": exp, "layer": int(layer),
                "p": float(p), "selection": kind, "seed": int(seed),
                "n_units": 0 if sel is None else sel.n,
                "seconds": round(time.time() - start, 2), **values_m})
        return run

    todo = {key: job(key, sel) for key, sel in jobs}
    if store is None:
        from tqdm.auto import tqdm

        rows = [todo[key]().row for key in tqdm(todo, desc=f"prune {dataset.name}",
                                                 unit="eval", disable=not progress)]
    else:
        done = resume(store, todo, PruningEval, progress=progress,
                      desc=f"prune {dataset.name}", executor=executor)
        rows = [done[key].row for key in todo]
    result = PruningResult(manifest, rows, params)
    if store is not None:
        result.save(store.folder / "result")
    return result


def without_triplet_queries(dataset, study: Study):
    """``dataset`` without the queries (same id and text) of ``study``'s sampled triplets:
    the units were chosen on those, so they are not held out."""
    from irlens.data import Dataset

    try:
        frame = study.triplets
    except (FileNotFoundError, IrlensError):  # a fusion of studies has no triplets table
        raise IrlensError(f"{study.folder} has no triplets to hold out; prune without "
                          "--held-out") from None
    used = set(zip(frame["qid"].astype(str), frame["query"], strict=True))
    keep = [q for q in dataset.query_ids if (q, dataset.queries[q]) not in used]
    return Dataset(name=dataset.name, corpus=dataset.corpus,
                   queries={q: dataset.queries[q] for q in keep},
                   qrels={q: dataset.qrels[q] for q in keep if q in dataset.qrels},
                   split=dataset.split, source=dataset.source)


def _safe(name: str) -> str:
    """A dataset name usable as one folder name (ir_datasets ids contain '/')."""
    return name.replace("/", "_").replace("\\", "_") or "data"


def _scores_hash(scores: pd.DataFrame) -> str:
    """A short content hash of a scores table (which neuron study the units come from)."""
    import hashlib

    digest = hashlib.sha1(pd.util.hash_pandas_object(scores, index=False).to_numpy()
                          .tobytes())
    return digest.hexdigest()[:12]


def _pool(config: PruningConfig, dataset) -> str:
    if config.pool != "auto":
        return config.pool
    return "full" if len(dataset.corpus) <= FULL_UP_TO else "judged+bm25"


def _ranking(model: Retriever, config: PruningConfig, dataset) -> str:
    cap = "" if config.max_length is None else f", documents cut to {config.max_length} tokens"
    if isinstance(model, CrossEncoder):
        return f"rerank BM25 top-{config.depth}{cap}"
    if _pool(config, dataset) == "full":
        return f"dense search of the full corpus (re-encoded per model){cap}"
    if _pool(config, dataset) == "bm25":
        return f"rank BM25 top-{config.depth} per query{cap}"
    return f"rank judged + BM25 top-{config.depth} per query{cap}"


def _validate(config: PruningConfig, model: Retriever) -> None:
    if config.pool not in POOLS:
        raise IrlensError(f"unknown pool '{config.pool}'; use {', '.join(POOLS)}")
    if config.how not in HOWS:
        raise IrlensError(f"unknown ablation '{config.how}'; use zero or mean")
    if config.seeds < 1:
        raise IrlensError(f"seeds must be >= 1, got {config.seeds}")
    if not config.ps and config.layer_p is None:
        raise IrlensError("nothing to evaluate: give at least one p or a layer_p")
    if config.positions not in (None, "all", *Segment.NAMES):
        raise IrlensError(f"unknown positions '{config.positions}'; use all, "
                          f"{', '.join(Segment.NAMES)}")


def pruning_jobs(scores: pd.DataFrame, config: PruningConfig
                 ) -> list[tuple[str, Selection | None]]:
    """(key, selection) for every evaluation; key = experiment|layer|p|selection|seed."""
    common = {"kind": config.kind, "score": config.score, "segment": config.segment}
    jobs: list[tuple[str, Selection | None]] = [("curve|-1|0|intact|-1", None)]
    for p in config.ps:
        top = select(scores, p, scope=config.scope, **common)
        jobs.append((f"curve|-1|{p}|relevance|-1", top))
        jobs += [(f"curve|-1|{p}|random|{s}", random_like(scores, top, s, config.random_match))
                 for s in range(config.seeds)]
    if config.layer_p is not None:
        layers = sorted(int(x) for x in scores.loc[scores["kind"] == config.kind, "layer"]
                        .unique())
        for layer in layers:
            top = select(scores, config.layer_p, layers=[layer], **common)
            jobs.append((f"layer|{layer}|{config.layer_p}|relevance|-1", top))
            jobs += [(f"layer|{layer}|{config.layer_p}|random|{s}",
                      random_like(scores, top, s, "global")) for s in range(config.seeds)]
    return jobs
