"""Efficacy, generalisation and locality of an edit, measured by retrieval.

For each request (Meng et al. 2022's measures, read off a ranking of the whole corpus):

- **efficacy**: insert: the document reaches the query's top 10; remove: it leaves it.
  The rank before and after is kept.
- **generalisation**: the same test on the request's paraphrases and on other queries
  that judge the document relevant.
- **locality**: on every other judged query, the change in nDCG@10 (ir_measures), how
  many (query, document) pairs enter or leave a top 10, and the mean cosine between the
  old and the new document vectors.

The edited model re-encodes the whole corpus (an edit of a shared tower moves documents
too), so one measurement costs one corpus encode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from irlens.data import Dataset
from irlens.editing.edit import Edit
from irlens.editing.requests import EditRequest, Ranking, check_request, rank_corpus
from irlens.evaluation import evaluate
from irlens.models import BiEncoder
from irlens.retrieval import encode_corpus

__all__ = ["EditBench"]


def _run(ranking: Ranking, qids: list[str], k: int = 100) -> dict[str, dict[str, float]]:
    rows = [ranking.query_ids.index(q) for q in qids]
    top = torch.topk(ranking.scores[rows], min(k, ranking.scores.shape[1]))
    return {q: {ranking.doc_ids[j]: float(s) for j, s in zip(idx.tolist(), val.tolist(),
                                                              strict=True)}
            for q, idx, val in zip(qids, top.indices, top.values, strict=True)}


def _success(kind: str, rank: int) -> bool:
    return rank <= 10 if kind == "insert" else rank > 10


@dataclass
class EditBench:
    """The unedited ranking of ``dataset`` by ``model``, to measure edits against."""

    model: BiEncoder
    dataset: Dataset
    before: Ranking | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.before is None:  # the unedited corpus comes from the embedding cache
            docs = encode_corpus(self.model, self.dataset, progress=self.progress)
            self.before = rank_corpus(self.model, self.dataset, docs=docs)
        self.judged = [q for q in self.dataset.query_ids if self.dataset.relevant(q)]
        self.ndcg_before = evaluate(_run(self.before, self.judged), self.dataset.qrels,
                                    ["nDCG@10"]).per_query

    @torch.no_grad()
    def measure(self, edit: Edit, requests: list[EditRequest]) -> list[dict]:
        """One row per request: ranks, efficacy, generalisation and locality."""
        for r in requests:
            check_request(r, self.before)
        with edit.applied(self.model):
            after = rank_corpus(self.model, self.dataset)  # the jobs bar shows progress
            extra = [t for r in requests for t in r.paraphrases]
            para = self.model.encode_queries(extra) if extra else None
        para_scores = None if para is None else self.model.similarity(para, after.docs)
        touched = {r.query_id for r in requests} | {q for r in requests
                                                   for q in r.related_queries}
        local = [q for q in self.judged if q not in touched]
        ndcg_after = evaluate(_run(after, local), {q: self.dataset.qrels[q] for q in local},
                              ["nDCG@10"]).per_query if local else {}
        before_top = _run(self.before, local, 10)
        after_top = _run(after, local, 10)
        churn = sum(len(set(before_top[q]) ^ set(after_top[q])) for q in local) // 2
        cosine = float(F.cosine_similarity(self.before.docs, after.docs, dim=-1).mean())
        delta_ndcg = float(np.mean([ndcg_after[q]["nDCG@10"] - self.ndcg_before[q]["nDCG@10"]
                                    for q in local])) if local else 0.0
        rows, offset = [], 0
        for r in requests:
            rank_after = after.rank(r.query_id, r.doc_id)
            j = after.doc_ids.index(r.doc_id)
            gen = []
            for i in range(len(r.paraphrases)):
                row = para_scores[offset + i]
                gen.append(_success(r.kind, 1 + int((row > row[j]).sum())))
            offset += len(r.paraphrases)
            gen += [_success(r.kind, after.rank(q, r.doc_id)) for q in r.related_queries]
            rows.append({
                "kind": r.kind, "query_id": r.query_id, "doc_id": r.doc_id,
                "rank_before": self.before.rank(r.query_id, r.doc_id),
                "rank_after": rank_after, "efficacy": _success(r.kind, rank_after),
                "generalisation": float(np.mean(gen)) if gen else float("nan"),
                "n_generalisation": len(gen), "locality_delta_ndcg10": delta_ndcg,
                "locality_top10_changes": churn, "locality_doc_cosine": cosine,
                "seconds": float(edit.info.get("seconds", float("nan"))) / len(requests),
            })
        return rows
