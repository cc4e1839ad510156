"""Efficacy, generalisation and locality of an edit, measured by retrieval.

For each request (Meng et al. 2022's measures, read off a ranking of the whole corpus):

- **efficacy**: insert: the document reaches the query's top 10; remove: it leaves it.
  The rank before and after is kept.
- **generalisation**: the same test on the other judged queries that judge the document
  relevant (real paraphrases of what the document answers; NaN when there are none).
- **robustness**: the same test on the request's query with its words shuffled and with
  one word dropped (nearly the same input for a mean-pooled encoder: reported apart).
- **locality**: on every other judged query, the change in nDCG@10 (ir_measures), how
  many (query, document) pairs enter or leave a top 10, and the mean cosine between the
  old and the new document vectors.

The edited model re-encodes the whole corpus (an edit of a shared tower moves documents
too). For an edit of layer ``l`` and above, the corpus and the queries are encoded up to
layer ``l`` once (:mod:`irlens.editing.layer_cache`, kept for the last such layer while
it fits ``cache_bytes``) and each measurement runs only the layers from ``l`` up; an edit
of only the FFN output matrix is applied to the kept FFN keys through its low-rank factors
(one rank-one edit: one matrix-vector product per text).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from irlens.activations.suffix import layers_of
from irlens.data import Dataset
from irlens.editing import layer_cache
from irlens.editing.edit import Edit
from irlens.editing.requests import EditRequest, Ranking, check_request, rank_corpus
from irlens.evaluation import evaluate
from irlens.models import BiEncoder
from irlens.retrieval import encode_corpus

__all__ = ["EditBench", "ranking_run"]


def ranking_run(ranking: Ranking, qids: list[str], k: int = 100) -> dict[str, dict[str, float]]:
    """The top ``k`` of each query in ``qids`` as an ir_measures run."""
    rows = [ranking.query_ids.index(q) for q in qids]
    top = torch.topk(ranking.scores[rows], min(k, ranking.scores.shape[1]))
    return {q: {ranking.doc_ids[j]: float(s) for j, s in zip(idx.tolist(), val.tolist(),
                                                              strict=True)}
            for q, idx, val in zip(qids, top.indices, top.values, strict=True)}


def _factors(delta: torch.Tensor, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left [r, H], right [I, r])`` with ``keys @ right @ left == keys @ delta.T`` for
    ``delta`` [H, I], ``r`` its numerical rank (singular values below ``rtol`` x the largest
    dropped), or the dense ``(I_H, delta.T)`` when the rank is not low."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    rank = int((s > rtol * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    if rank > min(delta.shape) // 4:
        return torch.eye(delta.shape[0], dtype=delta.dtype, device=delta.device), delta.T
    return (u[:, :rank] * s[:rank]).T, vh[:rank].T


def _success(kind: str, rank: int) -> bool:
    return rank <= 10 if kind == "insert" else rank > 10


@dataclass
class EditBench:
    """The unedited ranking of ``dataset`` by ``model``, to measure edits against."""

    model: BiEncoder
    dataset: Dataset
    before: Ranking | None = None
    progress: bool = False
    cache_bytes: int = 8 * 2**30  # the most the layer-state cache may hold

    def __post_init__(self) -> None:
        self._inputs: tuple | None = None  # (how, layer, doc states, query states)
        if self.before is None:  # the unedited corpus comes from the embedding cache
            docs = encode_corpus(self.model, self.dataset, progress=self.progress)
            self.before = rank_corpus(self.model, self.dataset, docs=docs)
        self.judged = [q for q in self.dataset.query_ids if self.dataset.relevant(q)]
        self.ndcg_before = evaluate(ranking_run(self.before, self.judged), self.dataset.qrels,
                                    ["nDCG@10"]).per_query

    def _states(self, how: str, layer: int) -> tuple:
        """The corpus's and the queries' states at ``layer`` (``how``: "ffn" or "input"),
        computed once with the unedited model and kept for the next edit."""
        if self._inputs is None or self._inputs[:2] != (how, layer):
            self._inputs = None  # free the old layer's states first
            make = layer_cache.ffn_inputs if how == "ffn" else layer_cache.layer_inputs
            self._inputs = (how, layer, make(self.model, self.dataset.doc_texts(), "doc", layer),
                            make(self.model, self.dataset.query_texts(), "query", layer))
        return self._inputs[2:]

    def _rank_edited(self, edit: Edit) -> Ranking:
        """The edited model's ranking, re-running only the layers the edit can change."""
        hidden = self.model.doc_encoder.config.hidden_size
        size = self.before.docs.shape[0] * self.model.max_length * 4 * hidden
        ffn = layer_cache.ffn_output_layer(self.model, edit.deltas)
        start = layer_cache.first_edited_layer(self.model, edit.deltas)
        if ffn is not None and 5 * size <= self.cache_bytes:  # keys are 4 x hidden wide
            dense = layers_of(self.model, "doc")[ffn].output.dense
            names = {id(p): n for n, p in self.model.named_parameters()}
            weight, bias = (None if p is None else edit.deltas.get(names[id(p)])
                            for p in (dense.weight, dense.bias))
            left, right = _factors(torch.zeros_like(dense.weight) if weight is None else weight)

            def change(keys: torch.Tensor) -> torch.Tensor:  # what the delta adds to dense
                out = (keys @ right.to(keys.device, keys.dtype)) @ left.to(keys.device,
                                                                           keys.dtype)
                return out if bias is None else out + bias.to(keys.device, keys.dtype)

            docs, queries = (layer_cache.embed_with_ffn_change(self.model, s, change)
                             for s in self._states("ffn", ffn))
        elif start and size <= self.cache_bytes:
            with edit.applied(self.model):
                docs, queries = (layer_cache.embed_from(self.model, s)
                                 for s in self._states("input", start))
        else:
            with edit.applied(self.model):
                return rank_corpus(self.model, self.dataset)
        return Ranking(self.dataset.doc_ids, self.dataset.query_ids, docs, queries,
                       self.model.similarity(queries, docs))

    def doc_states(self, layer: int, texts: list[str]) -> layer_cache.FFNInputs | None:
        """Layer ``layer``'s kept FFN states of these corpus documents (unedited model),
        or None when a text is not in the corpus or the states would not fit."""
        if not hasattr(self, "_rows"):
            self._rows = {t: i for i, t in reversed(list(enumerate(self.dataset.doc_texts())))}
        rows = [self._rows.get(t) for t in texts]
        hidden = self.model.doc_encoder.config.hidden_size
        size = self.before.docs.shape[0] * self.model.max_length * 4 * hidden
        if None in rows or 5 * size > self.cache_bytes:
            return None
        return layer_cache.select(self._states("ffn", layer)[0], rows)

    def ranked(self, edit: Edit) -> Ranking:
        """The whole corpus ranked by the model with ``edit`` (the model as it was loaded,
        plus the edit), re-running only the layers the edit can change."""
        with torch.no_grad():
            return self._rank_edited(edit)

    @torch.no_grad()
    def measure(self, edit: Edit, requests: list[EditRequest]) -> list[dict]:
        """One row per request: ranks, efficacy, generalisation and locality."""
        for r in requests:
            check_request(r, self.before)
        after = self._rank_edited(edit)
        with edit.applied(self.model):
            extra = [t for r in requests for t in r.paraphrases]
            para = self.model.encode_queries(extra) if extra else None
        para_scores = None if para is None else self.model.similarity(para, after.docs)
        touched = {r.query_id for r in requests} | {q for r in requests
                                                   for q in r.related_queries}
        local = [q for q in self.judged if q not in touched]
        ndcg_after = evaluate(ranking_run(after, local), {q: self.dataset.qrels[q] for q in local},
                              ["nDCG@10"]).per_query if local else {}
        before_top = ranking_run(self.before, local, 10)
        after_top = ranking_run(after, local, 10)
        churn = sum(len(set(before_top[q]) ^ set(after_top[q])) for q in local) // 2
        cosine = float(F.cosine_similarity(self.before.docs, after.docs, dim=-1).mean())
        delta_ndcg = float(np.mean([ndcg_after[q]["nDCG@10"] - self.ndcg_before[q]["nDCG@10"]
                                    for q in local])) if local else 0.0
        rows, offset = [], 0
        for r in requests:
            rank_after = after.rank(r.query_id, r.doc_id)
            j = after.doc_ids.index(r.doc_id)
            robust = []
            for i in range(len(r.paraphrases)):
                row = para_scores[offset + i]
                robust.append(_success(r.kind, 1 + int((row > row[j]).sum())))
            offset += len(r.paraphrases)
            gen = [_success(r.kind, after.rank(q, r.doc_id)) for q in r.related_queries
                   if q in after.query_ids]
            rows.append({
                "kind": r.kind, "query_id": r.query_id, "doc_id": r.doc_id,
                "rank_before": self.before.rank(r.query_id, r.doc_id),
                "rank_after": rank_after, "efficacy": _success(r.kind, rank_after),
                "generalisation": float(np.mean(gen)) if gen else float("nan"),
                "n_generalisation": len(gen),
                "robustness": float(np.mean(robust)) if robust else float("nan"),
                "n_robustness": len(robust), "locality_delta_ndcg10": delta_ndcg,
                "locality_top10_changes": churn, "locality_doc_cosine": cosine,
                "seconds": float(edit.info.get("seconds", float("nan"))) / len(requests),
            })
        return rows
