"""Training: cross-encoder groups and distillation, DPR-style bi-encoders (one or two towers),
BM25 hard negatives, checkpoints, loadable folders, and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_model_dir
from tiny_data import write_beir

from irlens import IrlensError, load_model
from irlens.data import load_dataset
from irlens.models import BiEncoder, CrossEncoder
from irlens.retrieval import bm25_search
from irlens.training import (
    TrainingResult,
    labelled_pairs,
    mine_negatives,
    rerank_evaluation,
    teacher_scores,
    train_bi_encoder,
    train_cross_encoder,
    training_groups,
)
from irlens.training import bi_encoder as bi_module
from irlens.training.bi_encoder import bm25_hard_negatives

pytestmark = pytest.mark.usefixtures("one_thread")

TRIPLES = [
    ("what do cats eat", "cats eat mice and fish", "the stock market fell"),
    ("where do salmon spawn", "salmon spawn in cold rivers", "dogs bark at night"),
    ("stock market news", "the stock market fell on monday", "cats sleep all day"),
    ("weather tomorrow", "rain and wind are expected tomorrow", "mice eat grain"),
]

# A small collection with a train split: topics share words, so BM25's top documents
# include judged-relevant ones that must never come back as negatives.
TOPICS = ["cats", "dogs", "salmon", "stocks", "rain", "bread", "trains", "chess"]


def write_train_beir(folder: Path, empty_train: bool = False, with_train: bool = True) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, queries, train, test = {}, {}, [], []
    for t, topic in enumerate(TOPICS):
        for j in range(4):
            docs[f"{topic}{j}"] = f"{topic} fact number {j} about {topic} and {TOPICS[t - 1]}"
        for j in range(3):
            qid = f"{topic}-q{j}"
            queries[qid] = f"tell me about {topic} {j}"
            rows = train if j < 2 else test
            rows += [(qid, f"{topic}{j}", 1), (qid, f"{topic}{j + 1}", 2),
                     (qid, f"{topic}3", 0)]
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": "", "text": x}) + "\n" for d, x in docs.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": x}) + "\n" for q, x in queries.items()))
    header = "query-id\tcorpus-id\tscore\n"
    if with_train:
        body = "" if empty_train else "".join(f"{q}\t{d}\t{s}\n" for q, d, s in train)
        (folder / "qrels" / "train.tsv").write_text(header + body)
    (folder / "qrels" / "test.tsv").write_text(
        header + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in test))
    return folder


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    path = tmp_path_factory.mktemp("tri") / "triples.tsv"
    path.write_text("".join("\t".join(t) + "\n" for t in TRIPLES))
    return path


@pytest.fixture(scope="module")
def beir_train(tmp_path_factory):
    return write_train_beir(tmp_path_factory.mktemp("train-beir"))


# -- cross-encoder ---------------------------------------------------------------------------
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


def test_no_training_option_reads_another_collection(triples, tmp_path):
    """The judgement-filtered negative pool (dl19's unjudged passages as negatives) is gone:
    neither the function nor the command accepts a pool, and groups depend on the
    training file alone."""
    import inspect

    from typer.testing import CliRunner

    from irlens.cli import app

    pool = write_beir(tmp_path / "pool")
    for fn in (training_groups, train_cross_encoder):
        assert not {"negative_pool", "pool_depth"} & set(inspect.signature(fn).parameters)
    result = CliRunner().invoke(app, ["train", "cross-encoder", "--data", str(triples),
                                      "--negative-pool", str(pool), "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 2 and "--negative-pool" in result.stderr
    assert not (tmp_path / "o").exists()


def test_mined_negatives_come_from_the_training_passages_only(tiny_root, triples):
    passages = [d for _, pos, neg in TRIPLES for d in (pos, neg)]
    teacher = load_model(str(tiny_model_dir(tiny_root, "bert", "bi")), device="cpu")
    positives = {q: {pos} for q, pos, _ in TRIPLES}
    mined = mine_negatives(positives, passages, teacher=teacher, teacher_k=2)
    with torch.no_grad():
        sims = teacher.similarity(teacher.encode_queries(list(positives)),
                                  teacher.encode_docs(passages))
    for row, (query, pos, _) in zip(sims, TRIPLES, strict=True):
        order = [passages[i] for i in row.argsort(descending=True).tolist() if passages[i] != pos]
        assert mined[query] == order[:2]  # the teacher's top two, never the positive
    bm25 = mine_negatives(positives, passages, bm25_k=1)
    assert bm25["stock market news"] == ["the stock market fell"]  # best after the positive
    groups = training_groups(triples, negatives=7, bm25_negatives=1, random_negatives=6)
    for g in groups:
        query, pos, neg = next(t for t in TRIPLES if t[0] == g.query)
        assert g.negatives[0] == neg and len(set(g.negatives)) == 7  # own negative first, once
        assert pos not in g.negatives and set(g.negatives) <= set(passages)
    stock = next(g for g in groups if g.query == "stock market news")
    assert stock.negatives[1] == "the stock market fell"
    with pytest.raises(IrlensError, match="needs a --teacher"):
        train_cross_encoder(triples, triples.parent / "o", teacher_negatives=2)


def test_teacher_scores_match_pairwise_scoring(tiny_root, triples):
    teacher = load_model(str(tiny_model_dir(tiny_root, "bert", "bi")), device="cpu")
    groups = training_groups(triples, negatives=1)
    scores = teacher_scores(teacher, groups)
    for g, row in zip(groups, scores, strict=True):
        with torch.no_grad():
            direct = teacher.score([g.query] * 2, [g.positive, g.negatives[0]])
        torch.testing.assert_close(torch.tensor(row), direct, atol=1e-5, rtol=1e-5)


def test_cross_encoder_trains_saves_and_reports_bm25(tiny_root, triples, tmp_path):
    base = tiny_model_dir(tiny_root, "bert", "bi")
    beir = write_beir(tmp_path / "beir")
    out = tmp_path / "ce"
    result = train_cross_encoder(triples, out, base=str(base), negatives=1, epochs=1,
                                 batch_size=4, max_length=32, device="cpu", eval_data=beir,
                                 eval_depth=5, progress=False)
    model = load_model(str(out), device="cpu")
    assert isinstance(model, CrossEncoder) and model.num_labels == 1
    assert result.n_pairs == 8 and result.n_positive == 4
    ev = result.evaluation
    assert set(ev["bm25"]) == set(ev["reranked"]) == {"nDCG@10", "RR@10"}
    assert 0 <= ev["reranked"]["nDCG@10"] <= 1 and ev["n_queries"] == 3
    saved = TrainingResult.load(out / "training")
    assert saved.parameters["loss"] == "BinaryCrossEntropyLoss"
    assert saved.manifest.model_fingerprint == model.fingerprint
    assert rerank_evaluation(model, beir, depth=5)["reranked"] == ev["reranked"]
    assert not list(tmp_path.glob(".ce.*"))  # checkpoints and temporary folders are gone
    distilled = train_cross_encoder(triples, tmp_path / "kd", base=str(base), negatives=1,
                                    teacher=str(base), batch_size=2, max_length=32,
                                    device="cpu", progress=False)
    assert distilled.parameters["loss"] == "ListNetLoss" and distilled.train_loss
    margin = train_cross_encoder(triples, tmp_path / "mm", base=str(base), negatives=1,
                                 teacher=str(base), distillation="margin-mse", batch_size=2,
                                 max_length=32, device="cpu", progress=False)
    assert margin.parameters["loss"] == "MarginMSELoss" and margin.train_loss
    with pytest.raises(IrlensError, match="unknown distillation 'kl'"):
        train_cross_encoder(triples, tmp_path / "x", teacher=str(base), distillation="kl")


def test_bad_cross_encoder_input(tmp_path, tiny_root):
    with pytest.raises(IrlensError, match="does not exist"):
        train_cross_encoder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(IrlensError, match="epochs, batch_size"):
        train_cross_encoder(write_beir(tmp_path / "b"), tmp_path / "out", split="test",
                            epochs=0)
    no_train = write_train_beir(tmp_path / "nt", with_train=False)
    with pytest.raises(IrlensError, match="has no 'train' split"):
        train_cross_encoder(no_train, tmp_path / "out")
    empty = write_train_beir(tmp_path / "empty", empty_train=True)
    with pytest.raises(IrlensError, match="split 'train' is empty"):
        train_cross_encoder(empty, tmp_path / "out")


# -- bi-encoder ------------------------------------------------------------------------------
def test_bm25_hard_negatives_are_never_judged_relevant(beir_train):
    dataset = load_dataset(beir_train, split="train")
    rows = bm25_hard_negatives(dataset, hard_negatives=2, bm25_depth=10, seed=3)
    run = bm25_search(dataset, k=10, progress=False)
    assert len(rows) == len(dataset.queries)
    hits = 0
    for qid, pos, negs in rows:
        judged = dataset.qrels[qid]
        assert judged[pos] >= 1
        for neg in negs:
            assert judged.get(neg, 0) < 1 and neg in run[qid]
        # BM25's top 10 holds judged-relevant documents the sampler had to skip
        hits += sum(judged.get(d, 0) >= 1 for d in run[qid])
    assert hits > len(rows)
    assert rows == bm25_hard_negatives(dataset, hard_negatives=2, bm25_depth=10, seed=3)


def _mnrl_loss(model: BiEncoder, queries, positives, negatives, scale: float) -> float:
    """In-batch softmax loss written out: query i against all positives and negatives."""
    with torch.no_grad():
        q = model.encode_queries(queries)
        d = model.encode_docs(positives + negatives)
        sims = model.similarity(q, d) * scale
    return float(F.cross_entropy(sims, torch.arange(len(queries))))


def test_short_training_lowers_the_loss(tiny_root, beir_train, tmp_path):
    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    dataset = load_dataset(beir_train, split="train")
    rows = bm25_hard_negatives(dataset, 1, seed=0)
    queries = [dataset.queries[q] for q, _, _ in rows]
    pos = [dataset.corpus[p].contents for _, p, _ in rows]
    neg = [dataset.corpus[n[0]].contents for _, _, n in rows]
    start = load_model(base, device="cpu", pooling="mean", similarity="dot")
    before = _mnrl_loss(start, queries, pos, neg, 1.0)
    train_bi_encoder(base, beir_train, tmp_path / "bi", pooling="mean", epochs=10,
                     batch_size=8, learning_rate=3e-3, max_seq_length=32, device="cpu",
                     eval_split=None, progress=False)
    trained = load_model(str(tmp_path / "bi"), device="cpu")
    assert trained.pooling == "mean" and trained.similarity_name == "dot"
    after = _mnrl_loss(trained, queries, pos, neg, 1.0)
    assert after < before - 0.3, (before, after)  # 3.29 -> 2.64 when written


def test_two_towers_save_reload_and_score_as_trained(tiny_root, beir_train, tmp_path,
                                                      monkeypatch):
    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    seen = {}
    real_save = bi_module._save

    def spy(model, folder, two, similarity, limit):  # scores of the in-memory towers
        texts = ["tell me about cats 0", "chess fact number 1 about chess and trains"]
        with torch.no_grad():
            q = model.encode_query(texts[:1], convert_to_tensor=True)
            d = model.encode_document(texts[1:], convert_to_tensor=True)
        seen["score"] = float((q * d).sum())
        seen["texts"] = texts
        real_save(model, folder, two, similarity, limit)

    monkeypatch.setattr(bi_module, "_save", spy)
    result = train_bi_encoder(base, beir_train, tmp_path / "dpr", two_towers=True,
                              batch_size=4, learning_rate=1e-3, max_seq_length=32,
                              device="cpu", progress=False)
    model = load_model(str(tmp_path / "dpr"), device="cpu")
    assert isinstance(model, BiEncoder) and set(model.encoders()) == {"query", "doc"}
    assert model.pooling == "cls" and model.similarity_name == "dot"  # DPR's choices
    q_w = model.query_encoder.embeddings.word_embeddings.weight
    d_w = model.doc_encoder.embeddings.word_embeddings.weight
    assert not torch.equal(q_w, d_w)  # the towers were trained apart
    with torch.no_grad():
        score = model.score(seen["texts"][:1], seen["texts"][1:])
    assert score.item() == pytest.approx(seen["score"], rel=1e-5, abs=1e-5)
    ev = result.evaluation
    assert set(ev["before"]) == set(ev["after"]) == {"nDCG@10", "RR@10"}
    assert ev["n_queries"] == len(TOPICS)
    assert TrainingResult.load(tmp_path / "dpr" / "training").evaluation == ev
    # a two-tower folder is a base that keeps its towers (and resumes training)
    again = train_bi_encoder(str(tmp_path / "dpr"), beir_train, tmp_path / "dpr2",
                             batch_size=4, max_seq_length=32, device="cpu", eval_split=None,
                             progress=False)
    assert again.parameters["two_towers"] is True
    assert not list(tmp_path.glob(".dpr*"))


def test_checkpoints_refuse_another_config(tiny_root, beir_train, tmp_path):
    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    out = tmp_path / "bi"
    (tmp_path / ".bi.ckpt").mkdir()
    (tmp_path / ".bi.ckpt" / "irlens_config.json").write_text('{"epochs": 9}')
    with pytest.raises(IrlensError, match="holds checkpoints of another run"):
        train_bi_encoder(base, beir_train, out, batch_size=4, device="cpu", eval_split=None,
                         progress=False)


def test_bad_bi_encoder_input(tiny_root, beir_train, tmp_path):
    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    cross = str(tiny_model_dir(tiny_root, "bert", "cross"))
    with pytest.raises(IrlensError, match="is a cross-encoder"):
        train_bi_encoder(cross, beir_train, tmp_path / "o", two_towers=True)
    towers = tmp_path / "towers"
    towers.mkdir()
    (towers / "irlens_towers.json").write_text("{}")
    with pytest.raises(IrlensError, match="no single tower to share"):
        train_bi_encoder(str(towers), beir_train, tmp_path / "o", two_towers=False)
    no_train = write_train_beir(tmp_path / "nt", with_train=False)
    with pytest.raises(IrlensError, match="has no 'train' split.*its splits: test"):
        train_bi_encoder(base, no_train, tmp_path / "o")
    empty = write_train_beir(tmp_path / "empty", empty_train=True)
    with pytest.raises(IrlensError, match="split 'train' is empty"):
        train_bi_encoder(base, empty, tmp_path / "o")
    with pytest.raises(IrlensError, match="batch_size >= 2"):
        train_bi_encoder(base, beir_train, tmp_path / "o", batch_size=1)
    assert not (tmp_path / "o").exists()


def test_cli_train_bad_input_is_one_line(tmp_path, tiny_root):
    from typer.testing import CliRunner

    from irlens.cli import app

    cross = str(tiny_model_dir(tiny_root, "bert", "cross"))
    data = write_train_beir(tmp_path / "d")
    result = CliRunner().invoke(app, ["train", "bi-encoder", "--base", cross, "--data",
                                      str(data), "--out", str(tmp_path / "o"), "--two-towers"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "is a cross-encoder" in result.stderr
    result = CliRunner().invoke(app, ["train", "cross-encoder", "--data", str(data),
                                      "--split", "dev", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "has no 'dev' split" in result.stderr


def test_cli_train_prints_only_json_on_stdout(tmp_path, tiny_root):
    from typer.testing import CliRunner

    from irlens.cli import app

    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    data = write_train_beir(tmp_path / "d")
    result = CliRunner().invoke(app, ["train", "bi-encoder", "--base", base, "--data",
                                      str(data), "--out", str(tmp_path / "o"), "--batch-size",
                                      "4", "--max-seq-length", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)  # the trainer's log lines went to stderr
    assert set(payload["evaluation"]) >= {"before", "after"} and "loss" in result.stderr
    assert payload["model_dir"] == str(tmp_path / "o")
    assert "\x1b[" not in result.stderr  # no coloured load report, no nested bars


def test_sentence_transformers_base_keeps_its_pooling_in_one_or_two_towers(
        tiny_root, beir_train, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )

    body = Transformer(str(tiny_model_dir(tiny_root, "bert", "bi")))
    st_base = tmp_path / "st"
    SentenceTransformer(modules=[body, Pooling(body.get_embedding_dimension(), "mean"),
                                 Normalize()], device="cpu").save(str(st_base))
    for two in (False, True):
        out = tmp_path / f"out-{two}"
        train_bi_encoder(str(st_base), beir_train, out, two_towers=two, batch_size=4,
                         max_seq_length=32, device="cpu", eval_split=None, progress=False)
        model = load_model(str(out), device="cpu")
        assert (model.pooling, model.normalize, model.similarity_name) == \
            ("mean", True, "cosine")
        assert len(model.encoders()) == (2 if two else 1)
        assert (out / "modules.json").is_file() != two


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_root, beir_train, tmp_path,
                                                        monkeypatch):
    from sentence_transformers import SentenceTransformerTrainer

    base = str(tiny_model_dir(tiny_root, "bert", "bi"))
    steps = []
    real_step = SentenceTransformerTrainer.training_step

    def counting(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", counting)
    real_save = bi_module._save

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bi_module, "_save", crash)
    kwargs = dict(batch_size=4, epochs=2, max_seq_length=32, device="cpu", eval_split=None,
                  progress=False, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train_bi_encoder(base, beir_train, tmp_path / "bi", **kwargs)
    assert steps == list(range(8)) and not (tmp_path / "bi").exists()
    assert (tmp_path / ".bi.ckpt" / "checkpoint-8").is_dir()
    monkeypatch.setattr(bi_module, "_save", real_save)
    train_bi_encoder(base, beir_train, tmp_path / "bi", **kwargs)
    assert steps == list(range(8))  # nothing retrained: resumed after the last step
    assert isinstance(load_model(str(tmp_path / "bi"), device="cpu"), BiEncoder)
    assert not (tmp_path / ".bi.ckpt").exists()


def test_bce_groups_may_be_smaller_margin_mse_groups_may_not(triples):
    loose = training_groups(triples, negatives=3, exact=False)
    assert [len(g.negatives) for g in loose] == [1, 1, 1, 1]
    with pytest.raises(IrlensError, match="has 3 negatives"):
        training_groups(triples, negatives=3)
