"""BM25, cached and resumable corpus encoding, dense search, reranking, runs, metrics."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time

import numpy as np
import pytest
import torch
from tiny import tiny_model
from tiny_data import write_beir

from irlens.data import Dataset, Document, load_dataset
from irlens.errors import IrlensError
from irlens.evaluation import Evaluation, evaluate
from irlens.retrieval import (
    bm25_search,
    dense_search,
    encode_corpus,
    load_run,
    rerank,
    save_run,
    search,
)

ANSERINI_BM25_FLAT_SCIFACT = 0.6789  # nDCG@10, Anserini BEIR regression "bm25-flat"


def one_line_error(pattern: str, fn, *args, **kwargs) -> None:
    with pytest.raises(IrlensError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.fixture
def tiny(tmp_path) -> Dataset:
    return load_dataset(write_beir(tmp_path / "tiny"))


@pytest.fixture
def bi(tiny_root):
    return tiny_model(tiny_root, "bert", "bi")


@pytest.fixture
def cross(tiny_root):
    return tiny_model(tiny_root, "bert", "cross")


# --- BM25 --------------------------------------------------------------------------------


@pytest.mark.real
def test_bm25_on_scifact_reproduces_anserini_flat(data_dir):
    ds = load_dataset(data_dir / "scifact")
    run = bm25_search(ds, k=100, progress=False)
    ndcg = evaluate(run, ds.qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert abs(ndcg - ANSERINI_BM25_FLAT_SCIFACT) < 0.02, ndcg


def test_bm25_ranks_matching_docs_and_omits_the_rest(tiny):
    run = bm25_search(tiny, k=3, progress=False)
    assert set(run) == {"q1", "q2", "q3"}
    assert next(iter(sorted(run["q2"], key=run["q2"].get, reverse=True))) == "d4"
    assert set(run["q3"]) == {"d3"}  # only d3 mentions stock or market
    assert all(0 < len(hits) <= 3 for hits in run.values())
    assert bm25_search(tiny, k=3, progress=False) == run


def test_bm25_unknown_stemmer(tiny):
    one_line_error(r"unknown stemmer language 'klingon'", bm25_search, tiny, stemmer="klingon")


# --- encoding and dense search -----------------------------------------------------------


class _Forwards:
    """Counts the document encoder's forward passes (and can stop the n-th one)."""

    def __init__(self, model, stop_at: int | None = None):
        self.model, self.stop_at, self.count = model, stop_at, 0

    def __enter__(self):
        def hook(module, args, output):
            self.count += 1
            if self.count == self.stop_at:
                raise KeyboardInterrupt

        self.handle = self.model.doc_encoder.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_encode_corpus_matches_encode_docs_and_is_cached(bi, tiny, tmp_path):
    cache = tmp_path / "cache"
    vectors = encode_corpus(bi, tiny, batch_size=2, cache_dir=cache, progress=False)
    expected = bi.encode_docs(tiny.doc_texts(), batch_size=64)
    torch.testing.assert_close(vectors, expected, atol=1e-5, rtol=1e-4)
    (folder,) = (cache / "embeddings").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["n_docs"] == 6 and manifest["dataset_fingerprint"] == tiny.corpus_fingerprint
    assert manifest["shape"] == [6, 32] and manifest["checksum"].startswith("blake2b:")
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "embeddings.npy",
                                                         "manifest.json"]
    with _Forwards(bi) as forwards:  # a second call reads the file
        again = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
    assert forwards.count == 0 and torch.equal(again, vectors)


def _damage_and_reload(bi, tiny, cache, damage):
    first = encode_corpus(bi, tiny, cache_dir=cache, progress=False).clone()
    (folder,) = (cache / "embeddings").iterdir()
    damage(folder / "embeddings.npy")
    with pytest.warns(UserWarning, match=r"embedding cache .* is damaged"), \
            _Forwards(bi) as forwards:
        again = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
    assert forwards.count > 0
    torch.testing.assert_close(again, first, atol=1e-6, rtol=0)
    with _Forwards(bi) as forwards:  # repaired: the next call reads it again
        encode_corpus(bi, tiny, cache_dir=cache, progress=False)
    assert forwards.count == 0


def test_a_truncated_cache_file_is_recomputed(bi, tiny, tmp_path):
    def truncate(path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 40])

    _damage_and_reload(bi, tiny, tmp_path / "cache", truncate)


def test_a_cache_matrix_with_shifted_rows_is_recomputed(bi, tiny, tmp_path):
    def shift(path):
        np.save(path, np.roll(np.load(path), 1, axis=0))  # still loads, every row wrong

    _damage_and_reload(bi, tiny, tmp_path / "cache", shift)


@pytest.mark.parametrize("shift", [False, True])
def test_an_entry_without_checksum_is_spot_checked(bi, tiny, tmp_path, shift):
    """Entries from an older irlens: kept (and given a checksum) when fresh rows agree."""
    cache = tmp_path / "cache"
    first = encode_corpus(bi, tiny, cache_dir=cache, progress=False).clone()
    (folder,) = (cache / "embeddings").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("shape", "dtype", "checksum"):
        del manifest[key]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if shift:
        np.save(folder / "embeddings.npy", np.roll(first.numpy(), 1, axis=0))
        with pytest.warns(UserWarning, match=r"no checksum recorded .* rows differ"):
            again = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
    else:
        with _Forwards(bi) as forwards:
            again = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
        assert forwards.count == 1  # one small batch of spot-checked rows, not the corpus
    torch.testing.assert_close(again, first, atol=1e-6, rtol=0)
    assert json.loads((folder / "manifest.json").read_text())["checksum"].startswith("blake2b")


def _writer(model, data: str, cache, out, barrier) -> None:
    """One run of encode_corpus in a forked process, started with the other one."""
    torch.set_num_threads(1)
    model.doc_encoder.register_forward_hook(lambda *a: time.sleep(0.02))  # a slow encoder
    dataset = load_dataset(data)
    barrier.wait(timeout=60)
    vectors = encode_corpus(model, dataset, batch_size=1, chunk_size=1, cache_dir=cache,
                            progress=False)
    np.save(out, vectors.numpy())


def test_two_writers_on_one_empty_cache_both_finish_with_the_same_matrix(bi, tiny, tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the model is already loaded: no re-import
    barrier = ctx.Barrier(2)
    cache = tmp_path / "cache"
    procs = [ctx.Process(target=_writer, args=(bi, tiny.source, cache, tmp_path / f"{i}.npy",
                                               barrier)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    first, second = (np.load(tmp_path / f"{i}.npy") for i in range(2))
    assert np.array_equal(first, second)
    expected = bi.encode_docs(tiny.doc_texts()).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-5, rtol=1e-4)
    (folder,) = (cache / "embeddings").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "embeddings.npy",
                                                         "manifest.json"]  # no orphans


def test_interrupted_encoding_resumes_from_saved_chunks(bi, tiny, tmp_path, capsys):
    cache = tmp_path / "cache"
    with _Forwards(bi, stop_at=3), pytest.raises(KeyboardInterrupt):
        encode_corpus(bi, tiny, batch_size=1, chunk_size=1, cache_dir=cache, progress=False)
    (folder,) = (cache / "embeddings").iterdir()
    assert json.loads((folder / "progress.json").read_text())["done"] == 2
    assert not (folder / "embeddings.npy").exists()

    with _Forwards(bi) as forwards:
        resumed = encode_corpus(bi, tiny, batch_size=1, chunk_size=1, cache_dir=cache,
                                progress=True)
    assert forwards.count == 4  # six documents, two already saved
    first_frame = capsys.readouterr().err.split("\r")[1]
    assert " 2/6 [" in first_frame  # the bar starts at the saved count (a true rate)
    fresh = encode_corpus(bi, tiny, cache_dir=tmp_path / "fresh", progress=False)
    torch.testing.assert_close(resumed, fresh, atol=1e-5, rtol=1e-4)


def _interrupted(bi, tiny, cache, stop_at: int = 4):
    """An encoding stopped at its ``stop_at``-th forward pass (kill -9 leaves the same
    files: progress is written after each chunk's rows are flushed); its entry folder."""
    with _Forwards(bi, stop_at=stop_at), pytest.raises(KeyboardInterrupt):
        encode_corpus(bi, tiny, batch_size=1, chunk_size=1, cache_dir=cache, progress=False)
    (folder,) = (cache / "embeddings").iterdir()
    return folder


def _ndcg(bi, tiny, cache) -> float:
    run = dense_search(bi, tiny, k=6, cache_dir=cache, progress=False)
    return evaluate(run, tiny.qrels, "nDCG@10").aggregate["nDCG@10"]


@pytest.mark.parametrize("damage", ["shifted", "half-written chunk", "truncated file"])
def test_a_damaged_partial_encoding_is_detected_and_recomputed(bi, tiny, tmp_path, damage):
    """Issue 20 §2: rows of a partial matrix shifted (np.roll, same shape) after a kill
    were trusted on resume, and the finished entry got a checksum over the wrong matrix."""
    from numpy.lib.format import open_memmap

    clean = encode_corpus(bi, tiny, cache_dir=tmp_path / "clean", progress=False)
    folder = _interrupted(bi, tiny, tmp_path / "cache")  # three chunks of one row saved
    partial = folder / "partial.npy"
    if damage == "truncated file":
        partial.write_bytes(partial.read_bytes()[:-40])
    else:
        matrix = open_memmap(partial, mode="r+")
        saved = np.flatnonzero(np.abs(matrix).sum(axis=1))
        assert len(saved) == 3
        if damage == "shifted":
            matrix[:] = np.roll(np.array(matrix), 1, axis=0)
        else:  # the last two saved chunks never reached the disk
            texts = tiny.doc_texts()
            longest = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
            matrix[longest[1:3]] = 0
        matrix.flush()
        del matrix
    with _Forwards(bi) as forwards, pytest.warns(UserWarning) as warned:
        resumed = encode_corpus(bi, tiny, batch_size=1, chunk_size=1,
                                cache_dir=tmp_path / "cache", progress=False)
    if damage == "half-written chunk":
        assert forwards.count == 5  # the first chunk (one row) was kept
        assert "recomputing from document 1 of 6" in str(warned[0].message)
    else:
        assert forwards.count == 6
    torch.testing.assert_close(resumed, clean, atol=1e-5, rtol=1e-4)
    assert _ndcg(bi, tiny, tmp_path / "cache") == _ndcg(bi, tiny, tmp_path / "clean")
    assert encode_corpus(bi, tiny, cache_dir=tmp_path / "cache", progress=False) \
        .allclose(clean, atol=1e-5, rtol=1e-4)  # the finished entry verifies and is right


def test_an_undamaged_partial_encoding_resumes_silently(bi, tiny, tmp_path, recwarn):
    folder = _interrupted(bi, tiny, tmp_path / "cache")
    chunks = json.loads((folder / "progress.json").read_text())["chunks"]
    assert [c["end"] for c in chunks] == [1, 2, 3]
    with _Forwards(bi) as forwards:
        encode_corpus(bi, tiny, batch_size=1, chunk_size=1, cache_dir=tmp_path / "cache",
                      progress=False)
    assert forwards.count == 3 and not [w for w in recwarn if "embedding cache" in str(w)]


def test_the_first_chunks_are_small(bi, tiny, tmp_path):
    """The longest documents come first: progress is saved before a full chunk is done."""
    cache = tmp_path / "cache"
    with _Forwards(bi, stop_at=4), pytest.raises(KeyboardInterrupt):
        encode_corpus(bi, tiny, batch_size=1, chunk_size=512, cache_dir=cache, progress=False)
    (folder,) = (cache / "embeddings").iterdir()
    assert json.loads((folder / "progress.json").read_text())["done"] == 3  # chunks 1, 2


def test_ablations_with_other_values_get_their_own_cache_entry(bi, tiny, tmp_path):
    from irlens.hooks import ablate

    cache = tmp_path / "cache"
    name = "layer.1.ffn.post"
    got = {}
    for value in (0.0, 3.0):
        values = {name: torch.full((48,), value)}
        with ablate(bi, name, how="mean", values=values, side="doc"):
            got[value] = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
            direct = bi.encode_docs(tiny.doc_texts())
        torch.testing.assert_close(got[value], direct, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got[0.0], got[3.0])
    assert len(list((cache / "embeddings").iterdir())) == 2


def test_an_unlabeled_function_edit_skips_the_cache(bi, tiny, tmp_path):
    from irlens.hooks import intervene

    cache = tmp_path / "cache"
    with intervene(bi, {"layer.0.ffn.out": lambda act, ctx: act * 0.5}):
        with pytest.warns(UserWarning, match=r"embedding cache is skipped"):
            vectors = encode_corpus(bi, tiny, cache_dir=cache, progress=False)
        direct = bi.encode_docs(tiny.doc_texts())
    torch.testing.assert_close(vectors, direct, atol=1e-5, rtol=1e-4)
    assert not (cache / "embeddings").exists()


def test_dense_search_is_exact_top_k(bi, tiny, tmp_path):
    run = dense_search(bi, tiny, k=3, cache_dir=tmp_path, progress=False)
    scores = bi.similarity(bi.encode_queries(tiny.query_texts()), bi.encode_docs(tiny.doc_texts()))
    for i, qid in enumerate(tiny.query_ids):
        top = scores[i].topk(3)
        assert list(run[qid]) == [tiny.doc_ids[j] for j in top.indices.tolist()]
        assert np.allclose(list(run[qid].values()), top.values.tolist(), atol=1e-5)
    chunked = dense_search(bi, tiny, k=3, cache_dir=tmp_path, progress=False, doc_chunk=2)
    assert {q: list(d) for q, d in chunked.items()} == {q: list(d) for q, d in run.items()}
    assert all(
        len(d) == 6
        for d in dense_search(bi, tiny, k=50, cache_dir=tmp_path, progress=False).values()
    )


def test_faiss_backend_when_missing(bi, tiny, tmp_path):
    if importlib.util.find_spec("faiss") is not None:
        run = dense_search(bi, tiny, k=3, cache_dir=tmp_path, progress=False, backend="faiss")
        exact = dense_search(bi, tiny, k=3, cache_dir=tmp_path, progress=False)
        assert {q: list(d) for q, d in run.items()} == {q: list(d) for q, d in exact.items()}
    else:
        one_line_error(
            r"needs faiss; pip install irlens\[faiss\]",
            dense_search,
            bi,
            tiny,
            cache_dir=tmp_path,
            progress=False,
            backend="faiss",
        )


def test_dense_functions_refuse_a_cross_encoder(cross, tiny):
    one_line_error(
        r"encode_corpus needs a bi-encoder, got CrossEncoder", encode_corpus, cross, tiny
    )


# --- reranking and dispatch --------------------------------------------------------------


def test_cross_encoder_rerank_scores_the_top_depth(cross, tiny):
    first = {"q1": {"d2": 3.0, "d1": 2.0, "d6": 1.0}, "q2": {"d4": 1.0}}
    run = rerank(cross, tiny, first, depth=2, progress=False)
    assert set(run["q1"]) == {"d2", "d1"} and set(run["q2"]) == {"d4"} and run["q3"] == {}
    expected = cross.predict([tiny.queries["q1"]] * 2, tiny.doc_texts(["d2", "d1"]))
    assert np.allclose([run["q1"]["d2"], run["q1"]["d1"]], expected.tolist(), atol=1e-5)


def test_bi_encoder_rerank_uses_its_similarity(bi, tiny):
    run = rerank(bi, tiny, {"q1": {"d1": 1.0, "d3": 0.5}}, progress=False)
    expected = bi.score([tiny.queries["q1"]] * 2, tiny.doc_texts(["d1", "d3"]))
    assert np.allclose([run["q1"]["d1"], run["q1"]["d3"]], expected.tolist(), atol=1e-5)


def test_search_dispatches_by_retriever(bi, cross, tiny, tmp_path):
    assert search("bm25", tiny, k=3, progress=False) == bm25_search(tiny, k=3, progress=False)
    dense = search(bi, tiny, k=3, cache_dir=tmp_path, progress=False)
    assert dense == dense_search(bi, tiny, k=3, cache_dir=tmp_path, progress=False)
    reranked = search(cross, tiny, k=3, progress=False)
    bm25 = bm25_search(tiny, k=3, progress=False)
    assert all(set(reranked[q]) == set(bm25[q]) for q in tiny.query_ids)
    one_line_error(r"unknown retriever 'bm26'", search, "bm26", tiny)


# --- runs and metrics --------------------------------------------------------------------


def test_trec_run_round_trip(tmp_path):
    run = {"q1": {"d1": 1.5, "d2": 2.25}, "q2": {"d9": -0.125}}
    path = save_run(run, tmp_path / "run.trec")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 2.25 irlens" and lines[1] == "q1 Q0 d1 2 1.5 irlens"
    assert load_run(path) == run
    path.write_text("q1 Q0 d1 1 high irlens\n")
    one_line_error(r"run\.trec:1: score 'high' is not a number", load_run, path)
    path.write_text("q1 d1 1.0\n")
    one_line_error(r"run\.trec:1: expected 6 columns", load_run, path)


def test_numpy_scores_round_trip_at_full_precision(tmp_path):
    run = {"q1": {"d1": np.float64(1.5), "d2": np.float32(0.1), "d3": 0.1 + 0.2},
           "q2": {"d4": np.float64(-1e-17)}}
    loaded = load_run(save_run(run, tmp_path / "run.trec"))
    assert loaded == {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items()}
    assert loaded["q1"]["d3"] == 0.30000000000000004


def test_metrics_by_hand():
    qrels = {"q1": {"d1": 1}, "q2": {"d7": 2, "d8": 1}}
    run = {"q1": {"d2": 2.0, "d1": 1.0}, "q2": {"d8": 5.0, "d7": 4.0}}
    result = evaluate(run, qrels, ["RR@10", "MAP", "RR(rel=2)@10", "P@1"])
    assert result.metrics == ["RR@10", "AP", "RR(rel=2)@10", "P@1"]
    assert result.per_query["q1"] == {"RR@10": 0.5, "AP": 0.5, "RR(rel=2)@10": 0.0, "P@1": 0.0}
    assert result.per_query["q2"]["RR(rel=2)@10"] == 0.5  # d8 (grade 1) does not count
    assert result.aggregate["RR@10"] == pytest.approx(0.75)
    ndcg = evaluate(run, qrels, ["nDCG@10"]).per_query["q1"]["nDCG@10"]
    assert ndcg == pytest.approx(1 / math.log2(3))


def test_missing_queries_count_as_zero_and_identical_ids_are_dropped():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    with pytest.warns(UserWarning, match="1 judged queries have no results"):
        result = evaluate({"q1": {"d1": 1.0}}, qrels, ["RR@10"])
    assert result.per_query == {"q1": {"RR@10": 1.0}, "q2": {"RR@10": 0.0}}
    assert result.aggregate["RR@10"] == 0.5
    run = {"q1": {"q1": 9.0, "d1": 1.0}, "q2": {"d2": 1.0}}
    assert evaluate(run, qrels, ["RR@10"]).aggregate["RR@10"] == 1.0
    kept = evaluate(run, qrels, ["RR@10"], ignore_identical_ids=False)
    assert kept.aggregate["RR@10"] == 0.75


def test_bad_metric_names():
    one_line_error(
        r"unknown metric 'nDGC@10'; use ir_measures names such as nDCG@10",
        evaluate,
        {"q": {"d": 1.0}},
        {"q": {"d": 1}},
        ["nDGC@10"],
    )
    one_line_error(r"metric listed twice", evaluate, {"q": {"d": 1.0}}, {"q": {"d": 1}}, "AP,MAP")
    one_line_error(r"shares no query id", evaluate, {"x": {"d": 1.0}}, {"q": {"d": 1}})


def test_evaluation_is_an_artifact(tmp_path, tiny):
    qrels = {"q1": {"d1": 1}, "q2": {"d7": 2, "d8": 1}}
    run = {"q1": {"d2": 2.0, "d1": 1.0}, "q2": {"d8": 5.0, "d7": 4.0}}
    result = evaluate(run, qrels, "RR@10,P@1", data=tiny)
    assert repr(result) == "<Evaluation 2 queries: RR@10 0.7500, P@1 0.5000>"
    frame = result.to_frame()
    assert list(frame.columns) == ["query_id", "RR@10", "P@1"]
    assert frame.set_index("query_id").loc["q1"].tolist() == [0.5, 0.0]
    folder = result.save(tmp_path / "eval")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "table.parquet"]
    loaded = Evaluation.load(folder)
    assert loaded == result and loaded.manifest.data_fingerprint == tiny.fingerprint
    assert loaded.manifest.config == {"metrics": ["RR@10", "P@1"], "ignore_identical_ids": True}
    text = result.to_json()
    assert isinstance(text, str) and Evaluation.from_json(text) == result
    assert result.primary == 0.75 and "per_query" not in result.to_dict(per_query=False)


def test_search_depth_follows_the_metrics():
    from irlens.evaluation import search_depth

    assert search_depth("nDCG@10,R@1000", 5000) == 1000
    assert search_depth(["RR@10", "P@5"], 5000) == 10
    assert search_depth("nDCG@10,AP", 5000) == 5000  # AP ranks everything
    assert search_depth("R@1000", 300) == 300


def test_pruning_dense_search_is_as_deep_as_its_metrics(bi):
    """R@1000 over 150 documents must see every document (it was cut at 100)."""
    import random

    from irlens.neurons.pruning import PruningConfig, _measure

    rng = random.Random(0)
    words = "cat dog fish mouse grain river market rain wind salmon seed bone".split()
    corpus = {f"d{i}": Document("", " ".join(rng.choices(words, k=8))) for i in range(150)}
    queries = {f"q{j}": " ".join(rng.choices(words, k=3)) for j in range(3)}
    qrels = {q: {f"d{i}": 1 for i in range(40 * j, 40 * j + 40)} for j, q in enumerate(queries)}
    ds = Dataset("synthetic", corpus, queries, qrels)
    got = _measure(bi, ds, None, PruningConfig(metrics=("R@1000", "AP")))
    assert got["R@1000"] == 1.0
    scores = bi.similarity(bi.encode_queries(ds.query_texts()), bi.encode_docs(ds.doc_texts()))
    full = {q: dict(zip(ds.doc_ids, scores[i].tolist(), strict=True))
            for i, q in enumerate(ds.query_ids)}
    assert got["AP"] == pytest.approx(evaluate(full, qrels, ["AP"]).aggregate["AP"], abs=1e-6)


def test_bm25_on_an_empty_corpus_is_an_error():
    ds = Dataset("empty", {}, {"1": "q"}, {"1": {"a": 1}})
    one_line_error(r"empty corpus", bm25_search, ds)


# --- the real default model --------------------------------------------------------------


@pytest.mark.real
def test_default_model_matches_sentence_transformers(default_model, data_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from irlens.models import resolve_model_path

    ds = load_dataset(data_dir / "scifact", max_docs=40, max_queries=10)
    vectors = encode_corpus(default_model, ds, cache_dir=tmp_path, progress=False)
    plain = SentenceTransformer(resolve_model_path("default"), device="cpu")
    reference = plain.encode(ds.doc_texts(), convert_to_tensor=True)
    torch.testing.assert_close(vectors, reference, atol=1e-5, rtol=1e-4)
    run = dense_search(default_model, ds, k=10, cache_dir=tmp_path, progress=False)
    # 40 documents, all judged ones among them: the model finds most relevant ones first
    assert evaluate(run, ds.qrels, ["nDCG@10"]).aggregate["nDCG@10"] > 0.8
