"""Private: search with vectors given directly (original, reconstructed or steered)."""

from __future__ import annotations

import torch

from irlens.retrieval import Run, exact_top_k

__all__ = ["vector_search"]


def vector_search(model, qids: list[str], queries: torch.Tensor, doc_ids: list[str],
                  docs: torch.Tensor, k: int = 100) -> Run:
    """Exact top-``k`` by the model's own similarity, for vectors given directly."""
    scores, hits = exact_top_k(model, queries, docs, min(k, len(doc_ids)), 65536)
    return {qid: {doc_ids[j]: s for j, s in zip(hits[i].tolist(), scores[i].tolist(),
                                                  strict=True)}
            for i, qid in enumerate(qids)}
