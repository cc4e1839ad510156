"""Perturbations that turn a real (query, document) pair into a clean/corrupted pair.

Axioms from Fang, Tao & Zhai, "A Formal Study of Information Retrieval Heuristics"
(SIGIR 2004), as used for activation patching by MechIR (Parry et al., 2025). In every
:class:`Perturbation` the *clean* input is the one the axiom says should score higher:

- ``tfc1``: clean = the document plus one more occurrence of a query term (the rarest
  query term found in the document, else the rarest query term), appended at the end;
  corrupted = the document.
- ``tdc``: clean = the document; corrupted = one occurrence of its rarest query term
  replaced by a query term of lower IDF. Pairs without a query term in the document, or
  without a lower-IDF query term, are skipped and counted.
- ``lnc1``: clean = the document; corrupted = the document plus non-relevant text (the
  opening words of another, unjudged document of the corpus).
- ``removal``: clean = the query; corrupted = the query without its rarest term that
  occurs in the document (the query side is the one that changes).
- :func:`text_pair`: a user-given clean and corrupted text (document or query side).

Terms are lower-cased word tokens (``\\w+``) minus scikit-learn's English stop words;
IDF is log(N / df) over the corpus.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from irlens.errors import IrlensError

__all__ = ["AXIOMS", "Perturbation", "document_frequencies", "filler_texts", "perturb",
           "text_pair", "terms"]

AXIOMS = ("tfc1", "tdc", "lnc1", "removal")
_WORD = re.compile(r"\w+")


def terms(text: str) -> list[str]:
    """Lower-cased word tokens without English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return [w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]


def document_frequencies(texts: Iterable[str]) -> tuple[Counter, int]:
    """Document frequency of every term, and the number of documents."""
    df: Counter = Counter()
    n = 0
    for text in texts:
        df.update(set(_WORD.findall(text.lower())))
        n += 1
    return df, n


@dataclass(frozen=True)
class Perturbation:
    """A clean and a corrupted (query, document); ``side`` is the text that differs."""

    axiom: str
    clean_query: str
    clean_doc: str
    corrupt_query: str
    corrupt_doc: str
    side: str  # "doc" or "query"
    term: str = ""  # the query term the perturbation is about ("" for lnc1/text pairs)


def text_pair(query: str, clean: str, corrupted: str, side: str = "doc",
              doc: str | None = None) -> Perturbation:
    """A user-given pair: two documents for ``query`` (``side="doc"``), or two queries
    for ``doc`` (``side="query"``)."""
    if side not in ("doc", "query"):
        raise IrlensError(f"side must be doc or query, got '{side}'")
    if not clean.strip() or not corrupted.strip():
        raise IrlensError("a text pair needs a non-empty clean and corrupted text")
    if side == "doc":
        return Perturbation("text", query, clean, query, corrupted, "doc")
    if doc is None:
        raise IrlensError("a query-side text pair needs the document (doc=...)")
    return Perturbation("text", clean, doc, corrupted, doc, "query")


def _idf(df: Mapping[str, int], n: int, term: str) -> float:
    return math.log(max(n, 1) / max(df.get(term, 0), 1))


def _replace_first(text: str, term: str, new: str) -> str:
    return re.sub(rf"(?i)\b{re.escape(term)}\b", new, text, count=1)


def perturb(axiom: str, query: str, doc: str, df: Mapping[str, int], n_docs: int,
            filler: str = "") -> Perturbation | str:
    """The axiom's perturbation of one pair, or the reason it cannot apply (a string)."""
    if axiom not in AXIOMS:
        raise IrlensError(f"unknown axiom '{axiom}'; use {', '.join(AXIOMS)}")
    q_terms = list(dict.fromkeys(terms(query)))
    if not q_terms:
        return "the query has no content terms"
    by_idf = sorted(q_terms, key=lambda t: -_idf(df, n_docs, t))
    in_doc = [t for t in by_idf if t in set(_WORD.findall(doc.lower()))]
    if axiom == "tfc1":
        term = (in_doc or by_idf)[0]
        return Perturbation(axiom, query, f"{doc.rstrip()} {term}", query, doc, "doc", term)
    if axiom == "tdc":
        if not in_doc:
            return "no query term in the document"
        term = in_doc[0]
        lower = [t for t in by_idf if _idf(df, n_docs, t) < _idf(df, n_docs, term)]
        if not lower:
            return "no query term of lower IDF to put in its place"
        return Perturbation(axiom, query, doc, query, _replace_first(doc, term, lower[-1]),
                            "doc", term)
    if axiom == "lnc1":
        if not filler.strip():
            return "no non-relevant text to append"
        return Perturbation(axiom, query, doc, query, f"{doc.rstrip()} {filler}", "doc")
    if not in_doc or len(q_terms) < 2:
        return "the query has no removable term that occurs in the document"
    term = in_doc[0]
    removed = re.sub(r"\s+", " ", re.sub(rf"(?i)\b{re.escape(term)}\b", "", query,
                                         count=1)).strip()
    return Perturbation(axiom, query, doc, removed, doc, "query", term)


def filler_texts(corpus: Mapping[str, str], exclude: set[str], n: int, words: int = 20,
                 seed: int = 0) -> list[str]:
    """``n`` non-relevant texts: the first ``words`` words of random unjudged documents."""
    ids = [d for d in corpus if d not in exclude]
    rng = random.Random(seed)
    return [" ".join(corpus[d].split()[:words]) for d in rng.sample(ids, min(n, len(ids)))]
