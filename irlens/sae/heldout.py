"""What an SAE was trained on, and whether an evaluation is held out from it.

Training rows are every document of each collection plus the queries of the qrels splits
named (``train`` and ``dev`` by default, where a collection has them), so test queries stay
out by construction; a training query whose text equals a held-out query's is dropped too
(scifact's train split repeats 2 test queries, nfcorpus's train and dev 4). The activation
cache, and from it the SAE's manifest (``extra['trained_on']``), records per collection the
corpus fingerprint, the query splits and a short hash of every training query's text;
:func:`training_overlap` reads them back to say whether an evaluated collection's
documents and queries were seen in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from irlens.data import Dataset, load_dataset
from irlens.errors import IrlensError

__all__ = ["HELD_OUT", "corpus_fingerprint", "query_hash", "trained_on", "training_dataset",
           "training_overlap"]

HELD_OUT = "test"  # the split whose queries fidelity is reported on


def query_hash(text: str) -> str:
    """A short hash of a query's text (what its vector depends on)."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def corpus_fingerprint(data: Dataset) -> str:
    """sha1 of the corpus ids and contents alone (queries and judgements excluded)."""
    digest = hashlib.sha1()
    for doc_id, doc in data.corpus.items():
        digest.update(f"{doc_id}\x1f{doc.contents}\x1e".encode())
    return digest.hexdigest()


def _splits(folder: Path) -> list[str]:
    return sorted(p.name[:-4] for p in (folder / "qrels").glob("*.tsv"))


def training_dataset(folder: str | Path, query_splits: Sequence[str], *,
                     held_out: str = HELD_OUT, max_docs: int | None = None,
                     max_queries: int | None = None) -> Dataset:
    """A BEIR folder's documents plus the queries of those ``query_splits`` it has
    (none: documents only). Unless ``held_out`` is among ``query_splits``, queries judged
    in it, by id or by text, are left out. ``split`` names what was kept
    (``"train+dev"``, ``"none"``). ``max_docs`` keeps the documents that
    ``load_dataset(folder, held_out, max_docs=max_docs)`` keeps, so that an evaluation
    of that subset searches the documents trained on."""
    folder = Path(folder)
    available = _splits(folder)
    if not available:
        raise IrlensError(f"{folder / 'qrels'} has no <split>.tsv files; pass a BEIR folder")
    found = [s for s in query_splits if s in available]
    first = load_dataset(folder, found[0] if found else available[0])
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for split in found:
        part = first if split == first.split else load_dataset(folder, split)
        queries.update(part.queries)
        for qid, judged in part.qrels.items():
            qrels.setdefault(qid, {}).update(judged)
    if held_out not in found and held_out in available:
        test = first if first.split == held_out else load_dataset(folder, held_out)
        texts = set(test.queries.values())
        queries = {q: t for q, t in queries.items() if q not in test.queries and t not in texts}
        qrels = {q: qrels[q] for q in queries}
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
        qrels = {q: qrels[q] for q in queries}
    corpus = first.corpus
    if max_docs is not None:  # the documents `load_dataset(folder, held_out, max_docs=)`
        # evaluates on (its judged documents, then others), so fidelity sees the same ones
        base = held_out if held_out in available else available[0]
        corpus = load_dataset(folder, base, max_docs=max_docs).corpus
    return Dataset(name=first.name, corpus=corpus, queries=queries, qrels=qrels,
                   split="+".join(found) or "none", source=first.source)


def trained_on(config: dict) -> list[dict]:
    """Per training collection, from an activation cache's config: corpus fingerprint,
    documents, query split, queries and their text hashes."""
    if "sources" not in config:  # cache_array: vectors made elsewhere
        return [{"dataset": config.get("source", "array"), "array_sha1": config.get("sha1")}]
    return [{"dataset": s["name"], "corpus": s.get("corpus"), "docs": s.get("docs"),
             "query_split": s.get("split"), "queries": len(s.get("query_hashes", [])),
             "query_hashes": s.get("query_hashes")} for s in config["sources"]]


def training_overlap(sae, data: Dataset) -> dict:
    """Whether ``data``'s documents were in ``sae``'s training rows (``docs_seen``) and how
    many of its queries were (``queries_seen``); ``None`` where the SAE does not record
    it (trained before this was recorded, or on vectors made elsewhere)."""
    sources = sae.manifest.extra.get("trained_on")
    out = {"queries": len(data.queries), "docs_seen": None, "queries_seen": None}
    if not sources or any("corpus" not in s or s.get("query_hashes") is None
                          for s in sources):
        return out
    out["docs_seen"] = corpus_fingerprint(data) in {s["corpus"] for s in sources}
    seen = {h for s in sources for h in s["query_hashes"]}
    out["queries_seen"] = sum(query_hash(t) in seen for t in data.queries.values())
    return out
