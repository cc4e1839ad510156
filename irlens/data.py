"""Retrieval test collections: loading BEIR folders, subsetting, sampling training pairs.

A :class:`Dataset` holds a corpus, the queries of one split and their relevance
judgements (qrels). :func:`load_dataset` reads the BEIR layout::

    <folder>/corpus.jsonl[.gz]     {"_id", "title", "text"} per line
    <folder>/queries.jsonl[.gz]    {"_id", "text"} per line
    <folder>/qrels/<split>.tsv     query-id <TAB> corpus-id <TAB> score, with a header

or, when the argument is not a folder, an ``ir_datasets`` id. Samplers draw relevant
(query, document) pairs and (query, positive, negative) triplets, deterministically for
a seed. Graded judgements (TREC DL: 0-3) are cut by ``min_relevance``: a document is
relevant when its grade is at least ``min_relevance``, and a negative is either judged
below it or unjudged.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from irlens._warn import warn
from irlens.errors import IrlensError

__all__ = [
    "Document",
    "Dataset",
    "Triplet",
    "load_dataset",
    "load_triples_tsv",
    "sample_pairs",
    "sample_triplets",
]

_LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv (the BEIR layout)"


@dataclass(frozen=True)
class Document:
    """One corpus entry; :attr:`contents` is what a model encodes."""

    title: str
    text: str

    @property
    def contents(self) -> str:
        """``title + " " + text``, stripped: the BEIR/MTEB convention for encoding."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Triplet:
    """A query with one relevant (positive) and one non-relevant (negative) document."""

    qid: str
    query: str
    pos_id: str
    pos_text: str
    neg_id: str
    neg_text: str


@dataclass
class Dataset:
    """A corpus, the queries of one split, and their graded relevance judgements.

    Attributes:
        name: short name, safe in file names (the folder name, or the ir_datasets id
            with ``/`` turned into ``-``).
        corpus: doc id -> :class:`Document`, in file order.
        queries: query id -> text; only queries judged in ``split``.
        qrels: query id -> {doc id: grade}. A judged doc may be missing from the corpus
            (it then counts as relevant but unretrievable, as in BEIR).
        split: the qrels split, e.g. ``"test"``.
    """

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str = "test"
    source: str = field(default="", compare=False)

    @cached_property
    def corpus_fingerprint(self) -> str:
        """Stable sha1 of the corpus ids and contents (keys document-embedding caches)."""
        digest = hashlib.sha1()
        for doc_id, doc in self.corpus.items():
            digest.update(doc_id.encode())
            digest.update(b"\x1f")
            digest.update(doc.contents.encode())
            digest.update(b"\x1e")
        return digest.hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """Stable sha1 of the corpus, the queries and the judgements (keys results and
        resumes: a changed query or grade is other data)."""
        digest = hashlib.sha1(self.corpus_fingerprint.encode())
        for qid, text in self.queries.items():
            digest.update(f"\x1dq{qid}\x1f{text}".encode())
        for qid in sorted(self.qrels):
            for doc_id, grade in sorted(self.qrels[qid].items()):
                digest.update(f"\x1dj{qid}\x1f{doc_id}\x1f{grade}".encode())
        return digest.hexdigest()

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def doc_texts(self, doc_ids: list[str] | None = None) -> list[str]:
        """Texts to encode (:attr:`Document.contents`) for ``doc_ids`` (default: all)."""
        ids = self.doc_ids if doc_ids is None else doc_ids
        return [self.corpus[doc_id].contents for doc_id in ids]

    @property
    def query_ids(self) -> list[str]:
        return list(self.queries)

    def query_texts(self, query_ids: list[str] | None = None) -> list[str]:
        ids = self.query_ids if query_ids is None else query_ids
        return [self.queries[qid] for qid in ids]

    def relevant(self, qid: str, min_relevance: int = 1) -> dict[str, int]:
        """Judged docs of ``qid`` with grade >= ``min_relevance`` that are in the corpus."""
        return {
            doc_id: grade
            for doc_id, grade in self.qrels.get(qid, {}).items()
            if grade >= min_relevance and doc_id in self.corpus
        }

    def subset(self, max_docs: int | None = None, max_queries: int | None = None) -> Dataset:
        """A smaller dataset, the same on every call.

        Keeps the first ``max_queries`` queries (file order), every judged document of
        the kept queries, then corpus documents in file order as distractors until
        ``max_docs`` (exceeded only when the judged documents alone are more).
        """
        qids = self.query_ids[:max_queries] if max_queries is not None else self.query_ids
        qrels = {qid: dict(self.qrels[qid]) for qid in qids}
        if max_docs is None:
            corpus = dict(self.corpus)
        else:
            keep = {d for judged in qrels.values() for d in judged if d in self.corpus}
            for doc_id in self.corpus:
                if len(keep) >= max_docs:
                    break
                keep.add(doc_id)
            corpus = {d: doc for d, doc in self.corpus.items() if d in keep}
        return Dataset(
            name=self.name,
            corpus=corpus,
            queries={qid: self.queries[qid] for qid in qids},
            qrels=qrels,
            split=self.split,
            source=self.source,
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, split={self.split!r}, docs={len(self.corpus)}, "
            f"queries={len(self.queries)}, judgements={sum(map(len, self.qrels.values()))})"
        )


def load_dataset(
    path_or_id: str | Path,
    split: str = "test",
    max_docs: int | None = None,
    max_queries: int | None = None,
    strict: bool = False,
) -> Dataset:
    """Load a BEIR folder (or an ``ir_datasets`` id) and keep the queries judged in ``split``.

    ``max_docs``/``max_queries`` give a deterministic subset (see :meth:`Dataset.subset`);
    every judged document of the kept queries stays. Raises :class:`IrlensError` naming
    the file and line of any malformed input. Judgements that name a document missing
    from the corpus (relevant, but never retrievable) give one warning with their count,
    or an error with ``strict=True``.
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        dataset = _load_beir(path, split)
    elif path.exists():
        raise IrlensError(f"{path} is a file; pass the dataset folder holding {_LAYOUT}")
    else:
        dataset = _load_ir_datasets(str(path_or_id), split)
    _check_judged_docs(dataset, strict)
    if max_docs is not None or max_queries is not None:
        dataset = dataset.subset(max_docs=max_docs, max_queries=max_queries)
    return dataset


def _check_judged_docs(dataset: Dataset, strict: bool) -> None:
    """Warn (or, when ``strict``, fail) about judgements of documents not in the corpus."""
    missing = [(qid, doc_id) for qid, judged in dataset.qrels.items() for doc_id in judged
               if doc_id not in dataset.corpus]
    if not missing:
        return
    total = sum(map(len, dataset.qrels.values()))
    what = (f"{dataset.source or dataset.name} ({dataset.split}): {len(missing)} of {total} "
            f"judgements name documents missing from the corpus (first: query "
            f"{missing[0][0]!r}, document {missing[0][1]!r})")
    if strict:
        raise IrlensError(f"{what}; add them to the corpus or remove them from the qrels, "
                          "or load without strict")
    warn(f"{what}; they count as relevant but can never be retrieved (strict=True or "
         "--strict makes this an error)")


def sample_pairs(
    dataset: Dataset, n: int | None, seed: int = 0, min_relevance: int = 1
) -> list[tuple[str, str]]:
    """``n`` distinct relevant (query id, doc id) pairs, the same for the same seed.

    A pair is relevant when its grade is >= ``min_relevance`` and the doc is in the
    corpus. ``n=None`` returns every relevant pair, shuffled.
    """
    pairs = relevant_pairs(dataset, min_relevance)
    random.Random(seed).shuffle(pairs)
    if n is None:
        return pairs
    if n > len(pairs):
        raise IrlensError(
            f"asked for {n} pairs but {dataset.name} ({dataset.split}) has only {len(pairs)} "
            f"with relevance >= {min_relevance}; lower n or min_relevance"
        )
    return pairs[:n]


def sample_triplets(
    dataset: Dataset,
    n: int,
    negatives: str | Mapping[str, Mapping[str, float]] = "bm25",
    seed: int = 0,
    min_relevance: int = 1,
    bm25_depth: int = 100,
) -> list[Triplet]:
    """``n`` (query, positive, negative) triplets, the same for the same seed.

    Each relevant pair gives at most one triplet, so ``n`` is at most the number of
    relevant pairs (see :func:`sample_pairs`).

    Args:
        negatives: ``"bm25"`` draws each negative uniformly from the BM25 top
            ``bm25_depth`` (hard negatives); ``"random"`` from the whole corpus; a run
            (query id -> {doc id: score}) draws from that run's documents.
        min_relevance: positives have grade >= this; negatives are judged below it or
            unjudged.
    """
    if isinstance(negatives, str) and negatives not in ("bm25", "random"):
        raise IrlensError(
            f"unknown negatives {negatives!r}; use 'bm25', 'random' or a run dict "
            "(query id -> {doc id: score})"
        )
    if negatives == "bm25":
        # Imported here: retrieval builds on data, not the other way round.
        from irlens.retrieval import bm25_search

        candidates: Mapping[str, Mapping[str, float]] | None = bm25_search(
            dataset, k=bm25_depth, progress=False
        )
    else:
        candidates = None if negatives == "random" else negatives  # type: ignore[assignment]

    rng = random.Random(seed)
    pairs = relevant_pairs(dataset, min_relevance)
    rng.shuffle(pairs)
    doc_ids = dataset.doc_ids
    triplets: list[Triplet] = []
    for qid, pos_id in pairs:
        if len(triplets) == n:
            break
        if candidates is None:
            neg_id = _random_negative(rng, doc_ids, dataset, qid, min_relevance)
        else:
            pool = sorted(
                d for d in candidates.get(qid, {}) if _is_negative(dataset, qid, d, min_relevance)
            )
            neg_id = rng.choice(pool) if pool else None
        if neg_id is None:
            continue
        triplets.append(
            Triplet(
                qid=qid,
                query=dataset.queries[qid],
                pos_id=pos_id,
                pos_text=dataset.corpus[pos_id].contents,
                neg_id=neg_id,
                neg_text=dataset.corpus[neg_id].contents,
            )
        )
    if len(triplets) < n:
        raise IrlensError(
            f"could build only {len(triplets)} of {n} triplets from {dataset.name} "
            f"({dataset.split}); lower n, min_relevance, or use a deeper negatives pool"
        )
    return triplets


def load_triples_tsv(path: str | Path, limit: int | None = None) -> list[Triplet]:
    """Read MS MARCO ``triples.train`` lines: query <TAB> positive <TAB> negative.

    The file has no ids, so ids name the line: ``L7`` for the query, ``L7+``/``L7-``
    for its positive and negative. Text is kept as it is (MS MARCO mojibake included).
    """
    path = Path(path)
    triplets: list[Triplet] = []
    for lineno, line in _lines(path):
        if limit is not None and len(triplets) >= limit:
            break
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 3:
            raise IrlensError(
                f"{path}:{lineno}: expected 3 tab-separated columns "
                f"(query, positive, negative), found {len(cols)}"
            )
        tag = f"L{lineno}"
        triplets.append(Triplet(tag, cols[0], f"{tag}+", cols[1], f"{tag}-", cols[2]))
    return triplets


# --- BEIR folders ------------------------------------------------------------------------


def _load_beir(folder: Path, split: str) -> Dataset:
    corpus_file = _jsonl_file(folder, "corpus")
    queries_file = _jsonl_file(folder, "queries")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        if not available:
            raise IrlensError(f"{folder / 'qrels'} has no <split>.tsv files; expected {_LAYOUT}")
        raise IrlensError(
            f"no split {split!r} in {folder / 'qrels'}; available splits: {', '.join(available)}"
        )

    all_queries: dict[str, tuple[str, int]] = {}
    for lineno, record in _read_jsonl(queries_file):
        qid = _record_id(record, queries_file, lineno)
        all_queries[qid] = (str(record.get("text") or "").strip(), lineno)

    qrels = _read_qrels(qrels_file, all_queries)
    queries: dict[str, str] = {}
    for qid in all_queries:  # file order
        if qid not in qrels:
            continue
        text, lineno = all_queries[qid]
        if not text:
            raise IrlensError(
                f"{queries_file}:{lineno}: query {qid!r} has empty text; "
                "give it text or remove it and its qrels"
            )
        queries[qid] = text
    return Dataset(
        name=folder.name,
        corpus=_read_corpus(corpus_file),
        queries=queries,
        qrels={qid: qrels[qid] for qid in queries},
        split=split,
        source=str(folder),
    )


def _jsonl_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.jsonl", folder / f"{stem}.jsonl.gz"):
        if candidate.is_file():
            return candidate
    raise IrlensError(f"{folder} has no {stem}.jsonl (or .jsonl.gz); expected {_LAYOUT}")


def _read_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    empty: list[str] = []
    for lineno, record in _read_jsonl(path):
        doc_id = _record_id(record, path, lineno)
        if doc_id in corpus:
            raise IrlensError(f"{path}:{lineno}: duplicate _id {doc_id!r}; ids must be unique")
        doc = Document(title=str(record.get("title") or ""), text=str(record.get("text") or ""))
        if doc.contents:
            corpus[doc_id] = doc
        else:
            empty.append(doc_id)
    if empty:
        warn(
            f"{path}: skipped {len(empty)} documents with empty title and text "
            f"(first: {empty[0]!r})"
        )
    return corpus


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise IrlensError(
                f"{path}:{lineno}: malformed JSON ({err.msg}); fix or remove that line"
            ) from None
        if not isinstance(record, dict):
            raise IrlensError(f"{path}:{lineno}: expected a JSON object with '_id'")
        yield lineno, record


def _record_id(record: dict, path: Path, lineno: int) -> str:
    if "_id" not in record:
        raise IrlensError(f"{path}:{lineno}: line has no '_id'; every line needs an _id field")
    return str(record["_id"])


def _read_qrels(path: Path, queries: Mapping[str, object]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if lineno == 1 and cols[-1].strip() == "score":
            continue  # header
        if len(cols) != 3:
            raise IrlensError(
                f"{path}:{lineno}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), found {len(cols)}"
            )
        qid, doc_id, score = (c.strip() for c in cols)
        try:
            grade = int(score)
        except ValueError:
            raise IrlensError(
                f"{path}:{lineno}: score {score!r} is not an integer; "
                "qrels scores are integer grades"
            ) from None
        if qid not in queries:
            raise IrlensError(
                f"{path}:{lineno}: query {qid!r} is not in queries.jsonl; "
                "add it there or remove its qrels"
            )
        qrels.setdefault(qid, {})[doc_id] = grade
    return qrels


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file (gzipped when it ends in .gz); a line that is
    not valid UTF-8 is a one-line error naming the file, line and byte."""
    if not path.is_file():
        raise IrlensError(f"no such file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise IrlensError(
                    f"{path}:{lineno}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); re-encode the file as UTF-8 or fix that line"
                ) from None


# --- ir_datasets -------------------------------------------------------------------------


def _load_ir_datasets(dataset_id: str, split: str) -> Dataset:
    """The id names the split (``beir/scifact/test``); ``split`` is recorded as a label."""
    try:
        import ir_datasets
    except ImportError:
        raise IrlensError(
            f"no dataset folder {dataset_id} (expected {_LAYOUT}); to load an ir_datasets "
            "id instead, pip install irlens[datasets]"
        ) from None
    try:
        source = ir_datasets.load(dataset_id)
    except KeyError:
        raise IrlensError(
            f"{dataset_id!r} is neither a dataset folder (expected {_LAYOUT}) nor an "
            "ir_datasets id such as 'beir/scifact/test'"
        ) from None
    for needed in ("docs", "queries", "qrels"):
        if not getattr(source, f"has_{needed}")():
            raise IrlensError(
                f"ir_datasets {dataset_id!r} has no {needed}; pick an id with a split, "
                "e.g. 'beir/scifact/test'"
            )
    corpus = {
        doc.doc_id: Document(title=getattr(doc, "title", "") or "", text=doc.text)
        for doc in source.docs_iter()
    }
    all_queries = {q.query_id: _query_text(q) for q in source.queries_iter()}
    qrels: dict[str, dict[str, int]] = {}
    for qrel in source.qrels_iter():
        if qrel.query_id in all_queries:
            qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    for qid in qrels:
        if not all_queries[qid]:
            raise IrlensError(f"ir_datasets {dataset_id!r}: query {qid!r} has empty text")
    return Dataset(
        name=_file_safe(dataset_id),
        corpus={d: doc for d, doc in corpus.items() if doc.contents},
        queries={qid: text for qid, text in all_queries.items() if qid in qrels},
        qrels=qrels,
        split=split,
        source=f"ir_datasets:{dataset_id}",
    )


def _file_safe(name: str) -> str:
    """An ir_datasets id as a name that output file names can hold (no ``/``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"


def _query_text(query: object) -> str:
    text = getattr(query, "text", None)
    if text is None and hasattr(query, "default_text"):
        text = query.default_text()
    return str(text or "").strip()


# --- sampling helpers --------------------------------------------------------------------


def relevant_pairs(dataset: Dataset, min_relevance: int) -> list[tuple[str, str]]:
    return [
        (qid, doc_id)
        for qid in dataset.query_ids
        for doc_id in sorted(dataset.relevant(qid, min_relevance))
    ]


def _is_negative(dataset: Dataset, qid: str, doc_id: str, min_relevance: int) -> bool:
    """In the corpus, and judged below ``min_relevance`` or unjudged."""
    return doc_id in dataset.corpus and dataset.qrels[qid].get(doc_id, -1) < min_relevance


def _random_negative(
    rng: random.Random, doc_ids: list[str], dataset: Dataset, qid: str, min_relevance: int
) -> str | None:
    for _ in range(100):  # almost every document is a negative: rejection sampling
        doc_id = rng.choice(doc_ids)
        if _is_negative(dataset, qid, doc_id, min_relevance):
            return doc_id
    pool = [d for d in doc_ids if _is_negative(dataset, qid, d, min_relevance)]
    return rng.choice(pool) if pool else None
