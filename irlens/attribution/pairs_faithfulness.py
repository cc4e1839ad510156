"""Is the matched word really what the query token used? Deletion faithfulness of
token-pair attribution.

For each query word i of a pair, one document word is deleted from the text and the
score drop s(q, d) - s(q, d without the word) is measured, for three choices of word:

- ``pairs``: the word i matched most strongly (argmax_j A[i, j], integrated Jacobians);
- ``ig``: the document word with the largest per-token Integrated Gradients score (one
  heatmap of the document side; the same word for every i);
- ``random``: a random document word (seeded per pair).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from irlens.attribution.ig import IntegratedGradients
from irlens.attribution.pairs import IntegratedJacobians, TokenPairAttribution, _merge

__all__ = ["pair_deletion_table"]


def _delete(text: str, span: tuple[int, int]) -> str:
    out = (text[:span[0]] + text[span[1]:]).replace("  ", " ").strip()
    return out or "."


def _word_spans(r: TokenPairAttribution) -> list[tuple[int, int]]:
    spans: dict[int, list[int]] = {}
    _, index = _merge(r.doc, r.doc_word_ids, r.doc_offsets)
    for w, (s, e) in zip(index, r.doc_offsets, strict=True):
        if w >= 0:
            span = spans.setdefault(w, [s, e])
            span[0], span[1] = min(span[0], s), max(span[1], e)
    return [tuple(spans[k]) for k in sorted(spans)]


def pair_deletion_table(model, queries: list[str], docs: list[str], n_steps: int = 16,
                        max_doc_tokens: int | None = 64, seed: int = 0,
                        pairs: list[TokenPairAttribution] | None = None,
                        first_pair: int = 0) -> pd.DataFrame:
    """One row per (pair, query word, choice): the deleted word and the score drop.

    Pairs are numbered from ``first_pair`` (the ``pair`` column, and the seed of each
    pair's random words), so a long run can be done one pair at a time and resumed:
    ``pair_deletion_table(..., pairs=[r_k], first_pair=k)`` gives pair k's rows of the
    table computed over all pairs at once.
    """
    pairs = pairs or IntegratedJacobians(model, n_steps=n_steps,
                                         max_doc_tokens=max_doc_tokens).attribute(queries, docs)
    rows = []
    for p, r in enumerate(pairs, start=first_pair):
        doc = r.doc[len(model.doc_prefix):] if model.doc_prefix else r.doc
        [ig] = IntegratedGradients(model, n_steps=n_steps, target="doc").attribute(
            r.query[len(model.query_prefix):], doc)
        ig_words = [w for w in ig.words() if w.segment == 3]
        q_words, d_words, m = r.words()
        spans = _word_spans(r)
        ig_pick = int(np.argmax([w.score for w in ig_words]))
        rng = random.Random(seed * 100_003 + p)
        for i, qw in enumerate(q_words):
            picks = {"pairs": int(np.argmax(m[i])), "ig": ig_pick,
                     "random": rng.randrange(len(d_words))}
            for choice, j in picks.items():
                rows.append({"pair": p, "query_word": qw, "choice": choice,
                             "word": d_words[j], "text": _delete(r.doc, spans[j])})
    frame = pd.DataFrame(rows)
    base = {p: r.score for p, r in enumerate(pairs, start=first_pair)}
    queries_for = [pairs[p - first_pair].query for p in frame["pair"]]
    scores = model.score(queries_for, list(frame["text"])).detach().float().numpy() \
        if len(frame) else np.zeros(0)
    frame["drop"] = [base[p] - s for p, s in zip(frame["pair"], scores, strict=True)]
    return frame.drop(columns="text")
