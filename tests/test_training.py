"""Cross-encoder fine-tuning: labelled pairs with BM25 negatives, a loadable model folder,
and a rerank evaluation next to BM25."""

from __future__ import annotations

import json

import pytest
from tiny import tiny_model_dir
from tiny_data import write_beir

from irlens import IrlensError, load_model
from irlens.models import CrossEncoder
from irlens.training import labelled_pairs, rerank_evaluation, train_cross_encoder

TRIPLES = [
    ("what do cats eat", "cats eat mice and fish", "the stock market fell"),
    ("where do salmon spawn", "salmon spawn in cold rivers", "dogs bark at night"),
    ("stock market news", "the stock market fell on monday", "cats sleep all day"),
    ("weather tomorrow", "rain and wind are expected tomorrow", "mice eat grain"),
]


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    path = tmp_path_factory.mktemp("tri") / "triples.tsv"
    path.write_text("".join("\t".join(t) + "\n" for t in TRIPLES))
    return path


def test_labelled_pairs_from_triples_and_beir(triples, tmp_path):
    rows = labelled_pairs(triples)
    assert len(rows) == 8 and sum(r[2] for r in rows) == 4
    assert rows[0] == (TRIPLES[0][0], TRIPLES[0][1], 1) and rows[1][2] == 0
    more = labelled_pairs(triples, random_negatives=2)
    assert len(more) == 16 and sum(r[2] for r in more) == 4
    for query, pos, _ in TRIPLES:  # a random negative is never the query's own positive
        assert (query, pos, 0) not in more
    beir = write_beir(tmp_path / "beir")
    rows = labelled_pairs(beir, split="test", negatives=2)
    positives = [r for r in rows if r[2] == 1]
    assert len(positives) == 4  # every relevant test pair of the tiny collection
    for query, doc, label in rows:  # BM25 negatives are never judged relevant
        if label == 0:
            assert not (query == "what do cats eat" and doc.startswith(("Cats", "Mice")))
    with pytest.raises(IrlensError, match="no relevant pairs"):
        labelled_pairs(beir, split="train", min_relevance=5)


def test_training_saves_a_loadable_cross_encoder_and_reports_bm25(tiny_root, triples, tmp_path):
    base = tiny_model_dir(tiny_root, "bert", "bi")
    beir = write_beir(tmp_path / "beir")
    out = tmp_path / "ce"
    result = train_cross_encoder(triples, out, base=str(base), epochs=1, batch_size=4,
                                 max_length=32, device="cpu", eval_data=beir, eval_depth=5,
                                 progress=False)
    model = load_model(str(out), device="cpu")
    assert isinstance(model, CrossEncoder) and model.num_labels == 1
    assert result.n_pairs == 8 and result.n_positive == 4
    ev = result.evaluation
    assert set(ev["bm25"]) == set(ev["reranked"]) == {"nDCG@10", "RR@10"}
    assert 0 <= ev["reranked"]["nDCG@10"] <= 1 and ev["n_queries"] == 3
    saved = json.loads((out / "irlens_training.json").read_text())
    assert saved["parameters"]["loss"] == "BinaryCrossEntropyLoss"
    assert rerank_evaluation(model, beir, depth=5)["reranked"] == ev["reranked"]


def test_bad_training_input(tmp_path):
    with pytest.raises(IrlensError, match="does not exist"):
        train_cross_encoder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(IrlensError, match="epochs and batch_size"):
        train_cross_encoder(tmp_path, tmp_path / "out", epochs=0)


def test_a_failed_swap_keeps_the_old_model_and_leaves_no_temp_folder(tiny_root, triples,
                                                                     tmp_path, monkeypatch):
    import os
    import shutil

    base = tiny_model_dir(tiny_root, "bert", "bi")
    out = tmp_path / "ce"
    shutil.copytree(tiny_model_dir(tiny_root, "bert", "cross"), out)  # the model in place
    before = sorted(p.name for p in out.iterdir())
    real_replace, real_rename = os.replace, os.rename

    def crash_on_publish(real):
        def move(src, dst, *args, **kwargs):
            if os.fspath(dst) == os.fspath(out) and ".tmp" in os.fspath(src):
                raise OSError("simulated crash while publishing the new model")
            return real(src, dst, *args, **kwargs)
        return move

    monkeypatch.setattr(os, "replace", crash_on_publish(real_replace))
    monkeypatch.setattr(os, "rename", crash_on_publish(real_rename))
    with pytest.raises(OSError, match="simulated crash"):
        train_cross_encoder(triples, out, base=str(base), epochs=1, batch_size=4,
                            max_length=32, device="cpu", progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == before
    assert isinstance(load_model(str(out), device="cpu"), CrossEncoder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ce"]  # no temp or old folders
