"""Where a score sits among a query's candidates: the reference point of an explanation.

Path attributions (Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML
2017) explain F(x) - F(x'), the difference to a baseline x'. If the baseline scores above
the real pair, the map explains why the pair scores *lower* than the blank input. So a
baseline should score near the bottom of what the model gives the query's candidates:
:func:`score_percentile` places a score among the query's scores against a sample of
corpus documents (:func:`corpus_sample`), with :func:`scipy.stats.percentileofscore`.
"""

from __future__ import annotations

import random

import torch
from scipy.stats import percentileofscore

from irlens.errors import IrlensError
from irlens.models import BiEncoder, CrossEncoder, Retriever
from irlens.paths import cut_text

__all__ = ["candidate_scores", "corpus_sample", "score_percentile"]


def corpus_sample(dataset, n: int = 200, seed: int = 0) -> list[str]:
    """``n`` documents of ``dataset``'s corpus drawn at random (seeded)."""
    if n < 1:
        raise IrlensError(f"the corpus sample needs at least 1 document, got {n}")
    ids = random.Random(seed).sample(dataset.doc_ids, min(n, len(dataset.doc_ids)))
    return [dataset.corpus[d].contents for d in ids]


@torch.no_grad()
def candidate_scores(model: Retriever, query: str, docs: list[str], output: str | None = None,
                     max_doc_tokens: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """The model's scores of ``query`` against each of ``docs`` [len(docs)] (documents cut
    to ``max_doc_tokens`` like the explained one)."""
    if max_doc_tokens:
        docs = [cut_text(model.tokenizer, d, max_doc_tokens) for d in docs]
    if isinstance(model, CrossEncoder):
        parts = [model.predict([query] * len(docs[i:i + batch_size]), docs[i:i + batch_size],
                               output=output) for i in range(0, len(docs), batch_size)]
        return torch.cat(parts).float().cpu()
    assert isinstance(model, BiEncoder)
    q = model.encode_queries([query])
    d = torch.cat([model.encode_docs(docs[i:i + batch_size])
                   for i in range(0, len(docs), batch_size)])
    return model.similarity(q, d)[0].float().cpu()


def score_percentile(score: float, scores: torch.Tensor) -> float:
    """Percent of ``scores`` below ``score`` (ties count half), 0 to 100."""
    return float(percentileofscore(scores.numpy(), score, kind="mean"))
