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
from irlens.attribution.pairs import IntegratedJacobians, TokenPairAttribution
from irlens.errors import IrlensError
from irlens.models import Segment

__all__ = ["pair_deletion_table"]


def _delete(text: str, span: tuple[int, int]) -> str:
    out = (text[:span[0]] + text[span[1]:]).replace("  ", " ").strip()
    return out or "."


def _word_spans(word_ids: list[int], offsets: list[list[int]]) -> list[tuple[int, int]]:
    """(start, end) of each word, in the order of :func:`_merge`'s word list."""
    spans: dict[int, list[int]] = {}
    for w, (s, e) in zip(word_ids, offsets, strict=True):
        if w >= 0:
            span = spans.setdefault(w, [s, e])
            span[0], span[1] = min(span[0], s), max(span[1], e)
    return [(spans[k][0], spans[k][1]) for k in sorted(spans)]


def _unprompted(text: str, prefix: str) -> tuple[str, int]:
    """The text without the model's prompt prefix, and the prefix's length in ``text``."""
    cut = len(prefix) if prefix and text.startswith(prefix) else 0
    return text[cut:], cut


def pair_deletion_table(model, queries: list[str], docs: list[str], n_steps: int = 16,
                        max_doc_tokens: int | None = 64, seed: int = 0,
                        pairs: list[TokenPairAttribution] | None = None,
                        first_pair: int = 0) -> pd.DataFrame:
    """One row per (pair, query word, choice): the deleted word and the score drop.

    Pairs are numbered from ``first_pair`` (the ``pair`` column, and the seed of each
    pair's random words), so a long run can be done one pair at a time and resumed:
    ``pair_deletion_table(..., pairs=[r_k], first_pair=k)`` gives pair k's rows of the
    table computed over all pairs at once. With prompt prefixes (``query: ``), the words
    of the prompts are neither rows nor deleted, and every text is scored with each
    prefix added once (by the model).
    """
    pairs = pairs or IntegratedJacobians(model, n_steps=n_steps,
                                         max_doc_tokens=max_doc_tokens).attribute(queries, docs)
    rows, texts = [], []
    for p, r in enumerate(pairs, start=first_pair):
        query, q_cut = _unprompted(r.query, model.query_prefix)
        doc, d_cut = _unprompted(r.doc, model.doc_prefix)
        [ig] = IntegratedGradients(model, n_steps=n_steps, target="doc").attribute(query, doc)
        ig_words = [w for w in ig.words() if w.segment == Segment.DOC]
        q_words, d_words, m = r.words()
        q_keep = [i for i, (s, _) in enumerate(_word_spans(r.query_word_ids, r.query_offsets))
                  if s >= q_cut]
        spans = _word_spans(r.doc_word_ids, r.doc_offsets)
        content = [j for j, (s, _) in enumerate(spans) if s >= d_cut]  # not the prompt
        if len(ig_words) != len(content):
            raise IrlensError(f"pair {p}: integrated gradients split the document into "
                              f"{len(ig_words)} words, the pair attribution into "
                              f"{len(content)}; use the same tokenizer and max_doc_tokens")
        ig_pick = content[int(np.argmax([w.score for w in ig_words]))]
        rng = random.Random(seed * 100_003 + p)
        for i in q_keep:
            picks = {"pairs": content[int(np.argmax(m[i, content]))], "ig": ig_pick,
                     "random": content[rng.randrange(len(content))]}
            for choice, j in picks.items():
                start, end = spans[j]
                rows.append({"pair": p, "query_word": q_words[i], "choice": choice,
                             "word": d_words[j]})
                texts.append((query, _delete(doc, (start - d_cut, end - d_cut))))
    frame = pd.DataFrame(rows)
    base = {p: r.score for p, r in enumerate(pairs, start=first_pair)}
    scores = model.score([q for q, _ in texts], [d for _, d in texts]).detach().float() \
        .numpy() if texts else np.zeros(0)
    frame["drop"] = [base[p] - s for p, s in zip(frame["pair"], scores, strict=True)] \
        if texts else []
    return frame
