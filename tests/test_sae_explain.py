"""SAE latents: dictionaries, scorers, LLM clients, steering, the browser and the CLI."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irlens.cli import app
from irlens.data import load_dataset
from irlens.errors import IrlensError
from irlens.sae import SAEConfig, SparseAutoencoder, load_sae
from irlens.sae.dictionary import build_dictionary, latent_matrix, log_odds
from irlens.sae.explain import explain_sae
from irlens.sae.llm import CausalLM, ChatEndpoint, DiskCache
from irlens.sae.scorers import (
    detection_margin_scores,
    detection_prompt,
    detection_scores,
    embedding_scores,
    shuffled,
)
from irlens.sae.steering import feedback_latents, latent_steering, prf_steering, steer
from tests.tiny import tiny_model, tiny_model_dir

pytestmark = pytest.mark.usefixtures("one_thread")

CONCEPTS = [("salmon", "salmon swim upstream to spawn in cold rivers"),
            ("market", "the stock market fell as shares dropped on monday"),
            ("storm", "heavy rain and strong wind from the storm tonight")]
FILLER = ["report", "people", "today", "small", "large", "new", "old", "city", "plan", "note"]


def planted_corpus(n_per=20, seed=0):
    """Documents of three concepts; vector = 2 x the concept's axis + small noise."""
    rng = np.random.default_rng(seed)
    ids, texts, vecs = [], [], []
    for c, (_, text) in enumerate(CONCEPTS):
        for i in range(n_per):
            words = " ".join(rng.choice(FILLER, 4))
            ids.append(f"{c}-{i}")
            texts.append(f"{text} {words}")
            v = np.abs(rng.normal(0, 0.05, 8))
            v[c] += 2.0
            vecs.append(v)
    return ids, texts, torch.tensor(np.array(vecs), dtype=torch.float32)


def axis_sae(k=1):
    """Latent i reads and writes input axis i: latents 3..7 never win with this data."""
    sae = SparseAutoencoder(SAEConfig(d_in=8, expansion_factor=1, k=k))
    with torch.no_grad():
        sae.coder.encoder.weight.copy_(torch.eye(8))
        sae.coder.encoder.bias.zero_()
        sae.coder.W_dec.copy_(torch.eye(8))
        sae.coder.b_dec.zero_()
    return sae


def test_log_odds_matches_monroe_formula_term_by_term():
    target, rest = np.array([5.0, 0, 2]), np.array([1.0, 7, 2])
    prior = np.array([0.5, 0.3, 0.2])
    got = log_odds(target, rest, prior)
    for w in range(3):
        a0, n1, n2 = prior.sum(), target.sum(), rest.sum()
        l1 = math.log((target[w] + prior[w]) / (n1 + a0 - target[w] - prior[w]))
        l2 = math.log((rest[w] + prior[w]) / (n2 + a0 - rest[w] - prior[w]))
        sd = math.sqrt(1 / (target[w] + prior[w]) + 1 / (rest[w] + prior[w]))
        assert got[w] == pytest.approx((l1 - l2) / sd)


def test_dictionary_finds_planted_terms_and_lists_dead_latents(tmp_path):
    ids, texts, vecs = planted_corpus()
    sae = axis_sae()
    d = build_dictionary(sae, ids, texts, vecs, latents=[0, 1, 2, 5], n_top=5, n_terms=3,
                         prior_weight=10)
    for c, (word, _) in enumerate(CONCEPTS):
        assert word in d.terms(c, 3)
        e = d.entries[str(c)]
        assert all(doc.startswith(f"{c}-") for doc, _, _ in e["top_docs"])
        assert e["f1"] == pytest.approx(1.0)
    assert d.dead == [3, 4, 5, 6, 7]
    assert d.entries["5"]["terms"] == [] and d.entries["5"]["f1"] == 0.0
    np.testing.assert_allclose(d.frequency[:3], [1 / 3] * 3)
    assert d.histograms.shape == (4, 20) and d.histograms[0].sum() == 20
    back = type(d).load(d.save(tmp_path / "dict"))
    assert back.entries == d.entries and back.dead == d.dead
    default = build_dictionary(sae, ids, texts, vecs)  # only alive latents are chosen
    assert default.latents == [0, 1, 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-explain")
    return tiny_model(root / "m"), root


def test_embedding_scorer_ranks_the_explained_documents_first(tiny):
    model, _ = tiny
    ids, texts, _ = planted_corpus(n_per=6)
    vecs = model.encode_docs(texts)
    # latent c fires exactly on concept c's documents
    z = np.zeros((len(ids), 3))
    for i, doc in enumerate(ids):
        z[i, int(doc[0])] = 1.0
    rows = np.arange(len(ids))
    exact = {c: CONCEPTS[c][1] for c in range(3)}
    scores = embedding_scores(model, exact, z, vecs, rows, n=100)
    # independent reference: the AUROC by counting ordered pairs
    for c in range(3):
        q = model.encode_queries([exact[c]])
        sims = torch.nn.functional.cosine_similarity(q, vecs).numpy()
        pos, neg = sims[z[:, c] > 0], sims[z[:, c] == 0]
        pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
        assert scores[c] == pytest.approx(np.mean(pairs))
    control = embedding_scores(model, shuffled(exact), z, vecs, rows, n=100)
    assert np.mean(list(scores.values())) > np.mean(list(control.values()))
    assert math.isnan(embedding_scores(model, {0: "x"}, np.zeros((4, 1)), vecs[:4],
                                       np.arange(4))[0])


class WordJudge:
    """A stand-in for an external LLM: names a concept by the first word of the first text,
    and says yes when the concept's first word is in the text."""

    name = "word-judge"

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str:
        if prompt.endswith("Concept:"):
            return prompt.rsplit("Texts:\n- ", 1)[1].split()[0] + "\nmore text"
        last = prompt.rsplit("Concept: ", 1)[1]
        concept, text = last.split("\nText: ", 1)
        return "yes" if concept.split()[0] in text.split("\n")[0] else "no"


def test_detection_scorer_is_balanced_accuracy():
    ids, texts, _ = planted_corpus(n_per=6)
    z = np.zeros((len(ids), 3))
    for i, doc in enumerate(ids):
        z[i, int(doc[0])] = 1.0
    rows = np.arange(len(ids))
    good = detection_scores(WordJudge(), {c: CONCEPTS[c][0] for c in range(3)}, z, texts,
                            rows, n=4, progress=False)
    assert good == {0: 1.0, 1: 1.0, 2: 1.0}
    wrong = detection_scores(WordJudge(), {0: "banana"}, z, texts, rows, n=4, progress=False)
    assert wrong == {0: 0.5}


class YesSayer(WordJudge):
    """Like the base Gemma: always answers "yes", but its yes/no margin is higher when the
    concept's first word is in the text."""

    def judge(self, prompt: str) -> dict:
        concept, text = prompt.rsplit("Concept: ", 1)[1].split("\nText: ", 1)
        hit = concept.split()[0] in text.split("\n")[0]
        return {"margin": 3.0 if hit else 1.0, "answer": "yes"}


def _one_hot_corpus() -> tuple[list[str], np.ndarray, np.ndarray]:
    """The planted corpus's texts, one latent per planted concept, and every row."""
    ids, texts, _ = planted_corpus(n_per=6)
    z = np.zeros((len(ids), 3))
    z[np.arange(len(ids)), [int(doc[0]) for doc in ids]] = 1.0
    return texts, z, np.arange(len(ids))


def test_margin_detection_ranks_where_the_answers_cannot():
    texts, z, rows = _one_hot_corpus()
    good = detection_margin_scores(YesSayer(), {c: CONCEPTS[c][0] for c in range(3)}, z,
                                   texts, rows, n=4, progress=False)
    for scores in good.values():
        assert scores == {"auroc": 1.0, "balanced_accuracy": 1.0, "answer_accuracy": 0.5,
                          "yes_share": 1.0}
    wrong = detection_margin_scores(YesSayer(), {0: "banana", 1: ""}, z, texts, rows, n=4,
                                    progress=False)
    assert wrong[0]["auroc"] == 0.5 and wrong[0]["balanced_accuracy"] == 0.5
    assert all(math.isnan(v) for v in wrong[1].values())


class DocBiased(YesSayer):
    """A judge whose margin is mostly about the document (its filler words), plus a small
    bonus when the concept matches: only the calibrated margin ranks by the concept."""

    def judge(self, prompt: str) -> dict:
        concept, text = prompt.rsplit("Concept: ", 1)[1].split("\nText: ", 1)
        text = text.split("\n")[0]
        bias = 10.0 * sum(text.count(w) for w in ("report", "people", "today"))
        hit = concept != "N/A" and concept.split()[0] in text
        return {"margin": bias + (1.0 if hit else 0.0), "answer": "yes"}


def test_calibrated_margin_removes_the_document_effect():
    texts, z, rows = _one_hot_corpus()
    scores = detection_margin_scores(DocBiased(), {c: CONCEPTS[c][0] for c in range(3)}, z,
                                     texts, rows, n=4, baseline="N/A", progress=False)
    assert all(v["auroc_calibrated"] == 1.0 for v in scores.values())
    assert all(v["balanced_accuracy_calibrated"] == 1.0 for v in scores.values())
    assert min(v["auroc"] for v in scores.values()) < 0.9  # raw margins follow the filler


def tiny_causal_lm(seed=0):
    """A random 1-layer GPT-2 with a word-level vocabulary (" yes" and " no" one token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["[UNK]", "[EOS]", "yes", "no", "Answer", ":", "Concept", "Text", "?", "."]
    words += sorted({w for _, t in CONCEPTS for w in t.split()} | set(FILLER))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                        eos_token="[EOS]")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=256, n_embd=16,
                                       n_layer=1, n_head=2, bos_token_id=1,
                                       eos_token_id=1))
    return CausalLM(model, tokenizer, "tiny-gpt2")


def test_causal_lm_judge_matches_sequence_likelihoods():
    llm = tiny_causal_lm()
    for concept, text in CONCEPTS:
        prompt = detection_prompt(concept, text)
        verdict = llm.judge(prompt)
        # reference: the LM's own loss on prompt + " yes" vs prompt + " no"; the shared
        # prefix cancels, leaving log P(yes | prompt) - log P(no | prompt)
        total = {}
        for word in ("yes", "no"):
            ids = llm.tokenizer(prompt + " " + word, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                loss = llm.model(ids, labels=ids).loss
            total[word] = -float(loss) * (ids.shape[1] - 1)
        assert verdict["margin"] == pytest.approx(total["yes"] - total["no"], abs=1e-3)
        assert verdict["answer"] == llm.complete(prompt, max_new_tokens=1)
    no_yes = tiny_causal_lm()
    with pytest.raises(IrlensError, match="' yes'"):
        CausalLM(no_yes.model, _without(no_yes.tokenizer, "yes"), "broken")


def _without(tokenizer, word):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for w, i in tokenizer.get_vocab().items() if w != word}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]")


def test_judgements_are_cached_on_disk(tmp_path):
    calls = []

    class Counting(YesSayer):
        def judge(self, prompt):
            calls.append(prompt)
            return super().judge(prompt)

    llm = DiskCache(Counting(), tmp_path / "cache")
    prompt = detection_prompt("salmon", CONCEPTS[0][1])
    assert llm.judge(prompt) == llm.judge(prompt) == {"margin": 3.0, "answer": "yes"}
    assert len(calls) == 1
    with pytest.raises(IrlensError, match="log-probabilities"):
        DiskCache(WordJudge(), tmp_path / "cache").judge(prompt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_endpoint_is_one_line_error():
    llm = ChatEndpoint(f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(IrlensError, match="does not answer") as err:
        llm.complete("hello")
    assert "\n" not in str(err.value)
    with pytest.raises(IrlensError, match="http"):
        ChatEndpoint("localhost:8000")


def test_endpoint_answers_are_cached_on_disk(tmp_path):
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            reply = json.dumps({"choices": [{"message": {"content": " fish\n more"}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        llm = DiskCache(ChatEndpoint(f"http://127.0.0.1:{server.server_port}/v1", "m"),
                        tmp_path / "cache")
        assert llm.complete("name it", 5) == "fish\n more"
        assert llm.complete("name it", 5) == "fish\n more"
    finally:
        server.shutdown()
    assert len(seen) == 1 and seen[0]["messages"][0]["content"] == "name it"
    assert seen[0]["max_tokens"] == 5 and len(list((tmp_path / "cache").iterdir())) == 1


def test_endpoint_judge_reads_top_logprobs(tmp_path):
    seen = []
    tops = [{"token": "Yes", "logprob": -0.5}, {"token": " yes", "logprob": -1.5},
            {"token": "No", "logprob": -2.0}, {"token": "Maybe", "logprob": -4.0}]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            logprobs = {"content": [{"token": "Yes", "logprob": -0.5, "top_logprobs": tops}]}
            choice = {"message": {"content": "Yes"}}
            if "plain" not in body["messages"][0]["content"]:
                choice["logprobs"] = logprobs
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"choices": [choice]}).encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = ChatEndpoint(f"http://127.0.0.1:{server.server_port}/v1", "m")
        verdict = llm.judge("does it match?")
        with pytest.raises(IrlensError, match="top_logprobs"):
            llm.judge("plain server")
    finally:
        server.shutdown()
    assert verdict["answer"] == "Yes"
    assert verdict["margin"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.5)) + 2.0)
    assert seen[0]["logprobs"] is True and seen[0]["max_tokens"] == 1


def write_planted_beir(folder):
    ids, texts, _ = planted_corpus(n_per=8)
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": "", "text": t}) + "\n"
        for i, t in zip(ids, texts, strict=True)))
    queries = {"q0": "where do salmon spawn", "q1": "stock market shares", "q2": "storm"}
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{c}\t{c}-{i}\t1\n"
                                                 for c in range(3) for i in range(3)))
    return folder


def trained_tiny_sae(model, k=4):
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=32, expansion_factor=2, k=k))
    sae.manifest.model_id, sae.manifest.model_fingerprint = model.model_id, model.fingerprint
    return sae


def test_explain_keeps_keyword_results_when_the_llm_is_down(tiny, tmp_path):
    model, _ = tiny
    data = load_dataset(write_planted_beir(tmp_path / "data"))
    sae = trained_tiny_sae(model)
    llm = ChatEndpoint(f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(IrlensError, match="does not answer.*keyword results are in"):
        explain_sae(model, sae, [data], tmp_path / "out", n_latents=5, llm=llm,
                    cache_dir=tmp_path / "emb", progress=False)
    summary = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert summary["n_latents"] >= 2
    assert (tmp_path / "out" / "latents.html").is_file()
    assert (tmp_path / "out" / "dictionary" / "manifest.json").is_file()


def _explain_with(llm, tiny, tmp_path: Path, llm_latents: int) -> dict:
    """``explain_sae`` on the planted data with a tiny SAE and the given judge."""
    model, _ = tiny
    data = load_dataset(write_planted_beir(tmp_path / "data"))
    return explain_sae(model, trained_tiny_sae(model), [data], tmp_path / "out",
                       n_latents=4, llm=llm, llm_latents=llm_latents,
                       cache_dir=tmp_path / "emb", progress=False)


def test_explain_with_an_llm_scores_both_explanations(tiny, tmp_path):
    summary = _explain_with(WordJudge(), tiny, tmp_path, llm_latents=2)
    assert summary["llm_latents"] == 2 and summary["detection_llm"]["n"] <= 2
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert {"embedding_auroc_keywords", "embedding_auroc_shuffled", "detection_llm",
            "embedding_auroc_llm"} <= set(frame.columns)
    assert "detection_auroc_llm" not in frame.columns  # WordJudge gives no log-probabilities


def test_explain_with_a_judge_scores_margins_and_the_shuffled_control(tiny, tmp_path):
    summary = _explain_with(YesSayer(), tiny, tmp_path, llm_latents=3)
    for name in ("llm", "keywords", "shuffled_llm"):
        for column in ("detection", "detection_auroc", "detection_bacc", "yes_share",
                       "detection_auroc_calibrated", "detection_bacc_calibrated"):
            assert f"{column}_{name}" in summary


def test_steering_with_zero_delta_changes_nothing(tiny, tmp_path):
    model, _ = tiny
    data = load_dataset(write_planted_beir(tmp_path / "data"))
    sae = trained_tiny_sae(model)
    q = model.encode_queries(data.query_texts())
    assert torch.equal(steer(sae, q, 3, 0.0), q)
    assert torch.equal(steer(sae, q, [1, 2], 0.0, mode="scale"), q)
    torch.testing.assert_close(steer(sae, q, 3, 0.5), q + 0.5 * sae.W_dec.detach()[3])
    z3 = sae.encode(q)[:, 3:4]
    torch.testing.assert_close(steer(sae, q, 3, 0.5, mode="scale"),
                               q + 0.5 * z3 * sae.W_dec.detach()[3])
    rows = latent_steering(model, sae, data, [3], [0.0, 5.0], cache_dir=tmp_path / "e").rows
    zero, big = rows
    assert zero["ndcg10_after"] == zero["ndcg10_before"]
    assert zero["top10_share_after"] == zero["top10_share_before"]
    assert zero["median_rank_change"] == 0
    assert big["top10_share_after"] >= big["top10_share_before"]
    prf = prf_steering(model, sae, data, n_feedback=3, alpha=2, deltas=[0.0, 0.2],
                       cache_dir=tmp_path / "e").to_frame()
    assert set(prf.control) == {"unsteered", "prf latents", "random latents"}
    assert (prf[prf.delta == 0].ndcg10_change == 0).all()
    both = prf_steering(model, sae, data, n_feedback=3, alpha=2, deltas=[0.0],
                        weightings=["mass", "idf"], cache_dir=tmp_path / "e").to_frame()
    assert set(both.control) == {"unsteered", "prf latents", "prf latents idf",
                                 "random latents"}
    with pytest.raises(IrlensError, match="weighting"):
        prf_steering(model, sae, data, weightings=["tfidf"], cache_dir=tmp_path / "e")
    with pytest.raises(IrlensError, match="out of range"):
        steer(sae, q, 10_000, 0.1)


def test_feedback_latents_by_mass_and_by_idf_against_a_loop():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    dense = rng.random((30, 12)) * (rng.random((30, 12)) < 0.3)
    dense[:, 0] = 5.0  # fires everywhere with a large activation: idf 0
    z = sp.csc_matrix(dense)
    tops = [[0, 1, 2], [5, 9, 20, 21]]
    by_mass = feedback_latents(z, tops, 3, "mass")
    by_idf = feedback_latents(z, tops, 3, "idf")
    for q, top in enumerate(tops):
        mass = [sum(dense[r, j] for r in top) for j in range(12)]
        df = [sum(1 for r in range(30) if dense[r, j] > 0) for j in range(12)]
        idf = [mass[j] * math.log(30 / max(df[j], 1)) for j in range(12)]
        assert list(by_mass[q]) == sorted(range(12), key=lambda j: -mass[j])[:3]
        assert list(by_idf[q]) == sorted(range(12), key=lambda j: -idf[j])[:3]
        assert by_mass[q][0] == 0 and 0 not in by_idf[q]
    with pytest.raises(IrlensError, match="weighting"):
        feedback_latents(z, tops, 3, "bm25")


def test_latent_matrix_matches_dense_encode():
    sae = axis_sae(k=2)
    _, _, vecs = planted_corpus(n_per=3)
    np.testing.assert_allclose(latent_matrix(sae, vecs, chunk=4).toarray(),
                               sae.encode(vecs).detach().numpy())


def test_browser_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    from irlens.sae.html import save_browser

    ids, texts, vecs = planted_corpus(n_per=5)
    texts[0] = texts[0] + " <script>window.pwned = 1</script> & <b>bold</b>"
    d = build_dictionary(axis_sae(), ids, texts, vecs, latents=[0, 1, 2], prior_weight=10)
    path = save_browser(d, tmp_path / "latents.html",
                        explanations={"llm": {0: "fish <i>rivers</i>"}},
                        scores={"AUROC keywords": {0: 0.9, 1: 0.5, 2: float("nan")}})
    html = path.read_text()
    assert "&lt;script&gt;" in html and "http://" not in html and "https://" not in html
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        assert page.locator(".card").count() == 3
        assert page.evaluate("window.pwned") is None
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && "
                               "i.naturalWidth > 0)")
        assert loaded == [True, True, True]
        assert page.locator(".card mark", has_text="salmon").count() >= 2
        assert "fish <i>rivers</i>" in page.locator(".card").first.inner_text()
        page.fill("#search", "market")
        assert page.locator(".card:not(.hidden)").count() == 1
        page.fill("#search", "")
        page.select_option("#sort", "AUROC keywords")
        order = page.evaluate("Array.from(document.querySelectorAll('.card'))"
                              ".map(c => c.dataset.latent)")
        assert order == ["0", "1", "2"]
        page.select_option("#sort", "latent")
        order = page.evaluate("Array.from(document.querySelectorAll('.card'))"
                              ".map(c => c.dataset.latent)")
        assert order == ["0", "1", "2"]
        browser.close()
    assert errors == []


def test_cli_train_eval_steer_explain(tiny, tmp_path, monkeypatch):
    _, root = tiny
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "emb"))
    folder = str(tiny_model_dir(root / "m"))
    data = str(write_planted_beir(tmp_path / "data"))
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["sae", "train", "-d", data, "-m", folder, "-o", str(out),
                              "--k", "2,4", "--expansion", "2", "--epochs", "2",
                              "--batch-size", "8", "--balance", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert json.loads((out / "k2" / "manifest.json").read_text())["config"]["train"]["balance"]
    # documents only: the planted data has no train split
    assert [s["k"] for s in summary["saes"]] == [2, 4] and summary["rows"] == 24
    assert load_sae(out / "k4" / "sae").cfg.k == 4
    res = runner.invoke(app, ["sae", "eval", "--sae", str(out), "-d", data, "-m", folder,
                              "-o", str(tmp_path / "eval"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["k"] for r in rows] == [2, 4] and all(0 <= r["dead"] <= 1 for r in rows)
    res = runner.invoke(app, ["sae", "steer", "--sae", str(out / "k4"), "-d", data, "-m",
                              folder, "-o", str(tmp_path / "steer"), "--deltas", "0.1",
                              "--latents", "0,1", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "steer" / "steering.csv").is_file()
    res = runner.invoke(app, ["sae", "explain", "--sae", str(out / "k4" / "sae"), "-d", data,
                              "-m", folder, "-o", str(tmp_path / "explain"), "--latents", "4",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_latents"] >= 1


@pytest.mark.parametrize("args, message", [
    (["--k", "100", "--expansion", "2"], "--k 100 is more than the SAE width 64"),
    (["--k", "x"], "--k must be a comma-separated list of ints"),
])
def test_cli_bad_input_is_one_line(tiny, tmp_path, args, message):
    import shutil

    _, root = tiny
    data = str(write_planted_beir(tmp_path / "data"))
    # the model's config without its weights: a bad option must fail before they load
    no_weights = tmp_path / "config-only"
    no_weights.mkdir()
    shutil.copy(tiny_model_dir(root / "m") / "config.json", no_weights / "config.json")
    res = CliRunner().invoke(app, ["sae", "train", "-d", data, "-m", str(no_weights), "-o",
                                   str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.output and res.output.count("error:") == 1


def test_cli_bad_prf_weighting_fails_before_loading(tmp_path):
    res = CliRunner().invoke(app, ["sae", "steer", "--sae", str(tmp_path / "none"), "-d",
                                   str(tmp_path / "none"), "-m", str(tmp_path / "no-model"),
                                   "-o", str(tmp_path / "o"), "--weighting", "mass,bogus"])
    assert res.exit_code == 2
    assert "--weighting item 'bogus' must be one of mass, idf" in res.output
    assert res.output.count("error:") == 1
