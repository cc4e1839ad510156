"""DPR-style contrastive training of a bi-encoder, one shared tower or two.

:func:`train_bi_encoder` follows Karpukhin et al. 2020 ("Dense Passage Retrieval for
Open-Domain Question Answering"): each training query comes with one relevant passage and
``hard_negatives`` BM25 negatives (its BM25 top ``bm25_depth`` minus every document judged
relevant to it), and the loss is the softmax cross-entropy over the query's positive
against every passage in the batch (in-batch plus hard negatives), i.e.
sentence-transformers' ``MultipleNegativesRankingLoss`` (``CachedMultipleNegativesRankingLoss``
with ``mini_batch_size``: GradCache, Gao et al. 2021, big batches in small memory).

Bases: a sentence-transformers folder or ``default`` (its pooling, normalisation and
similarity are kept), or a plain Hugging Face encoder (CLS pooling and dot product, as
DPR). ``two_towers`` trains a query tower and a document tower that start from the same
weights (DPR's setting; sentence-transformers' ``Router``); a two-tower folder written here
is itself a valid base and keeps its two towers.

Output folder: one tower -> a sentence-transformers folder; two towers -> ``query/`` and
``doc/`` Hugging Face folders plus ``irlens_towers.json`` (pooling, normalisation,
similarity), which :func:`irlens.load_model` opens as a DPR-style pair. Both get
``training/``: an artefact with the held-out split's nDCG@10 and RR@10 before and after
training, retrieved the same way (full-corpus dense search, top 100, the base's token
limit). Checkpoints (``.NAME.ckpt`` beside the folder) let an interrupted run resume.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from irlens._io import write_json
from irlens.artifacts import atomic_dir, make_manifest
from irlens.errors import IrlensError
from irlens.models.loading import TOWERS_FILE
from irlens.training._common import check_split, checkpoint_dir, require_training, run_trainer
from irlens.training.cross_encoder import TrainingResult
from irlens.training.provenance import PROVENANCE_FILE, training_files

__all__ = ["TOWERS_FILE", "bm25_hard_negatives", "retrieval_evaluation", "train_bi_encoder"]



def _base_kind(base: str) -> str:
    """``two-towers``, ``sentence-transformers``, ``encoder`` or ``cross-encoder``, read
    from the folder's files (no model loaded); Hub ids count as encoders."""
    from irlens.models import resolve_model_path

    if base == "default":
        return "sentence-transformers"
    path = Path(base).expanduser()
    if (path / TOWERS_FILE).is_file():
        return "two-towers"
    folder = Path(resolve_model_path(base))
    if not folder.is_dir():
        return "encoder"
    if (folder / "modules.json").is_file():
        return "sentence-transformers"
    config = json.loads((folder / "config.json").read_text())
    if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return "cross-encoder"
    return "encoder"


def bm25_hard_negatives(dataset, hard_negatives: int = 1, bm25_depth: int = 100,
                        max_queries: int | None = None, seed: int = 0,
                        min_relevance: int = 1) -> list[tuple[str, str, list[str]]]:
    """(query id, relevant doc id, [hard negative ids]) per query, in a seeded order.

    The positive is a random document judged >= ``min_relevance``; the negatives are drawn
    from the query's BM25 top ``bm25_depth`` (:func:`irlens.retrieval.bm25_search`) and
    are never judged >= ``min_relevance`` for it. Queries without enough are skipped.
    """
    from irlens.retrieval import bm25_search

    rng = random.Random(seed)
    qids = list(dataset.query_ids)
    rng.shuffle(qids)
    run = bm25_search(dataset, k=bm25_depth, progress=False)
    out = []
    for qid in qids:
        if max_queries is not None and len(out) == max_queries:
            break
        relevant = sorted(dataset.relevant(qid, min_relevance))
        relevant = [d for d in relevant if d in dataset.corpus]
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        pool = [d for d, _ in ranked if d not in set(relevant)
                and dataset.qrels.get(qid, {}).get(d, -1) < min_relevance]
        if not relevant or len(pool) < hard_negatives:
            continue
        out.append((qid, rng.choice(relevant), rng.sample(pool, hard_negatives)))
    return out


def retrieval_evaluation(model, dataset, k: int = 100, progress: bool = False,
                         metrics: tuple[str, ...] = ("nDCG@10", "RR@10")) -> dict[str, float]:
    """Full-corpus dense retrieval of ``dataset``'s queries, scored with ir_measures."""
    from irlens.evaluation import evaluate
    from irlens.retrieval import dense_search

    run = dense_search(model, dataset, k=k, progress=progress)
    return evaluate(run, dataset.qrels, list(metrics)).aggregate


def _towers(path: Path, two_towers: bool, pooling: str | None, max_seq_length: int):
    """A SentenceTransformer for ``path`` (shared tower) or a query/document ``Router``;
    returns (model, similarity name, base token limit)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Router,
        Transformer,
    )

    towers_file = path / TOWERS_FILE
    if towers_file.is_file():
        spec = json.loads(towers_file.read_text())
        paths = {"query": path / spec["query"], "document": path / spec["doc"]}
        pool, norm, similarity = spec["pooling"], spec["normalize"], spec["similarity"]
        limit = spec.get("max_length", 512)
    elif (path / "modules.json").is_file():
        st = SentenceTransformer(str(path), device="cpu")
        limit = st.max_seq_length
        similarity = st.similarity_fn_name or "cosine"
        pool = next((getattr(m, "pooling_mode", None) for m in st
                     if getattr(m, "pooling_mode", None)), "mean")
        norm = any(type(m).__name__ == "Normalize" for m in st)
        if not two_towers:
            st[0].max_seq_length = max_seq_length
            return st, similarity, limit
        paths = {"query": path, "document": path}
    else:
        paths = {"query": path, "document": path}
        pool, norm, similarity, limit = "cls", False, "dot", None
    pool = pooling or pool

    def tower(folder: Path) -> list[Any]:
        body = Transformer(str(folder), max_seq_length=max_seq_length)
        mods = [body, Pooling(body.get_embedding_dimension(), pooling_mode=pool)]
        return mods + ([Normalize()] if norm else [])

    if two_towers:
        router = Router.for_query_document(query_modules=tower(paths["query"]),
                                           document_modules=tower(paths["document"]))
        model = SentenceTransformer(modules=[router], device="cpu",
                                    similarity_fn_name=similarity)
    else:
        model = SentenceTransformer(modules=tower(paths["query"]), device="cpu",
                                    similarity_fn_name=similarity)
    if limit is None:
        from irlens.models.loading import _max_length

        body = router.sub_modules["query"][0] if two_towers else model[0]
        limit = _max_length(body.tokenizer, body.auto_model.config)
    return model, similarity, limit


def train_bi_encoder(
    base: str,
    data: str | Path,
    out_dir: str | Path,
    *,
    split: str = "train",
    two_towers: bool | None = None,
    pooling: str | None = None,
    hard_negatives: int = 1,
    bm25_depth: int = 100,
    max_queries: int | None = None,
    epochs: int = 1,
    batch_size: int = 32,
    mini_batch_size: int | None = None,
    learning_rate: float = 2e-5,
    max_seq_length: int = 128,
    seed: int = 0,
    device: str = "auto",
    save_steps: int = 50,
    eval_split: str | None = "test",
    eval_max_queries: int | None = None,
    eval_max_docs: int | None = None,
    eval_max_length: int | None = None,
    eval_k: int = 100,
    progress: bool = True,
) -> TrainingResult:
    """Train ``base`` on ``data``'s ``split``, save to ``out_dir``, evaluate before/after.

    ``two_towers=None`` keeps the base's towers (two for a two-tower folder, else one);
    ``False`` on a two-tower base is refused. ``eval_max_queries``/``eval_max_docs`` evaluate
    on :meth:`irlens.data.Dataset.subset` and ``eval_max_length`` cuts documents there (both
    before and after), for a quick check on a slow machine. See the module docstring.
    """
    if pooling not in (None, "cls", "mean"):
        raise IrlensError(f"unknown pooling '{pooling}'; use cls or mean")
    if epochs < 1 or batch_size < 2 or learning_rate <= 0 or hard_negatives < 0:
        raise IrlensError("epochs must be >= 1, batch_size >= 2 (in-batch negatives), "
                          "hard_negatives >= 0 and learning_rate > 0")
    if mini_batch_size is not None and mini_batch_size < 1:
        raise IrlensError("mini_batch_size must be >= 1 (or unset)")
    check_split(data, split)
    if not Path(data).is_dir():
        raise IrlensError(f"{data} is not a BEIR folder; bi-encoder training reads "
                          "corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    if eval_split is not None:
        check_split(data, eval_split, "evaluation", flag="--eval-split")
    kind = _base_kind(base)
    if kind == "cross-encoder":
        raise IrlensError(f"{base} is a cross-encoder (one joint tower over query and "
                          "passage); a bi-encoder needs an encoder or sentence-transformers "
                          "base, e.g. 'default' or bert-base-uncased")
    if kind == "two-towers" and two_towers is False:
        raise IrlensError(f"{base} has two towers, so there is no single tower to share; "
                          "drop --shared, or pass one tower's folder (e.g. BASE/query)")
    two = kind == "two-towers" if two_towers is None else two_towers
    hf_datasets = require_training()
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.util import cos_sim, dot_score

    from irlens.data import load_dataset
    from irlens.models import load_model, resolve_model_path
    from irlens.models.loading import pick_device as _pick_device

    start = time.time()
    out = Path(out_dir)
    base_path = Path(base).expanduser() if kind == "two-towers" else \
        Path(resolve_model_path(base))
    params = {"base": base, "data": str(data), "split": split, "two_towers": two,
              "pooling": pooling, "hard_negatives": hard_negatives, "bm25_depth": bm25_depth,
              "max_queries": max_queries, "epochs": epochs, "batch_size": batch_size,
              "mini_batch_size": mini_batch_size, "learning_rate": learning_rate,
              "max_seq_length": max_seq_length, "seed": seed, "warmup_ratio": 0.1,
              "loss": "CachedMultipleNegativesRankingLoss" if mini_batch_size
              else "MultipleNegativesRankingLoss", "eval_split": eval_split,
              "eval_max_queries": eval_max_queries, "eval_max_docs": eval_max_docs,
              "eval_max_length": eval_max_length, "eval_k": eval_k}
    _refuse_other_model(out, params)
    train_set = load_dataset(data, split=split)
    rows = bm25_hard_negatives(train_set, hard_negatives, bm25_depth, max_queries, seed)
    if not rows:
        raise IrlensError(f"no query of {train_set.name} ({split}) has a relevant document "
                          f"and {hard_negatives} BM25 negatives; lower hard_negatives")
    columns: dict[str, list[str]] = {
        "anchor": [train_set.queries[q] for q, _, _ in rows],
        "positive": [train_set.corpus[p].contents for _, p, _ in rows]}
    for i in range(hard_negatives):
        columns[f"negative_{i + 1}"] = [train_set.corpus[n[i]].contents for _, _, n in rows]

    dev = str(_pick_device(device))
    evaluation: dict[str, Any] = {}
    eval_set = None
    model, similarity, limit = _towers(base_path, two, pooling, max_seq_length)
    if eval_split is not None:
        eval_set = load_dataset(data, split=eval_split, max_queries=eval_max_queries,
                                max_docs=eval_max_docs)
        evaluation = {"dataset": eval_set.name, "split": eval_split, "k": eval_k,
                      "n_queries": len(eval_set.queries), "n_docs": len(eval_set.corpus),
                      "max_length": eval_max_length or limit}
        before = _as_retriever(model, two, similarity, eval_max_length or limit, base, dev)
        evaluation["before"] = retrieval_evaluation(before, eval_set, eval_k, progress)
        del before
    model.to(dev)
    scale, sim = (20.0, cos_sim) if similarity == "cosine" else (1.0, dot_score)
    loss = (losses.CachedMultipleNegativesRankingLoss(model, scale=scale, similarity_fct=sim,
                                                      mini_batch_size=mini_batch_size)
            if mini_batch_size else
            losses.MultipleNegativesRankingLoss(model, scale=scale, similarity_fct=sim))
    ckpt = checkpoint_dir(out, params)
    steps = max(1, len(rows) // batch_size)
    mapping = {c: ("query" if c == "anchor" else "document") for c in columns} if two else {}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=0.1, seed=seed, save_strategy="steps",
        save_steps=save_steps, save_total_limit=1, report_to="none",
        logging_steps=max(1, steps // 10), disable_tqdm=not progress, use_cpu=dev == "cpu",
        batch_sampler="no_duplicates", router_mapping=mapping)
    trainer = SentenceTransformerTrainer(model=model, args=args,
                                         train_dataset=hf_datasets.Dataset.from_dict(columns),
                                         loss=loss)
    train_loss = run_trainer(trainer, ckpt)
    model.to("cpu")
    with atomic_dir(out) as tmp:
        _save(model, tmp, two, similarity, limit)
        write_json(Path(tmp) / PROVENANCE_FILE, {"files": training_files([data], split)})
    shutil.rmtree(ckpt, ignore_errors=True)
    trained = load_model(str(out), device=device, max_length=eval_max_length)
    if eval_set is not None:
        evaluation["after"] = retrieval_evaluation(trained, eval_set, eval_k, progress)
    result = TrainingResult(make_manifest("training", params, model=trained, data=train_set),
                            str(out), len(rows) * (2 + hard_negatives), len(rows), params,
                            evaluation, round(time.time() - start, 1), train_loss)
    result.save(out / "training")
    return result


def _refuse_other_model(out: Path, params: dict[str, Any]) -> None:
    """A finished model folder trained with another config is refused, as a checkpoint
    of another run is (``checkpoint_dir``): retraining would overwrite it silently."""
    from irlens.artifacts import Manifest, config_diff

    if not (out / "training" / "manifest.json").is_file():
        return
    changed = config_diff(Manifest.read(out / "training").config, params)
    if changed:
        raise IrlensError(f"{out} holds a model trained with other options (it differs in "
                          f"{', '.join(changed)}); use a new --out, or delete it to retrain")


def _tower_parts(model, two: bool) -> dict[str, Any]:
    if not two:
        return {"shared": model[0]}
    router = model[0]
    return {"query": router.sub_modules["query"][0], "doc": router.sub_modules["document"][0]}


def _save(model, folder: Path, two: bool, similarity: str, limit: int) -> None:
    """One tower: a sentence-transformers folder at the base's token limit; two: HF
    folders ``query/`` and ``doc/`` and :data:`TOWERS_FILE`."""
    from irlens._io import write_json

    parts = _tower_parts(model, two)
    for body in parts.values():
        body.max_seq_length = limit
    if not two:
        model.save(str(folder))
        return
    pool = next(m for m in model[0].sub_modules["query"] if hasattr(m, "pooling_mode"))
    norm = any(type(m).__name__ == "Normalize" for m in model[0].sub_modules["query"])
    for name in ("query", "doc"):
        parts[name].auto_model.save_pretrained(folder / name)
        parts[name].tokenizer.save_pretrained(folder / name)
    write_json(folder / TOWERS_FILE, {"query": "query", "doc": "doc",
                                      "pooling": pool.pooling_mode, "normalize": norm,
                                      "similarity": similarity, "max_length": limit})


def _as_retriever(model, two: bool, similarity: str, limit: int, model_id: str, device: str):
    """The base as an irlens BiEncoder (the same bodies, not copies) for evaluation."""
    from irlens.models import BiEncoder

    parts = _tower_parts(model, two)
    mods = list(model[0].sub_modules["query"]) if two else list(model)
    pool = next(m for m in mods if hasattr(m, "pooling_mode")).pooling_mode
    norm = any(type(m).__name__ == "Normalize" for m in mods)
    doc = parts["doc" if two else "shared"]
    retriever = BiEncoder(model_id, doc.auto_model, doc.tokenizer, limit, pooling=pool,
                          normalize=norm, similarity=similarity,
                          query_encoder=parts["query"].auto_model if two else None)
    return retriever.to(device).eval()
