"""Fine-tune a cross-encoder from a bi-encoder's weights with BM25 negatives.

No cross-encoder ships offline, so :func:`train_cross_encoder` makes one: it starts from
the default model's weights (all-MiniLM-L6-v2, a new one-logit head), builds labelled
pairs (query, relevant document, 1) and (query, BM25 negative, 0), trains with
sentence-transformers' ``CrossEncoderTrainer`` and ``BinaryCrossEntropyLoss`` (the
loss of the ms-marco MiniLM rerankers), and saves a plain Hugging Face
``*ForSequenceClassification`` folder that :func:`irlens.load_model` opens as a
:class:`~irlens.models.CrossEncoder`. It then reranks BM25's top ``eval_depth`` on the
evaluation split and reports nDCG@10 and RR@10 next to BM25 alone.

Data: a BEIR folder (its ``split`` qrels; negatives drawn from each query's BM25 top
``bm25_depth``, judged-relevant documents excluded) or an MS MARCO ``triples.train``
TSV (query, positive, negative; its negatives are BM25's). Defaults are small enough
for a CPU: 1 epoch, batch 16, learning rate 2e-5 with 10% warm-up, 256 tokens.
Training needs ``pip install "irlens[train]"`` (datasets, accelerate).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from irlens._io import write_json
from irlens.errors import IrlensError

__all__ = ["TrainingResult", "labelled_pairs", "train_cross_encoder"]


@dataclass
class TrainingResult:
    """Where the model went, what it was trained on, and its rerank effectiveness."""

    model_dir: str
    n_pairs: int
    n_positive: int
    parameters: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(asdict(self), indent=2) + "\n"
        if path is not None:
            write_json(path, asdict(self))
        return text


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


def train_cross_encoder(
    data: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str = "train",
    base: str = "default",
    negatives: int = 3,
    random_negatives: int = 0,
    max_positives: int | None = None,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_length: int = 256,
    seed: int = 0,
    device: str = "auto",
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
    try:
        import datasets as hf_datasets
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    except ImportError as err:
        raise IrlensError("training needs datasets and accelerate: pip install "
                          f"'irlens[train]' ({err})") from None
    from irlens.models import load_model, resolve_model_path
    from irlens.models.loading import _pick_device

    sources = [data] if isinstance(data, (str, Path)) else list(data)
    if not sources:
        raise IrlensError("no training data given; pass a BEIR folder or a triples TSV")
    for src in sources:
        if not Path(src).exists():
            raise IrlensError(f"training data {src} does not exist")
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise IrlensError("epochs and batch_size must be >= 1 and learning_rate > 0")
    start = time.time()
    rows: list[tuple[str, str, int]] = []
    for src in sources:
        rows += labelled_pairs(src, split, negatives, max_positives=max_positives, seed=seed,
                               random_negatives=random_negatives)
    random.Random(seed).shuffle(rows)
    dev = str(_pick_device(device))
    model = CrossEncoder(resolve_model_path(base), num_labels=1, max_length=max_length,
                         device=dev)
    train = hf_datasets.Dataset.from_dict({"query": [r[0] for r in rows],
                                           "document": [r[1] for r in rows],
                                           "label": [float(r[2]) for r in rows]})
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="irlens-train-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, warmup_steps=0.1, seed=seed, save_strategy="no",
            report_to="none", logging_steps=max(1, len(rows) // batch_size // 10),
            disable_tqdm=not progress, use_cpu=dev == "cpu", dataloader_drop_last=False)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train,
                                      loss=BinaryCrossEntropyLoss(model))
        trainer.train()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:12]}")  # one per run
    try:
        model.model.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    params = {"data": [str(s) for s in sources], "split": split, "base": base,
              "negatives": negatives, "random_negatives": random_negatives,
              "max_positives": max_positives, "epochs": epochs,
              "batch_size": batch_size, "learning_rate": learning_rate,
              "max_length": max_length, "seed": seed, "loss": "BinaryCrossEntropyLoss",
              "warmup_ratio": 0.1}
    write_json(tmp / "irlens_training.json", {"parameters": params, "n_pairs": len(rows)})
    _swap_in(tmp, out)
    result = TrainingResult(str(out), len(rows), sum(r[2] for r in rows), params,
                            seconds=0.0)
    eval_source = eval_data or next((s for s in sources if Path(s).is_dir() and
                                     (Path(s) / "qrels" / f"{eval_split}.tsv").exists()), None)
    if eval_source is not None:
        trained = load_model(str(out), device=device)
        result.evaluation = rerank_evaluation(trained, eval_source, eval_split, eval_depth,
                                              eval_queries, progress)
    result.seconds = round(time.time() - start, 1)
    write_json(out / "irlens_training.json", asdict(result))
    return result


def _swap_in(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``; an old ``out`` is moved aside first and
    removed only once the new one is in place (put back if the move fails)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
