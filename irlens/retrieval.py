"""First-stage retrieval, dense search and reranking, all returning a :data:`Run`.

- :func:`bm25_search`: lexical BM25 (bm25s) over title + text.
- :func:`encode_corpus`: document vectors of a bi-encoder, cached on disk and resumable.
- :func:`dense_search`: exact top-k by the model's own similarity (torch), or faiss.
- :func:`rerank`: rescore a first-stage run's top documents with a model.
- :func:`search`: one verb for any retriever (``"bm25"``, bi-encoder, cross-encoder).

A run maps query id -> {doc id: score} (:mod:`irlens.runs`, re-exported here with its
TREC readers and writers); metrics live in :mod:`irlens.evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from irlens._encoding import encode_cached
from irlens._warn import warn
from irlens.cache import embedding_folder
from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.executors import Executor
from irlens.models import BiEncoder, CrossEncoder
from irlens.runs import Run, load_run, ranked, save_run

__all__ = [
    "Run",
    "bm25_search",
    "dense_search",
    "encode_corpus",
    "exact_top_k",
    "load_run",
    "rerank",
    "save_run",
    "search",
]


# --- BM25 --------------------------------------------------------------------------------


def bm25_search(
    dataset: Dataset,
    k: int = 100,
    *,
    k1: float = 0.9,
    b: float = 0.4,
    method: str = "lucene",
    stemmer: str | None = "english",
    stopwords: str | None = "en",
    progress: bool = True,
) -> Run:
    """BM25 top-``k`` per query over :attr:`Document.contents` (title + text, one field).

    The defaults reproduce Anserini's "BM25 flat" BEIR baseline: Lucene's BM25 scoring
    (bm25s ``method="lucene"``), k1=0.9, b=0.4, lower-cased word tokens, English stopwords
    (bm25s list) and the Snowball English stemmer (PyStemmer). On SciFact test this gives
    nDCG@10 0.676 (Anserini flat: 0.679; BEIR's Elasticsearch multifield: 0.665).
    Documents that match no query term are not returned, so a query may get fewer than k.
    """
    import bm25s

    if not dataset.corpus:
        raise IrlensError(f"{dataset.name} has an empty corpus; nothing to search")
    stem = _stemmer(stemmer)
    doc_ids = dataset.doc_ids
    corpus_tokens = bm25s.tokenize(
        dataset.doc_texts(),
        stopwords=stopwords,
        stemmer=stem,
        return_ids=False,
        show_progress=False,
    )
    index = bm25s.BM25(method=method, k1=k1, b=b)
    index.index(corpus_tokens, show_progress=progress)
    qids = dataset.query_ids
    query_tokens = bm25s.tokenize(
        dataset.query_texts(),
        stopwords=stopwords,
        stemmer=stem,
        return_ids=False,
        show_progress=False,
    )
    depth = min(k, len(doc_ids))
    hits, scores = index.retrieve(query_tokens, k=depth, show_progress=False)
    return {
        qid: {doc_ids[int(j)]: float(s) for j, s in zip(hits[i], scores[i], strict=True) if s > 0}
        for i, qid in enumerate(qids)
    }


def _stemmer(language: str | None):
    if language is None:
        return None
    import Stemmer

    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        raise IrlensError(
            f"unknown stemmer language {language!r}; use one of "
            f"{', '.join(Stemmer.algorithms())} or None"
        ) from None


# --- dense -------------------------------------------------------------------------------


def encode_corpus(
    model: BiEncoder,
    dataset: Dataset,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    chunk_size: int = 512,
    executor: Executor | None = None,
) -> torch.Tensor:
    """Document vectors [n_docs, dim] (float32, CPU), rows in ``dataset.doc_ids`` order.

    Cached under ``cache_dir`` (default ``$IRLENS_CACHE_DIR``, else ``~/.cache/irlens``),
    keyed by the model fingerprint (weights, configuration and interventions in force),
    its dtype and ``max_length``, and the dataset fingerprint: a second call loads the
    file after checking its shape and checksum. Progress is saved after every chunk (one
    batch at first, doubling up to ``chunk_size`` documents), so an interrupted run
    resumes where it stopped; concurrent runs on one cache take turns (a file lock).
    ``executor``: where the chunks are encoded (:mod:`irlens.executors`; ``None``: here).
    While an intervention no key can describe is in force (an unlabeled function), the
    cache is skipped with a warning and the corpus is encoded in memory.
    """
    _require_bi_encoder(model, "encode_corpus")
    if not dataset.corpus:
        raise IrlensError(f"{dataset.name} has an empty corpus; nothing to encode")
    if batch_size < 1 or chunk_size < 1:
        raise IrlensError("batch_size and chunk_size must be >= 1")
    if not model.cacheable:
        warn("an intervention without a label (a function irlens cannot key) is in force: "
             "the embedding cache is skipped and the corpus encoded in memory; pass "
             "intervene(..., label=...) to cache it")
        return model.encode_docs(dataset.doc_texts(), batch_size=batch_size, progress=progress)
    manifest = {
        "model_id": model.model_id,
        "model_fingerprint": model.fingerprint,
        "dtype": str(model.dtype),
        "max_length": model.max_length,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.corpus_fingerprint,
        "n_docs": len(dataset.corpus),
    }
    folder = embedding_folder(model, dataset, cache_dir, manifest["model_fingerprint"])
    matrix = encode_cached(model, dataset.doc_texts(), folder, manifest, batch_size,
                           chunk_size, progress, desc=f"encode {dataset.name}",
                           executor=executor)
    return torch.from_numpy(matrix)


def dense_search(
    model: BiEncoder,
    dataset: Dataset,
    k: int = 100,
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    backend: Literal["torch", "faiss"] = "torch",
    doc_chunk: int = 65536,
    executor: Executor | None = None,
) -> Run:
    """Exact top-``k`` documents per query by ``model.similarity`` (dot or cosine).

    The corpus comes from :func:`encode_corpus` (cached). ``backend="torch"`` scores
    ``doc_chunk`` documents at a time and keeps a running top-k; ``"faiss"`` uses an exact
    inner-product index (needs ``pip install irlens[faiss]``).
    """
    _require_bi_encoder(model, "dense_search")
    if backend not in ("torch", "faiss"):
        raise IrlensError(f"unknown backend {backend!r}; use 'torch' or 'faiss'")
    if backend == "faiss" and model.similarity_name not in ("dot", "cosine"):
        raise IrlensError(
            f"backend='faiss' supports dot and cosine similarity, not "
            f"{model.similarity_name}; use backend='torch'"
        )
    docs = encode_corpus(
        model, dataset, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
        executor=executor,
    )
    qids = dataset.query_ids
    queries = model.encode_queries(dataset.query_texts(), batch_size=batch_size)
    depth = min(k, docs.shape[0])
    if backend == "faiss":
        scores, hits = _faiss_top_k(model, queries, docs, depth)
    else:
        scores, hits = exact_top_k(model, queries, docs, depth, doc_chunk)
    doc_ids = dataset.doc_ids
    return {
        qid: {doc_ids[j]: s for j, s in zip(hits[i].tolist(), scores[i].tolist(), strict=True)}
        for i, qid in enumerate(qids)
    }


def exact_top_k(
    model: BiEncoder,
    queries: torch.Tensor,
    docs: torch.Tensor,
    k: int,
    doc_chunk: int,
    query_chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by blocks of queries x documents: scores and indices, [n_queries, k]."""
    scores, hits = [], []
    for q_start in range(0, len(queries), query_chunk):
        block = queries[q_start : q_start + query_chunk].to(model.device)
        best = torch.full((len(block), 0), float("-inf"), device=block.device)
        best_ids = torch.zeros((len(block), 0), dtype=torch.long, device=block.device)
        for start in range(0, docs.shape[0], doc_chunk):
            chunk = docs[start : start + doc_chunk].to(block.device)
            ids = torch.arange(start, start + len(chunk), device=block.device)
            best = torch.cat([best, model.similarity(block, chunk).float()], dim=1)
            best_ids = torch.cat([best_ids, ids.expand(len(block), -1)], dim=1)
            best, pos = best.topk(min(k, best.shape[1]), dim=1)
            best_ids = best_ids.gather(1, pos)
        scores.append(best.cpu())
        hits.append(best_ids.cpu())
    return torch.cat(scores), torch.cat(hits)


def _faiss_top_k(
    model: BiEncoder, queries: torch.Tensor, docs: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss
    except ImportError:
        raise IrlensError(
            "backend='faiss' needs faiss; pip install irlens[faiss], or use backend='torch'"
        ) from None
    if model.similarity_name == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=-1)
        docs = torch.nn.functional.normalize(docs, dim=-1)
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs.numpy(), dtype=np.float32))
    scores, hits = index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), k)
    return torch.from_numpy(scores), torch.from_numpy(hits)


# --- reranking ---------------------------------------------------------------------------


def rerank(
    model: CrossEncoder | BiEncoder,
    dataset: Dataset,
    first_stage_run: Mapping[str, Mapping[str, float]],
    depth: int = 100,
    batch_size: int = 32,
    progress: bool = True,
) -> Run:
    """Rescore each query's top ``depth`` documents of ``first_stage_run`` with ``model``.

    A cross-encoder scores each (query, document) pair with ``predict`` (logits); a
    bi-encoder encodes the candidates and uses its similarity. Documents below ``depth``
    are dropped from the returned run.
    """
    pairs = [
        (qid, doc_id)
        for qid in dataset.query_ids
        for doc_id in ranked(first_stage_run.get(qid, {}), depth)
        if doc_id in dataset.corpus
    ]
    run: Run = {qid: {} for qid in dataset.query_ids}
    if not pairs:
        return run
    if isinstance(model, CrossEncoder):
        scores = model.predict(
            [dataset.queries[q] for q, _ in pairs],
            [dataset.corpus[d].contents for _, d in pairs],
            batch_size=batch_size,
            progress=progress,
        ).tolist()
    elif isinstance(model, BiEncoder):
        scores = _bi_encoder_pair_scores(model, dataset, pairs, batch_size, progress)
    else:
        raise IrlensError(
            f"cannot rerank with {type(model).__name__}; load a model with irlens.load_model"
        )
    for (qid, doc_id), score in zip(pairs, scores, strict=True):
        run[qid][doc_id] = float(score)
    return run


def _bi_encoder_pair_scores(
    model: BiEncoder,
    dataset: Dataset,
    pairs: list[tuple[str, str]],
    batch_size: int,
    progress: bool,
) -> list[float]:
    qids = sorted({q for q, _ in pairs})
    doc_ids = sorted({d for _, d in pairs})
    q_vecs = model.encode_queries([dataset.queries[q] for q in qids], batch_size=batch_size)
    d_vecs = model.encode_docs(dataset.doc_texts(doc_ids), batch_size=batch_size, progress=progress)
    q_row = {q: i for i, q in enumerate(qids)}
    d_row = {d: i for i, d in enumerate(doc_ids)}
    q_idx = torch.tensor([q_row[q] for q, _ in pairs])
    d_idx = torch.tensor([d_row[d] for _, d in pairs])
    return model.pair_similarity(q_vecs[q_idx], d_vecs[d_idx]).tolist()


# --- one verb ----------------------------------------------------------------------------


def search(
    model: BiEncoder | CrossEncoder | str,
    dataset: Dataset,
    k: int = 100,
    *,
    first_stage: Literal["bm25"] | Mapping[str, Mapping[str, float]] | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> Run:
    """Top-``k`` per query with any retriever (``executor``: where a bi-encoder's corpus
    is encoded, see :func:`encode_corpus`).

    ``"bm25"`` -> :func:`bm25_search`; a bi-encoder -> :func:`dense_search`; a
    cross-encoder -> BM25 top-``k`` reranked. ``first_stage`` (``"bm25"`` or a run)
    makes any model rerank that run's top ``k`` instead of searching the corpus.
    """
    if isinstance(model, str):
        if model != "bm25":
            raise IrlensError(f"unknown retriever {model!r}; pass 'bm25' or a loaded model")
        if first_stage is not None:
            raise IrlensError(
                "BM25 cannot rerank another first stage; drop first_stage (--rerank-from)"
            )
        return bm25_search(dataset, k=k, progress=progress)
    if first_stage is None and isinstance(model, BiEncoder):
        return dense_search(
            model, dataset, k=k, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
            executor=executor,
        )
    if first_stage is None or first_stage == "bm25":
        candidates: Mapping[str, Mapping[str, float]] = bm25_search(dataset, k=k, progress=progress)
    elif isinstance(first_stage, Mapping):
        candidates = first_stage
    else:
        raise IrlensError(f"unknown first_stage {first_stage!r}; pass 'bm25' or a run dict")
    return rerank(model, dataset, candidates, depth=k, batch_size=batch_size, progress=progress)


def _require_bi_encoder(model: object, what: str) -> None:
    if not isinstance(model, BiEncoder):
        raise IrlensError(
            f"{what} needs a bi-encoder, got {type(model).__name__}; use rerank() for "
            "cross-encoders"
        )
