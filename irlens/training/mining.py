"""Negatives mined from the training data's own passages, never from another collection.

A triples TSV holds a query, a positive and a negative per line; its passages (every
positive and negative of the file) are the only pool the miners search, so no passage,
query or judgement of an evaluated collection can shape the training groups. Per query,
in this order and without repeats: the passages the ``teacher`` (a bi-encoder) ranks
highest, BM25's top passages, then passages drawn at random. A query's own positives
(every line it has) are never mined as negatives.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["mine_negatives"]


def mine_negatives(positives: Mapping[str, set[str]], passages: Sequence[str], *,
                   teacher=None, teacher_k: int = 0, bm25_k: int = 0, random_k: int = 0,
                   seed: int = 0, batch_size: int = 64, progress: bool = False
                   ) -> dict[str, list[str]]:
    """``query -> negatives``: ``teacher_k`` teacher-ranked, ``bm25_k`` BM25-ranked and
    ``random_k`` random passages of ``passages``, none in ``positives[query]``."""
    import torch

    from irlens.data import Dataset, Document
    from irlens.retrieval import bm25_search

    queries = list(positives)
    pool = list(dict.fromkeys(passages))
    out: dict[str, list[str]] = {q: [] for q in queries}
    if not queries or not pool:
        return out

    def add(query: str, ranked: Sequence[str], k: int) -> None:
        picked = out[query]
        new = [d for d in ranked if d not in positives[query] and d not in picked][:k]
        picked += new

    if teacher_k:
        q_vec = teacher.encode_queries(queries, batch_size=batch_size, progress=progress)
        d_vec = teacher.encode_docs(pool, batch_size=batch_size, progress=progress)
        with torch.no_grad():
            sims = teacher.similarity(q_vec, d_vec)
        depth = min(len(pool), teacher_k + 8)
        top = sims.topk(depth, dim=1).indices.tolist()
        for q, row in zip(queries, top, strict=True):
            add(q, [pool[i] for i in row], teacher_k)
    if bm25_k:
        ids = [f"p{i}" for i in range(len(pool))]
        qids = [f"q{i}" for i in range(len(queries))]
        index = Dataset(name="training-passages",
                        corpus={i: Document("", t) for i, t in zip(ids, pool, strict=True)},
                        queries=dict(zip(qids, queries, strict=True)), qrels={})
        run = bm25_search(index, k=min(len(pool), bm25_k + teacher_k + 8), progress=False)
        for q, qid in zip(queries, qids, strict=True):
            ranked = sorted(run.get(qid, {}).items(), key=lambda kv: -kv[1])
            add(q, [pool[int(d[1:])] for d, _ in ranked], bm25_k)
    if random_k:
        rng = random.Random(seed)
        for q in queries:
            add(q, rng.sample(pool, min(len(pool), random_k + len(out[q]) + 8)), random_k)
    return out
