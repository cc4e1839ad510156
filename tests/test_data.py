"""Loading BEIR folders, subsetting, samplers, and the one-line message for each bad input."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from tiny_data import CORPUS, QUERIES, write_beir

from irlens.data import (
    Dataset,
    Document,
    load_dataset,
    load_triples_tsv,
    sample_pairs,
    sample_triplets,
)
from irlens.errors import IrlensError


def raises_one_line(pattern: str, fn, *args, **kwargs) -> str:
    """Call ``fn``; it must raise IrlensError with a one-line message matching ``pattern``."""
    with pytest.raises(IrlensError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    return message


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "tiny")


# --- loading -----------------------------------------------------------------------------


def test_tiny_folder_loads_only_the_split_queries(beir):
    ds = load_dataset(beir)
    assert ds.name == "tiny" and ds.split == "test"
    assert ds.query_ids == ["q1", "q2", "q3"]
    assert ds.qrels["q1"] == {"d1": 2, "d5": 1, "d2": 0}
    assert ds.doc_ids == list(CORPUS)
    assert ds.corpus["d1"] == Document("Cats", CORPUS["d1"][1])
    assert ds.doc_texts(["d1", "d3"]) == [
        "Cats cats are small carnivores that eat mice and fish",
        CORPUS["d3"][1],  # empty title: no leading space
    ]
    train = load_dataset(beir, split="train")
    assert train.queries == {"q9": QUERIES["q9"]}


def test_gzipped_corpus_loads_the_same(tmp_path):
    plain = load_dataset(write_beir(tmp_path / "a"))
    zipped = load_dataset(write_beir(tmp_path / "b", gz=True))
    assert zipped.corpus == plain.corpus
    assert zipped.fingerprint == plain.fingerprint


def test_fingerprint_is_stable_and_follows_the_corpus(beir):
    first = load_dataset(beir).fingerprint
    assert load_dataset(beir).fingerprint == first
    assert re.fullmatch(r"[0-9a-f]{40}", first)
    corpus = beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("salmon", "trout"))
    assert load_dataset(beir).fingerprint != first



def test_fingerprint_follows_queries_and_judgements(beir):
    """Resume compares data fingerprints: a changed query or grade is other data, while
    the document-embedding cache key (the corpus alone) stays."""
    first = load_dataset(beir)
    queries, qrels = beir / "queries.jsonl", beir / "qrels" / "test.tsv"
    queries.write_text(queries.read_text().replace("salmon", "trout"))
    changed = load_dataset(beir)
    assert changed.fingerprint != first.fingerprint
    assert changed.corpus_fingerprint == first.corpus_fingerprint
    lines = qrels.read_text().splitlines()
    last = lines[-1].split("\t")
    lines[-1] = "\t".join([*last[:2], str(int(last[2]) + 1)])
    qrels.write_text("\n".join(lines) + "\n")
    regraded = load_dataset(beir)
    assert regraded.fingerprint not in {first.fingerprint, changed.fingerprint}
    assert regraded.corpus_fingerprint == first.corpus_fingerprint

@pytest.mark.real
def test_real_collections_match_their_published_counts(data_dir):
    scifact = load_dataset(data_dir / "scifact")
    assert (len(scifact.corpus), len(scifact.queries)) == (5183, 300)
    assert sum(map(len, scifact.qrels.values())) == 339
    nfcorpus = load_dataset(data_dir / "nfcorpus")
    assert (len(nfcorpus.corpus), len(nfcorpus.queries)) == (3633, 323)
    dl19 = load_dataset(data_dir / "msmarco-dl19")
    assert (len(dl19.corpus), len(dl19.queries)) == (35697, 43)
    grades = {g for judged in dl19.qrels.values() for g in judged.values()}
    assert grades == {0, 1, 2, 3}


@pytest.mark.real
def test_subset_is_deterministic_and_keeps_every_judged_doc(data_dir):
    full = load_dataset(data_dir / "scifact")
    sub = load_dataset(data_dir / "scifact", max_docs=100, max_queries=25)
    again = full.subset(max_docs=100, max_queries=25)
    assert sub.corpus == again.corpus and sub.queries == again.queries
    assert sub.query_ids == full.query_ids[:25]
    assert len(sub.corpus) == 100
    judged = {d for q in sub.query_ids for d in full.qrels[q]}
    assert judged <= set(sub.corpus)
    assert set(sub.qrels) == set(sub.queries)


def test_subset_smaller_than_the_judged_docs_keeps_them_all(beir):
    sub = load_dataset(beir, max_docs=1)
    assert set(sub.corpus) == {"d1", "d2", "d3", "d4", "d5"}


# --- bad input: one line naming the problem and the fix -------------------------------


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # as when it is not installed
    raises_one_line(
        r"no dataset folder .*nope.*corpus\.jsonl.*pip install irlens\[datasets\]",
        load_dataset,
        tmp_path / "nope",
    )


def test_missing_file_names_path_and_layout(beir):
    (beir / "queries.jsonl").unlink()
    raises_one_line(
        r"tiny has no queries\.jsonl .*expected corpus\.jsonl, queries\.jsonl", load_dataset, beir
    )


def test_file_instead_of_folder(beir):
    raises_one_line(
        r"corpus\.jsonl is a file; pass the dataset folder", load_dataset, beir / "corpus.jsonl"
    )


def test_unknown_split_lists_available(beir):
    raises_one_line(
        r"no split 'dev' .*available splits: test, train", load_dataset, beir, split="dev"
    )


def test_corpus_line_without_id(beir):
    corpus = beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"title": "x", "text": "y"}) + "\n")
    raises_one_line(r"corpus\.jsonl:7: line has no '_id'", load_dataset, beir)


def test_malformed_json_names_file_and_line(beir):
    queries = beir / "queries.jsonl"
    lines = queries.read_text().splitlines()
    lines[1] = lines[1][:-1]  # drop the closing brace
    queries.write_text("\n".join(lines) + "\n")
    raises_one_line(r"queries\.jsonl:2: malformed JSON", load_dataset, beir)


def test_qrels_query_not_in_queries(beir):
    qrels = beir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q404\td1\t1\n")
    raises_one_line(r"test\.tsv:7: query 'q404' is not in queries\.jsonl", load_dataset, beir)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("q1\td1", r"test\.tsv:7: expected 3 tab-separated columns .*found 2"),
        ("q1\td1\tvery", r"test\.tsv:7: score 'very' is not an integer"),
    ],
)
def test_bad_qrels_row(beir, row, pattern):
    qrels = beir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + row + "\n")
    raises_one_line(pattern, load_dataset, beir)


def test_empty_query_text_names_the_query(beir):
    queries = beir / "queries.jsonl"
    queries.write_text(queries.read_text().replace(QUERIES["q2"], "  "))
    raises_one_line(r"queries\.jsonl:2: query 'q2' has empty text", load_dataset, beir)


def test_empty_query_outside_the_split_is_ignored(beir):
    queries = beir / "queries.jsonl"
    queries.write_text(queries.read_text().replace(QUERIES["q9"], ""))
    assert len(load_dataset(beir).queries) == 3


def test_duplicate_doc_id(beir):
    corpus = beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "d1", "text": "again"}) + "\n")
    raises_one_line(r"corpus\.jsonl:7: duplicate _id 'd1'", load_dataset, beir)


@pytest.mark.parametrize("gz", [False, True])
def test_invalid_utf8_names_file_and_line(tmp_path, gz):
    import gzip

    beir = write_beir(tmp_path / "tiny", gz=gz)
    path = beir / ("corpus.jsonl.gz" if gz else "corpus.jsonl")
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    lines = data.split(b"\n")
    lines[2] = lines[2].replace(b"stock", b"st\xffck")  # a Latin-1 byte, not UTF-8
    data = b"\n".join(lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    raises_one_line(r"corpus\.jsonl(\.gz)?:3: invalid UTF-8 \(byte 0xff at column \d+\)",
                    load_dataset, beir)


def test_judgements_of_missing_documents_warn_once_or_fail_when_strict(beir):
    import warnings

    qrels = beir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q1\td404\t1\nq2\td405\t2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(beir)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert re.search(r"2 of 7 judgements name documents missing from the corpus \(first: "
                     r"query 'q1', document 'd404'\)", messages[0])
    assert ds.qrels["q1"]["d404"] == 1  # kept: relevant but unretrievable, as in BEIR
    raises_one_line(r"2 of 7 judgements name documents missing .*or load without strict",
                    load_dataset, beir, strict=True)


def test_ir_datasets_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_datasets", None)
    raises_one_line(r"pip install irlens\[datasets\]", load_dataset, "beir/scifact/test")


def test_ir_datasets_id_is_loaded_through_ir_datasets(monkeypatch):
    doc = types.SimpleNamespace
    source = types.SimpleNamespace(
        has_docs=lambda: True,
        has_queries=lambda: True,
        has_qrels=lambda: True,
        docs_iter=lambda: [doc(doc_id="a", title="T", text="x"), doc(doc_id="b", text="y")],
        queries_iter=lambda: [doc(query_id="1", text="find x"), doc(query_id="2", text="z")],
        qrels_iter=lambda: [doc(query_id="1", doc_id="a", relevance=1)],
    )
    fake = types.SimpleNamespace(load=lambda name: source)
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    ds = load_dataset("some/collection/test")
    assert ds.name == "some-collection-test"  # safe in output file names
    assert ds.source == "ir_datasets:some/collection/test"
    assert ds.doc_texts() == ["T x", "y"]
    assert ds.queries == {"1": "find x"} and ds.qrels == {"1": {"a": 1}}


# --- samplers ----------------------------------------------------------------------------


@pytest.mark.real
def test_sample_pairs_is_seeded_and_relevant(data_dir):
    ds = load_dataset(data_dir / "scifact")
    pairs = sample_pairs(ds, 50, seed=3)
    assert pairs == sample_pairs(ds, 50, seed=3)
    assert pairs != sample_pairs(ds, 50, seed=4)
    assert len(set(pairs)) == 50
    assert all(ds.qrels[q][d] >= 1 for q, d in pairs)


@pytest.mark.real
def test_graded_threshold_on_dl19(data_dir):
    ds = load_dataset(data_dir / "msmarco-dl19")
    pairs = sample_pairs(ds, None, seed=0, min_relevance=2)
    assert len(pairs) == 1804 + 697  # grades 2 and 3 (SOURCES.md)
    triplets = sample_triplets(ds, 40, negatives="bm25", seed=0, min_relevance=2)
    for t in triplets:
        assert ds.qrels[t.qid][t.pos_id] >= 2
        assert ds.qrels[t.qid].get(t.neg_id, -1) < 2
    # grade-1 documents count as negatives at this threshold
    assert any(ds.qrels[t.qid].get(t.neg_id) == 1 for t in triplets)


def test_too_many_pairs_is_an_error(beir):
    raises_one_line(
        r"asked for 9 pairs but tiny \(test\) has only 4 .*lower n",
        sample_pairs,
        load_dataset(beir),
        9,
    )


@pytest.mark.real
def test_bm25_triplets_are_hard_negatives(data_dir):
    ds = load_dataset(data_dir / "scifact", max_docs=400, max_queries=40)
    triplets = sample_triplets(ds, 20, negatives="bm25", seed=1, bm25_depth=10)
    assert triplets == sample_triplets(ds, 20, negatives="bm25", seed=1, bm25_depth=10)
    from irlens.retrieval import bm25_search

    top10 = bm25_search(ds, k=10, progress=False)
    for t in triplets:
        assert t.query == ds.queries[t.qid]
        assert t.pos_text == ds.corpus[t.pos_id].contents
        assert t.neg_text == ds.corpus[t.neg_id].contents
        assert ds.qrels[t.qid].get(t.neg_id, 0) < 1
        assert t.neg_id in top10[t.qid]


def test_random_and_run_negatives(beir):
    ds = load_dataset(beir)
    for t in sample_triplets(ds, 4, negatives="random", seed=0):
        assert ds.qrels[t.qid].get(t.neg_id, 0) < 1
    run = {"q1": {"d1": 9.0, "d6": 1.0}, "q2": {"d4": 3.0, "d3": 2.0}, "q3": {"d2": 1.0}}
    triplets = sample_triplets(ds, 4, negatives=run, seed=0)
    assert {(t.qid, t.neg_id) for t in triplets} == {("q1", "d6"), ("q2", "d3"), ("q3", "d2")}


def test_triplets_fail_when_no_negative_exists(beir):
    ds = load_dataset(beir)
    raises_one_line(
        r"could build only 0 of 2 triplets", sample_triplets, ds, 2, negatives={"q1": {"d1": 1.0}}
    )
    raises_one_line(r"unknown negatives 'hard'", sample_triplets, ds, 2, negatives="hard")


@pytest.mark.real
def test_msmarco_triples(data_dir, tmp_path):
    triplets = load_triples_tsv(data_dir / "msmarco-triples" / "triples.train.small.head1000.tsv")
    assert len(triplets) == 1000
    first = triplets[0]
    assert first.query == "is a little caffeine ok during pregnancy"
    assert (first.qid, first.pos_id, first.neg_id) == ("L1", "L1+", "L1-")
    assert first.pos_text and first.neg_text and first.pos_text != first.neg_text
    bad = tmp_path / "bad.tsv"
    bad.write_text("q\tpos\tneg\nq\tonly-two\n")
    raises_one_line(r"bad\.tsv:2: expected 3 tab-separated columns", load_triples_tsv, bad)


def test_dataset_built_in_memory():
    ds = Dataset("mem", {"a": Document("", "alpha")}, {"1": "alpha?"}, {"1": {"a": 1}})
    assert ds.relevant("1") == {"a": 1}
    assert "docs=1" in repr(ds)
