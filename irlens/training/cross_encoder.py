"""Fine-tune a cross-encoder reranker: BM25 negatives, optionally distilled from a bi-encoder.

No cross-encoder ships offline, so :func:`train_cross_encoder` makes one from the default
model's weights (all-MiniLM-L6-v2 with a new one-logit head) and saves a plain Hugging
Face ``*ForSequenceClassification`` folder that :func:`irlens.load_model` opens as a
:class:`~irlens.models.CrossEncoder`. It then reranks BM25's top ``eval_depth`` on the
evaluation split and reports nDCG@10 and RR@10 next to BM25 alone.

Training data are *groups*: a query, one relevant passage and ``negatives`` non-relevant
ones. Sources: a BEIR folder (its ``split`` qrels; negatives from each query's BM25 top
``bm25_depth``, judged-relevant documents excluded) or an MS MARCO ``triples.train`` TSV
(query, positive, BM25 negative; a query's lines are merged). ``teacher_negatives``,
``bm25_negatives`` and ``random_negatives`` add negatives mined from the training data's
*own* passages (:mod:`irlens.training.mining`). No other collection is ever read: mining
an evaluated collection's pool (least of all one filtered by its judgements) would let
the model learn that collection's judgements. The files training read are fingerprinted
in the model folder (:mod:`irlens.training.provenance`), and evaluating on them warns.

Losses (sentence-transformers' cross-encoder losses):

- no teacher: ``BinaryCrossEntropyLoss`` on (query, passage, 0/1) pairs, the loss of the
  ms-marco MiniLM rerankers;
- ``teacher`` (a bi-encoder, e.g. ``default``) with ``distillation="listwise"`` (the
  default): ``ListNetLoss`` against the teacher's softmax over each group, i.e. listwise
  KL distillation with temperature ``1 / teacher_scale`` (as in RankGPT/RankZephyr-style
  and Rank-DistiLLM distillation); every passage in a group is a training signal;
- ``distillation="margin-mse"``: Margin-MSE (Hofstaetter et al. 2020, "Improving
  Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation"): the
  student's margins ``s(q, p) - s(q, n_i)`` regress the teacher's similarity margins
  times ``teacher_scale``. With 1,000 MS MARCO queries it learns far more slowly than
  the listwise loss (docs/training.md).

Checkpoints are written every ``save_steps`` beside the output folder (``.NAME.ckpt``) and
a rerun with the same arguments resumes from the last one. Training needs
``pip install "sentence-transformers[train]"`` (datasets, accelerate).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from irlens._io import write_json
from irlens.artifacts import Artifact, Manifest, atomic_dir, make_manifest
from irlens.errors import IrlensError
from irlens.training._common import check_split, checkpoint_dir, require_training, run_trainer
from irlens.training.provenance import PROVENANCE_FILE, training_files

__all__ = ["Group", "TrainingResult", "labelled_pairs", "rerank_evaluation",
           "teacher_scores", "train_cross_encoder", "training_groups"]


@dataclass
class TrainingResult(Artifact):
    """Where the model went, what it was trained on, and its effectiveness before/after.

    ``evaluation`` holds ``{"bm25"|"before"|"reranked"|"after": {metric: value}}`` plus
    the dataset, split, depth and query count; it is saved as ``OUT/training`` (manifest
    and a tidy ``table.parquet``).
    """

    manifest: Manifest
    model_dir: str
    n_pairs: int
    n_positive: int
    parameters: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    train_loss: list[float] = field(default_factory=list)

    kind: ClassVar[str] = "training"

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for system, values in self.evaluation.items():
            if isinstance(values, Mapping):
                rows += [{"system": system, "measure": m, "value": float(v),
                          "dataset": self.evaluation.get("dataset"),
                          "split": self.evaluation.get("split")} for m, v in values.items()]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        figures = ", ".join(f"{k} {v.get('nDCG@10', float('nan')):.4f}"
                            for k, v in self.evaluation.items() if isinstance(v, Mapping))
        return f"{self.n_pairs} pairs{', ' + figures if figures else ''}"


@dataclass
class Group:
    """One training query with a relevant passage and non-relevant ones."""

    query: str
    positive: str
    negatives: list[str]


def labelled_pairs(data: str | Path, split: str = "train", negatives: int = 3,
                   bm25_depth: int = 100, max_positives: int | None = None, seed: int = 0,
                   min_relevance: int = 1, random_negatives: int = 0
                   ) -> list[tuple[str, str, int]]:
    """(query, document, label) rows: each relevant pair plus ``negatives`` BM25 negatives
    and ``random_negatives`` other documents drawn at random (easy negatives).

    ``data`` is a BEIR folder or a ``triples.train`` TSV file (one BM25 negative per line;
    random negatives come from the other lines' passages).
    """
    from irlens.data import load_dataset, load_triples_tsv, sample_pairs

    path = Path(data)
    rng = random.Random(seed)
    if path.is_file():
        triplets = load_triples_tsv(path, limit=max_positives)
        passages = sorted({t.pos_text for t in triplets} | {t.neg_text for t in triplets})
        rows = []
        for t in triplets:
            rows += [(t.query, t.pos_text, 1), (t.query, t.neg_text, 0)]
            own = {t.pos_text, t.neg_text}
            extra = [d for d in rng.sample(passages, min(len(passages), random_negatives + 2))
                     if d not in own][:random_negatives]
            rows += [(t.query, d, 0) for d in extra]
        return rows
    from irlens.retrieval import bm25_search

    dataset = load_dataset(path, split=split)
    pairs = sample_pairs(dataset, None, seed=seed, min_relevance=min_relevance)
    if max_positives is not None:
        pairs = pairs[:max_positives]
    if not pairs:
        raise IrlensError(f"{dataset.name} ({split}) has no relevant pairs to train on")
    run = bm25_search(dataset, k=bm25_depth, progress=False)
    rows = []
    for qid, pos_id in pairs:
        judged = dataset.qrels.get(qid, {})
        pool = sorted(d for d in run.get(qid, {}) if judged.get(d, -1) < min_relevance)
        query = dataset.queries[qid]
        rows.append((query, dataset.corpus[pos_id].contents, 1))
        for neg_id in rng.sample(pool, min(negatives, len(pool))):
            rows.append((query, dataset.corpus[neg_id].contents, 0))
        others = [d for d in rng.sample(dataset.doc_ids, min(len(dataset.doc_ids),
                                                             random_negatives + 5))
                  if judged.get(d, -1) < min_relevance][:random_negatives]
        rows += [(query, dataset.corpus[d].contents, 0) for d in others]
    return rows


def training_groups(data: str | Path, split: str = "train", negatives: int = 3, *,
                    bm25_depth: int = 100, max_queries: int | None = None, seed: int = 0,
                    min_relevance: int = 1, exact: bool = True, teacher=None,
                    teacher_negatives: int = 0, bm25_negatives: int = 0,
                    random_negatives: int = 0) -> list[Group]:
    """One :class:`Group` per training query with ``negatives`` negatives (``exact=False``:
    up to ``negatives``, at least one; binary cross-entropy needs no fixed group size).

    BEIR folder: a random relevant document per query, negatives from its BM25 top
    ``bm25_depth`` minus every document judged >= ``min_relevance`` for it. Triples TSV:
    the query's first positive, its own negatives first. Then the negatives mined from
    ``data``'s own passages (:func:`~irlens.training.mining.mine_negatives`: the
    ``teacher``'s top ``teacher_negatives``, BM25's top ``bm25_negatives``,
    ``random_negatives`` at random; never a positive nor the own negative kept first);
    nothing outside ``data`` is read. Queries with too
    few negatives are dropped.
    """
    from irlens.data import load_dataset, load_triples_tsv
    from irlens.training.mining import mine_negatives

    rng = random.Random(seed)
    path = Path(data)
    found: dict[str, tuple[str, list[str]]] = {}  # query text -> (positive, negatives)
    relevant_texts: dict[str, set[str]] = {}
    if path.is_file():
        triplets = load_triples_tsv(path)
        passages = [d for t in triplets for d in (t.pos_text, t.neg_text)]
        for t in triplets:
            relevant_texts.setdefault(t.query, set()).add(t.pos_text)
        for t in triplets:
            pos, negs = found.setdefault(t.query, (t.pos_text, []))
            if t.neg_text not in negs and t.neg_text not in relevant_texts[t.query]:
                negs.append(t.neg_text)
    else:
        from irlens.retrieval import bm25_search

        dataset = load_dataset(path, split=split)
        passages = dataset.doc_texts()
        run = bm25_search(dataset, k=bm25_depth, progress=False)
        for qid in dataset.query_ids:
            judged = dataset.qrels.get(qid, {})
            relevant = sorted(d for d, g in judged.items()
                              if g >= min_relevance and d in dataset.corpus)
            if not relevant:
                continue
            ranked = sorted(run.get(qid, {}).items(), key=lambda kv: -kv[1])
            pool = [d for d, _ in ranked if judged.get(d, -1) < min_relevance]
            rng.shuffle(pool)
            query = dataset.queries[qid]
            found[query] = (dataset.corpus[rng.choice(relevant)].contents,
                            [dataset.corpus[d].contents for d in pool])
            relevant_texts[query] = {dataset.corpus[d].contents for d in relevant}
    if not found:
        raise IrlensError(f"{path} ({split}) has no relevant pairs to train on")
    queries = list(found)
    rng.shuffle(queries)
    if max_queries is not None:
        queries = queries[:max_queries]
    if teacher_negatives or bm25_negatives or random_negatives:
        keep = {q: found[q][1][:1] if path.is_file() else [] for q in queries}
        mined = mine_negatives({q: relevant_texts[q] | set(keep[q]) for q in queries}, passages,
                               teacher=teacher, teacher_k=teacher_negatives,
                               bm25_k=bm25_negatives, random_k=random_negatives, seed=seed)
        for q in queries:
            negs, own = found[q][1], keep[q]
            negs[:] = own + mined[q] + [d for d in negs if d not in own and d not in mined[q]]
    need = negatives if exact else 1
    groups = [Group(q, found[q][0], found[q][1][:negatives]) for q in queries
              if len(found[q][1]) >= need]
    if not groups:
        raise IrlensError(f"no query of {path} has {need} negatives; lower --negatives or "
                          "mine more (--teacher-negatives, --bm25-negatives, "
                          "--random-negatives)")
    return groups


def teacher_scores(teacher, groups: Sequence[Group], batch_size: int = 64,
                   progress: bool = False) -> list[list[float]]:
    """The bi-encoder ``teacher``'s similarity of each group's query to [positive,
    negatives...] (each distinct text encoded once)."""
    queries = sorted({g.query for g in groups})
    docs = sorted({d for g in groups for d in [g.positive, *g.negatives]})
    q_vec = teacher.encode_queries(queries, batch_size=batch_size, progress=progress)
    d_vec = teacher.encode_docs(docs, batch_size=batch_size, progress=progress)
    q_row = {q: i for i, q in enumerate(queries)}
    d_row = {d: i for i, d in enumerate(docs)}
    out = []
    for g in groups:
        rows = [d_row[d] for d in [g.positive, *g.negatives]]
        q = q_vec[q_row[g.query]].expand(len(rows), -1)
        out.append(teacher.pair_similarity(q, d_vec[rows]).tolist())
    return out


def train_cross_encoder(
    data: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str = "train",
    base: str = "default",
    negatives: int = 3,
    max_queries: int | None = None,
    teacher_negatives: int = 0,
    bm25_negatives: int = 0,
    random_negatives: int = 0,
    teacher: str | None = None,
    teacher_scale: float = 10.0,
    distillation: str = "listwise",
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_length: int = 256,
    seed: int = 0,
    device: str = "auto",
    save_steps: int = 50,
    keep_epochs: bool = False,
    eval_data: str | Path | None = None,
    eval_split: str = "test",
    eval_depth: int = 100,
    eval_queries: int | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train, save to ``out_dir`` (a model folder), evaluate; see the module docstring.

    ``eval_data`` defaults to the first BEIR folder in ``data`` when it has an
    ``eval_split``; ``eval_queries`` keeps the first N queries for a quick check.
    """
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    if not sources:
        raise IrlensError("no training data given; pass a BEIR folder or a triples TSV")
    for src in sources:
        if Path(src).is_dir() or not Path(src).exists():
            check_split(src, split)
    if teacher_negatives and not teacher:
        raise IrlensError("--teacher-negatives needs a --teacher to rank the passages; "
                          "pass --teacher default")
    if min(teacher_negatives, bm25_negatives, random_negatives) < 0:
        raise IrlensError("--teacher-negatives, --bm25-negatives and --random-negatives "
                          "must be >= 0")
    if eval_data is not None:
        check_split(eval_data, eval_split, "evaluation")
    if distillation not in DISTILLATION_LOSSES:
        raise IrlensError(f"unknown distillation {distillation!r}; use one of "
                          f"{', '.join(DISTILLATION_LOSSES)}")
    if epochs < 1 or batch_size < 1 or learning_rate <= 0 or negatives < 1:
        raise IrlensError("epochs, batch_size and negatives must be >= 1 and "
                          "learning_rate > 0")
    hf_datasets = require_training()
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder import losses as ce_losses

    from irlens.models import load_model, resolve_model_path
    from irlens.models.loading import pick_device as _pick_device

    start = time.time()
    out = Path(out_dir)
    params = {"data": [str(s) for s in sources], "split": split, "base": base,
              "negatives": negatives, "max_queries": max_queries,
              "teacher_negatives": teacher_negatives, "bm25_negatives": bm25_negatives,
              "random_negatives": random_negatives,
              "teacher": teacher, "teacher_scale": teacher_scale,
              "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
              "max_length": max_length, "seed": seed, "warmup_ratio": 0.1,
              "loss": DISTILLATION_LOSSES[distillation] if teacher
              else "BinaryCrossEntropyLoss"}
    read = training_files(sources, split)
    dev = str(_pick_device(device))
    teacher_model = None
    if teacher:
        teacher_model = load_model(teacher, device=dev)
        if not hasattr(teacher_model, "encode_docs"):
            raise IrlensError(f"teacher {teacher} is not a bi-encoder; pass one such as "
                              "'default'")
    groups: list[Group] = []
    for src in sources:
        groups += training_groups(src, split, negatives, max_queries=max_queries, seed=seed,
                                  exact=bool(teacher), teacher=teacher_model,
                                  teacher_negatives=teacher_negatives,
                                  bm25_negatives=bm25_negatives,
                                  random_negatives=random_negatives)
    random.Random(seed).shuffle(groups)
    if teacher_model is not None:
        scores = teacher_scores(teacher_model, groups, progress=progress)
        del teacher_model
        columns: dict[str, list[Any]] = {"query": [g.query for g in groups]}
        if distillation == "listwise":
            columns["docs"] = [[g.positive, *g.negatives] for g in groups]
        else:
            columns["positive"] = [g.positive for g in groups]
            for i in range(negatives):
                columns[f"negative_{i + 1}"] = [g.negatives[i] for g in groups]
        columns["label"] = [[teacher_scale * s for s in row] for row in scores]
        n_pairs = len(groups) * (1 + negatives)
    else:
        rows = [(g.query, d, int(j == 0)) for g in groups
                for j, d in enumerate([g.positive, *g.negatives])]
        random.Random(seed).shuffle(rows)
        columns = {"query": [r[0] for r in rows], "document": [r[1] for r in rows],
                   "label": [float(r[2]) for r in rows]}
        n_pairs = len(rows)
    model = CrossEncoder(resolve_model_path(base), num_labels=1, max_length=max_length,
                         device=dev)
    train = hf_datasets.Dataset.from_dict(columns)
    loss_class = getattr(ce_losses, params["loss"])
    # ListNet's default splits a step into mini-batches of `batch_size` pairs (4 queries
    # x 16 passages would run as 16 forwards of 4 pairs): one forward per step instead
    loss = (loss_class(model, mini_batch_size=0) if params["loss"] == "ListNetLoss"
            else loss_class(model))
    ckpt = checkpoint_dir(out, params)
    steps = max(1, len(train) // batch_size)
    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=0.1, seed=seed, save_strategy="steps",
        save_steps=save_steps, save_total_limit=1, report_to="none",
        logging_steps=max(1, steps // 10), disable_tqdm=not progress,
        use_cpu=dev == "cpu", dataloader_drop_last=False)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=loss)
    if keep_epochs:
        trainer.add_callback(_epoch_saver(model, out, read))
    losses = run_trainer(trainer, ckpt)
    with atomic_dir(out) as tmp:
        model.model.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        write_json(Path(tmp) / PROVENANCE_FILE, {"files": read})
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)
    trained = load_model(str(out), device=device)
    result = TrainingResult(make_manifest("training", params, model=trained), str(out),
                            n_pairs, len(groups), params, train_loss=losses)
    eval_source = eval_data or next((s for s in sources if Path(s).is_dir() and
                                     (Path(s) / "qrels" / f"{eval_split}.tsv").exists()), None)
    if eval_source is not None:
        result.evaluation = rerank_evaluation(trained, eval_source, eval_split, eval_depth,
                                              eval_queries, progress)
    result.seconds = round(time.time() - start, 1)
    result.save(out / "training")
    return result


def _epoch_saver(model, out: Path, read: list[dict[str, str]]):
    """A callback writing the model after each epoch to ``OUT.epochN`` (a model folder)."""
    from transformers import TrainerCallback

    class EpochSaver(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            epoch = round(state.epoch or 0)
            with atomic_dir(out.with_name(f"{out.name}.epoch{epoch}")) as tmp:
                model.model.save_pretrained(tmp)
                model.tokenizer.save_pretrained(tmp)
                write_json(Path(tmp) / PROVENANCE_FILE, {"files": read})

    return EpochSaver()


DISTILLATION_LOSSES = {"listwise": "ListNetLoss", "margin-mse": "MarginMSELoss"}


def rerank_evaluation(model, data: str | Path, split: str = "test", depth: int = 100,
                      max_queries: int | None = None, progress: bool = False,
                      metrics: Sequence[str] = ("nDCG@10", "RR@10")) -> dict[str, Any]:
    """nDCG@10 and RR@10 of BM25 alone and of ``model`` reranking BM25's top ``depth``."""
    from irlens.data import load_dataset
    from irlens.evaluation import evaluate
    from irlens.retrieval import bm25_search, rerank

    dataset = load_dataset(data, split=split, max_queries=max_queries)
    bm25 = bm25_search(dataset, k=depth, progress=False)
    reranked = rerank(model, dataset, bm25, depth=depth, progress=progress)
    return {"dataset": dataset.name, "split": split, "depth": depth,
            "n_queries": len(dataset.queries),
            "bm25": evaluate(bm25, dataset.qrels, list(metrics)).aggregate,
            "reranked": evaluate(reranked, dataset.qrels, list(metrics)).aggregate}
