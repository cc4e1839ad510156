"""SAE evidence held out by construction: training rows, the eval warning, BatchTopK's
threshold, hook widths, explanation prompts vs scored documents, the dictionary's key."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from irlens.cli import app
from irlens.data import Dataset, Document, load_dataset
from irlens.sae import (
    SAEConfig,
    SparseAutoencoder,
    TrainConfig,
    cache_array,
    load_sae,
    train_sae,
)
from irlens.sae.dictionary import LatentDictionary, build_dictionary
from irlens.sae.explain import explain_sae
from irlens.sae.heldout import training_dataset
from tests.test_sae import planted
from tests.test_sae_explain import WordJudge, planted_corpus, trained_tiny_sae, write_planted_beir
from tests.tiny import tiny_model, tiny_model_dir
from tests.tiny_data import QUERIES, write_beir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-heldout")
    return tiny_model(root / "m"), root


def beir_with_a_train_copy(folder):
    """tests.tiny_data's folder (test: q1-q3, train: q9) plus q8, a train query that
    repeats test query q1's text."""
    write_beir(folder)
    with (folder / "queries.jsonl").open("a") as fh:
        fh.write(json.dumps({"_id": "q8", "text": QUERIES["q1"]}) + "\n")
    with (folder / "qrels" / "train.tsv").open("a") as fh:
        fh.write("q8\td1\t1\n")
    return folder


def test_training_rows_leave_test_queries_out(tmp_path):
    folder = beir_with_a_train_copy(tmp_path / "data")
    held = training_dataset(folder, ["train", "dev"])
    assert held.split == "train" and set(held.queries) == {"q9"}  # q8 repeats a test text
    assert len(held.corpus) == 6
    assert set(training_dataset(folder, ["train", "test"]).queries) == {"q1", "q2", "q3",
                                                                         "q8", "q9"}
    # a subset keeps the documents an evaluation of the test split with max_docs searches
    assert list(training_dataset(folder, ["train"], max_docs=4).corpus) == \
        list(load_dataset(folder, "test", max_docs=4).corpus)
    docs_only = training_dataset(folder, [])
    assert docs_only.split == "none" and not docs_only.queries and len(docs_only.corpus) == 6


def test_cli_trains_on_held_out_rows_and_eval_warns_when_not(tiny, tmp_path, monkeypatch):
    _, root = tiny
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "emb"))
    folder = str(tiny_model_dir(root / "m"))
    data = str(beir_with_a_train_copy(tmp_path / "data"))
    runner = CliRunner()

    def train(out, *extra):
        res = runner.invoke(app, ["sae", "train", "-d", data, "-m", folder, "-o", str(out),
                                  "--k", "2", "--expansion", "2", "--epochs", "1",
                                  "--batch-size", "4", *extra])
        assert res.exit_code == 0, res.output
        return res

    train(tmp_path / "held")
    trained = load_sae(tmp_path / "held" / "k2" / "sae").manifest.extra["trained_on"]
    assert [(s["dataset"], s["docs"], s["query_split"], s["queries"]) for s in trained] == \
        [("data", 6, "train", 1)]
    res = runner.invoke(app, ["sae", "eval", "--sae", str(tmp_path / "held"), "-d", data,
                              "-m", folder, "-o", str(tmp_path / "e1"), "--json"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr
    row = json.loads(res.stdout)[0]
    assert row["held out"] == "queries held out" and row["queries seen"] == 0

    res = train(tmp_path / "in", "--queries", "train,test")
    assert "in-sample" in res.stderr
    res = runner.invoke(app, ["sae", "eval", "--sae", str(tmp_path / "in"), "-d", data,
                              "-m", folder, "-o", str(tmp_path / "e2"), "--json"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "3 of 3 evaluated data queries were in the training" \
        in warnings[0]
    assert json.loads(res.stdout)[0]["held out"] == "in-sample"


def test_batch_topk_inference_l0_is_close_to_k(tmp_path):
    x, _ = planted(d=16, n=3072, k=3)
    acts = cache_array(x, tmp_path / "cache", shard_size=1000)
    sae = train_sae(acts, tmp_path / "run",
                    SAEConfig(d_in=16, expansion_factor=4, k=3, batch_topk=True),
                    TrainConfig(epochs=2, batch_size=256, lr=1e-2), progress=False)
    # 24 steps: the old moving average (from 0, no bias correction) gave L0 = 20 here
    l0 = float((sae.encode(x) > 0).sum(1).float().mean())
    assert abs(l0 - 3) <= 0.3, l0
    assert abs(float((load_sae(tmp_path / "run" / "sae").encode(x) > 0).sum(1)
                     .float().mean()) - l0) < 1e-6


def test_cli_trains_on_an_ffn_hook(tiny, tmp_path, monkeypatch):
    _, root = tiny
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "emb"))
    folder = str(tiny_model_dir(root / "m"))
    data = str(write_planted_beir(tmp_path / "data"))
    out = tmp_path / "ffn"
    res = CliRunner().invoke(app, ["sae", "train", "-d", data, "-m", folder, "-o", str(out),
                                   "--hook", "layer.1.ffn.post", "--k", "4", "--expansion",
                                   "2", "--epochs", "1", "--batch-size", "64"])
    assert res.exit_code == 0, res.output
    assert load_sae(out / "k4" / "sae").cfg.d_in == 48  # the tiny model's FFN width
    # the width is the hook's, checked before anything is cached: k > 48 x 1
    res = CliRunner().invoke(app, ["sae", "train", "-d", data, "-m", folder, "-o",
                                   str(tmp_path / "bad"), "--hook", "layer.1.ffn.post",
                                   "--k", "60", "--expansion", "1"])
    assert res.exit_code == 2 and "SAE width 48" in res.output
    assert not (tmp_path / "bad" / "cache").exists()


class Recorder(WordJudge):
    """WordJudge that keeps every prompt it is given."""

    def __init__(self):
        self.prompts: list[str] = []

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str:
        self.prompts.append(prompt)
        return super().complete(prompt, max_new_tokens)


def concept_sae(model, data):
    """Latent c reads the direction of concept c's mean document (k=1): each latent fires
    on about a third of the planted documents."""
    vecs = model.encode_docs(data.doc_texts())
    centre = vecs.mean(0)
    concepts = torch.stack([vecs[[d.startswith(f"{c}-") for d in data.doc_ids]].mean(0)
                            for c in range(3)]) - centre
    sae = trained_tiny_sae(model, k=1)
    with torch.no_grad():
        sae.coder.encoder.weight.zero_()
        sae.coder.encoder.bias.zero_()
        sae.coder.encoder.weight[:3] = torch.nn.functional.normalize(concepts, dim=1)
        sae.coder.W_dec[:3] = torch.nn.functional.normalize(concepts, dim=1)
        sae.coder.b_dec.copy_(centre)
    return sae


def test_explanation_prompts_and_scored_documents_are_disjoint(tiny, tmp_path):
    model, _ = tiny
    ids, texts, _ = planted_corpus(n_per=20)
    corpus = {d: Document("", f"{t} marker{i}")  # one marker word per document
              for i, (d, t) in enumerate(zip(ids, texts, strict=True))}
    data = Dataset("data", corpus, {"q0": "salmon"}, {"q0": {"0-0": 1}})
    llm = Recorder()
    explain_sae(model, concept_sae(model, data), [data], tmp_path / "out", n_latents=8,
                llm=llm, llm_latents=8, cache_dir=tmp_path / "emb", progress=False)
    dictionary = LatentDictionary.load(tmp_path / "out" / "dictionary")
    held = {d.split("/", 1)[1] for d in dictionary.held_out}
    marker = {doc.text.split()[-1]: d for d, doc in data.corpus.items()}
    prompts = [p.rsplit("Texts:\n", 1)[1] for p in llm.prompts if p.endswith("Concept:")]
    judged = [p.rsplit("Text: ", 1)[1] for p in llm.prompts if not p.endswith("Concept:")]

    def docs_in(texts):
        return {marker[w.strip(".,")] for t in texts for w in t.split() if w.strip(".,")
                in marker}

    assert prompts and judged
    assert docs_in(prompts) and not docs_in(prompts) & held
    assert docs_in(judged) <= held


def test_explain_rebuilds_a_dictionary_made_for_another_sae(tiny, tmp_path):
    model, _ = tiny
    data = load_dataset(write_planted_beir(tmp_path / "data"))
    out = tmp_path / "out"
    explain_sae(model, trained_tiny_sae(model, k=4), [data], out, n_latents=6,
                cache_dir=tmp_path / "emb", progress=False)
    other = trained_tiny_sae(model, k=1)
    with pytest.warns(UserWarning, match="built for another SAE"):
        explain_sae(model, other, [data], out, n_latents=6, cache_dir=tmp_path / "emb",
                    progress=False)
    fresh = build_dictionary(other, [f"data/{d}" for d in data.doc_ids], data.doc_texts(),
                             model.encode_docs(data.doc_texts()), n_latents=6)
    assert LatentDictionary.load(out / "dictionary").entries.keys() == fresh.entries.keys()
    assert LatentDictionary.load(out / "dictionary").manifest.config["key"]["sae"] == \
        other.fingerprint


def test_dictionary_term_fallback_uses_training_rows_only():
    ids, planted_texts, vecs = planted_corpus(n_per=4)
    sae = SparseAutoencoder(SAEConfig(d_in=8, k=1, expansion_factor=1))
    held = set(build_dictionary(sae, ids, planted_texts, vecs,
                                n_latents=3).held_out)
    # 'leak' is in 3 documents, 2 of them held out: min_df=3 holds on all 12 documents
    # but leaves no term on the 10 training rows (the fallback used to refit on all 12)
    texts, in_train = [], 0
    for i, d in enumerate(ids):
        words = f"unique{chr(97 + i)} other{chr(97 + i)}"
        if d in held or (in_train == 0 and d not in held):
            words += " leak"
            in_train += d not in held
        texts.append(words)
    assert sum("leak" in t for t in texts) == 3
    dictionary = build_dictionary(sae, ids, texts, vecs, n_latents=3)
    train_words = {w for d, t in zip(ids, texts, strict=True) if d not in held
                   for w in t.split()}
    terms = {t for j in dictionary.latents for t in dictionary.terms(j)}
    assert terms and terms <= train_words
    held_only = {w for d, t in zip(ids, texts, strict=True) if d in held
                 for w in t.split()} - train_words
    assert not terms & held_only
    for j in dictionary.latents:
        assert all(doc not in held for doc, _, _ in dictionary.entries[str(j)]["top_docs"])
    assert set(dictionary.held_out) == held
