"""Editing: the rank-one closed form, exact restoration, saved models, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irlens.data import load_dataset
from irlens.editing import (
    EditBench,
    FineTuneEditor,
    RankOneEditor,
    key_covariance,
    make_requests,
    rank_one_update,
)
from irlens.editing.covariance import key_covariance_loop
from irlens.editing.edit import Edit
from irlens.editing.layer_cache import (
    embed_from,
    embed_with_ffn_change,
    ffn_inputs,
    ffn_output_layer,
    first_edited_layer,
    layer_inputs,
)
from irlens.editing.objective import gaps
from irlens.editing.requests import EditRequest
from irlens.errors import IrlensError
from irlens.models import load_model
from tests.tiny import tiny_model, tiny_model_dir
from tests.tiny_data import write_beir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit-models")
    return tiny_model(root, "bert", "bi", seed=3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return load_dataset(write_beir(tmp_path_factory.mktemp("edit-data")))


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _request(kind: str = "insert", **kw) -> EditRequest:
    base = dict(query_id="q1", query="what do cats eat", doc_id="d3",
                doc="the stock market fell sharply on monday morning",
                competitors=["cats are small carnivores that eat mice and fish",
                             "mice eat grain and seeds and hide from cats",
                             "dogs are loyal animals that eat meat and bones"])
    return EditRequest(kind, **{**base, **kw})


def test_rank_one_update_is_the_constrained_least_squares_solution():
    rng = np.random.default_rng(0)
    h, i = 3, 4
    w = rng.normal(size=(h, i))
    a = rng.normal(size=(i, 8))
    c = a @ a.T / 8 + 0.1 * np.eye(i)
    k, v = rng.normal(size=i), rng.normal(size=h)
    # KKT of min vec(D)^T (C kron I) vec(D) s.t. (k^T kron I) vec(W + D) = v (column-major vec)
    q = np.kron(c, np.eye(h))
    a_eq = np.kron(k[None, :], np.eye(h))
    kkt = np.block([[2 * q, a_eq.T], [a_eq, np.zeros((h, h))]])
    rhs = np.concatenate([np.zeros(h * i), v - w @ k])
    d = np.linalg.solve(kkt, rhs)[:h * i].reshape(i, h).T
    got = rank_one_update(*(torch.from_numpy(x) for x in (w, c, k, v))).numpy()
    np.testing.assert_allclose(got, w + d, atol=1e-10)
    np.testing.assert_allclose(got @ k, v, atol=1e-10)


def test_batched_covariance_equals_per_token_loop(tiny):
    texts = ["cats eat mice", "salmon swim upstream to spawn in cold rivers", "rain"]
    fast = key_covariance(tiny, texts, layer=1, batch_size=2)
    slow = key_covariance_loop(tiny, texts, layer=1)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-12)


def test_rank_one_edit_meets_its_goal_and_leaves_the_model_untouched(tiny):
    before = _state(tiny)
    request = _request()
    assert float(gaps(tiny, [request]).detach()[0]) < 0.02
    moment = key_covariance(tiny, [request.doc, *request.competitors], layer=1)
    # a tiny random encoder maps every text to nearly one vector (cosine 1.0000), so the
    # value must move far: no L2 pull, a large step, a small margin
    editor = RankOneEditor(moment, layer=1, steps=300, lr=1.0, l2=0.0, margin=0.005)
    edit = editor.fit(tiny, [request])
    assert _same(before, _state(tiny))
    (name, delta), = edit.deltas.items()
    assert name.endswith("layer.1.output.dense.weight")
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-5) == 1
    with edit.applied(tiny):
        assert float(gaps(tiny, [request]).detach()[0]) >= 0.005
    assert _same(before, _state(tiny))


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_encoding_from_a_layer_equals_a_full_encode_after_an_edit(tmp_path, family):
    model = tiny_model(tmp_path, family, "bi", seed=1)
    texts = ["what do cats eat", "the stock market fell sharply on monday morning",
             "mice", "dogs are loyal animals that eat meat and bones every day"]
    edit = FineTuneEditor(layer=1, steps=5, lr=1e-2).fit(model, [_request()])
    assert first_edited_layer(model, edit.deltas) == 1
    embeddings = next(n for n, _ in model.named_parameters() if "embeddings" in n)
    assert first_edited_layer(model, [embeddings, *edit.deltas]) is None
    with edit.applied(model):
        full = model.encode_docs(texts)
        fast = embed_from(model, layer_inputs(model, texts, "doc", 1, batch_size=3))
        below = embed_from(model, layer_inputs(model, texts, "doc", 0, batch_size=3))
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(below, full, rtol=0, atol=1e-6)
    assert (model.encode_docs(texts) - full).abs().max() > 1e-4  # the edit moved them


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_ffn_output_change_equals_a_full_encode_with_the_weight_changed(tmp_path, family):
    model = tiny_model(tmp_path, family, "bi", seed=2)
    texts = ["what do cats eat", "the stock market fell sharply on monday", "mice"]
    linear = dict(model.named_modules())
    name = next(n for n, m in linear.items() if n.endswith("layer.0.output.dense"))
    weight = linear[name].weight
    assert ffn_output_layer(model, [f"{name}.weight", f"{name}.bias"]) == 0
    assert ffn_output_layer(model, [f"{name}.weight".replace("output", "intermediate")]) is None
    delta = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.05
    states = ffn_inputs(model, texts, "query", 0, batch_size=2)
    fast = embed_with_ffn_change(model, states, lambda keys: keys @ delta.T)
    before = model.encode_queries(texts)
    with torch.no_grad():
        weight.add_(delta)
    try:
        full = model.encode_queries(texts)
    finally:
        with torch.no_grad():
            weight.sub_(delta)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)
    assert (full - before).abs().max() > 1e-3


def test_bench_from_the_edited_layer_equals_a_full_re_encode(tiny, tiny_data, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path))
    fast, full = EditBench(tiny, tiny_data), EditBench(tiny, tiny_data, cache_bytes=0)
    req = make_requests(tiny, tiny_data, "remove", 1, ranking=full.before)[0]
    params = dict(tiny.named_parameters())
    names = [n for n in params if ".layer.1." in n and n.endswith("dense.weight")
             and ("intermediate" in n or "output.dense" in n and "attention" not in n)]
    assert len(names) == 2
    noise = torch.Generator().manual_seed(0)
    layer_edit = Edit("w", {n: torch.randn(params[n].shape, generator=noise) * 0.5
                            for n in names})
    name = next(n for n in names if "output" in n)
    rows = [fast.measure(layer_edit, [req])[0], full.measure(layer_edit, [req])[0]]
    assert fast._inputs[:2] == ("input", 1) and full._inputs is None
    assert rows[0]["rank_after"] == rows[1]["rank_after"]
    assert rows[1]["locality_doc_cosine"] < 0.9999  # the edit moved the documents
    for key in ("locality_top10_changes", "locality_delta_ndcg10", "locality_doc_cosine"):
        assert rows[0][key] == pytest.approx(rows[1][key], abs=1e-6)
    # only the FFN output matrix: the layer's keys are kept, the layers above re-run
    edit = Edit("w", {name: layer_edit.deltas[name]})
    ranked = [fast._rank_edited(edit), full._rank_edited(edit)]
    assert fast._inputs[:2] == ("ffn", 1)
    torch.testing.assert_close(ranked[0].docs, ranked[1].docs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ranked[0].queries, ranked[1].queries, rtol=0, atol=1e-6)
    assert (ranked[0].docs - full.before.docs).abs().max() > 1e-4


def test_applied_edit_is_undone_bit_identically_after_an_exception(tiny):
    before = _state(tiny)
    edit = FineTuneEditor(layer=0, steps=5, lr=1e-2).fit(tiny, [_request()])
    assert edit.deltas
    with pytest.raises(RuntimeError, match="boom"), edit.applied(tiny):
        assert not _same(before, _state(tiny))
        raise RuntimeError("boom")
    assert _same(before, _state(tiny))


def test_failed_sequential_fit_restores_the_model(tiny):
    before = _state(tiny)
    moment = key_covariance(tiny, ["cats eat mice and fish"], layer=0)
    bad = _request(subject="zebra")  # fails after the first request was written in place
    with pytest.raises(IrlensError, match="subject 'zebra' is not in the query"):
        RankOneEditor(moment, layer=0, steps=3).fit(tiny, [_request(), bad])
    assert _same(before, _state(tiny))


def test_saved_edited_model_reproduces_edited_scores(tmp_path, tiny):
    edit = FineTuneEditor(layer=1, steps=5, lr=1e-2).fit(tiny, [_request()])
    texts = ["what do cats eat", "the stock market fell sharply on monday morning"]
    with edit.applied(tiny):
        edited = tiny.encode_docs(texts)
    edit.save_model(tiny, tmp_path / "edited")
    reloaded = load_model(str(tmp_path / "edited"), device="cpu")
    torch.testing.assert_close(reloaded.encode_docs(texts), edited, rtol=0, atol=1e-6)
    assert (tiny.encode_docs(texts) - edited).abs().max() > 1e-4


def test_bench_measures_real_ranks_and_checks_requests(tiny, tiny_data, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path))
    bench = EditBench(tiny, tiny_data)
    edit = FineTuneEditor(layer=0, steps=1, lr=0.0).fit(tiny, [_request()])
    req = make_requests(tiny, tiny_data, "remove", 1, ranking=bench.before)[0]
    row = bench.measure(edit, [req])[0]
    assert row["rank_before"] == bench.before.rank(req.query_id, req.doc_id) <= 10
    assert row["rank_after"] == row["rank_before"] and not row["efficacy"]
    assert row["locality_top10_changes"] == 0 and row["locality_doc_cosine"] == \
        pytest.approx(1.0)
    missing = EditRequest("insert", "q1", "what do cats eat", "nope", "x")
    with pytest.raises(IrlensError, match="document 'nope' is not in the corpus"):
        bench.measure(edit, [missing])
    top = bench.before.top("q1", 1)[0]
    inside = EditRequest("insert", "q1", "what do cats eat", top, "x")
    with pytest.raises(IrlensError, match="already in the top 10"):
        bench.measure(edit, [inside])


def test_bad_editor_input(tiny, tmp_path):
    moment = torch.eye(48, dtype=torch.float64)
    with pytest.raises(IrlensError, match="edit layer 7 is out of range; this model has "
                       "layers 0-1"):
        RankOneEditor(moment, layer=7).fit(tiny, [_request()])
    with pytest.raises(IrlensError, match="no edit requests"):
        FineTuneEditor().fit(tiny, [])
    with pytest.raises(IrlensError, match="unknown edit kind"):
        _request(kind="swap")


def test_cli_refuses_bad_options_before_loading(tmp_path):
    from typer.testing import CliRunner

    from irlens.cli import app

    result = CliRunner().invoke(app, ["edit", "--data", str(tmp_path), "--editor", "memit",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--editor must be one of ft, rome, kn, got 'memit'" in result.output
    result = CliRunner().invoke(app, ["edit", "--data", str(tmp_path), "--device", "tpu",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--device must be auto, cpu or cuda" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.real
def test_rank_one_insert_on_the_real_model(default_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path))
    dataset = load_dataset(data_dir / "scifact").subset(max_docs=150, max_queries=20)
    bench = EditBench(default_model, dataset)
    request = make_requests(default_model, dataset, "insert", 1, seed=1,
                            ranking=bench.before)[0]
    moment = key_covariance(default_model, dataset.doc_texts()[:100], layer=5)
    edit = RankOneEditor(moment, layer=5).fit(default_model, [request])
    row = bench.measure(edit, [request])[0]
    assert row["rank_before"] > 10 and row["efficacy"], row
    assert abs(row["locality_delta_ndcg10"]) < 0.05 and row["locality_doc_cosine"] > 0.99


def test_knowledge_neuron_suppression_lowers_the_target_score(tiny):
    from irlens.editing.knowledge import KnowledgeNeuronEditor

    before = _state(tiny)
    request = _request("remove", doc_id="d1", doc="cats are small carnivores that eat mice",
                       paraphrases=["cats eat what", "what cats eat"])
    editor = KnowledgeNeuronEditor(n_steps=8, max_units=10)
    units = editor.neurons(tiny, request)
    assert units and all(0 <= layer < 2 and 0 <= u < 48 for layer, u in units)
    edit = editor.fit(tiny, [request])
    assert _same(before, _state(tiny))
    pair = ([request.query], [request.doc])
    with torch.no_grad():
        original = float(tiny.score(*pair))
        with edit.applied(tiny):
            suppressed = float(tiny.score(*pair))
    assert suppressed < original


def test_edit_then_train_reports_every_stage(tmp_path, monkeypatch):
    from irlens.editing.pipeline import STAGES, edit_then_train
    from irlens.editing.study import EditConfig

    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    data = write_beir(tmp_path / "data")
    rows = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td4\t1", "q3\td3\t1", "q9\td6\t1"]
    (data / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    model = str(tiny_model_dir(tmp_path / "models", "bert", "bi", seed=5))
    config = EditConfig(editor="ft", kind="remove", n=1, layer=0, steps=3)
    train = {"epochs": 1, "batch_size": 2, "hard_negatives": 0, "eval_split": None}
    frame = edit_then_train(model, data, tmp_path / "out", config, train, progress=False)
    assert sorted(frame["stage"].unique()) == sorted(STAGES)
    base = frame[frame.stage == "base"].iloc[0]
    assert base["rank"] <= 10 and not base["holds"]  # a remove request starts in the top 10
    again = edit_then_train(model, data, tmp_path / "out", config, train, progress=False)
    assert again.equals(frame)  # every stage resumed from disk


def test_edit_page_in_chromium(tiny, tiny_data, tmp_path, monkeypatch):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from irlens.editing.report import render_edit_report
    from irlens.editing.study import EditConfig, run_edits

    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.fail("headless Chromium not found at /usr/bin/chromium; apt-get install chromium")
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    config = EditConfig(editor="ft", kind="remove", n=1, layer=0, steps=2)
    frame = run_edits(tiny, tiny_data.source, tmp_path / "run", config, progress=False)
    frame.loc[0, "query_id"] = "<script>alert(1)</script>"
    page_path = render_edit_report(frame, tmp_path / "edit.html", vars(config))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda d: errors.append("dialog: " + d.message))
        page.goto(page_path.as_uri())
        width = page.eval_on_selector("#locality", "img => img.naturalWidth")
        cells = page.locator("#edits td").all_inner_texts()
        browser.close()
    assert not errors and width > 0
    assert "<script>alert(1)</script>" in cells
    row = frame.iloc[0]
    assert f"{row.rank_before} → {row.rank_after}" in cells


def _grads(model) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("editor", ["ft", "rome", "kn"])
def test_fit_leaves_the_callers_grads_as_they_were(tiny, editor):
    from irlens.editing import make_editor

    params = dict(tiny.named_parameters())
    ffn = next(n for n in params if n.endswith("layer.1.output.dense.weight"))
    marked = {ffn: torch.full_like(params[ffn], 0.25), "pooler.dense.bias": None}
    marked = {n: g for n, g in marked.items() if n in params}
    for n, g in marked.items():
        params[n].grad = g
    before = _grads(tiny)
    options = {"ft": {"layer": 1, "steps": 3, "lr": 1e-2},
               "rome": {"moment": torch.eye(48, dtype=torch.float64), "layer": 1, "steps": 3},
               "kn": {"n_steps": 4, "max_units": 3}}[editor]
    make_editor(editor, **options).fit(tiny, [_request()])
    after = _grads(tiny)
    try:
        assert after.keys() == before.keys()
        for n in before:
            assert (before[n] is None) == (after[n] is None), n
            if before[n] is not None:
                assert torch.equal(before[n], after[n]), n
    finally:
        for p in params.values():
            p.grad = None


def test_rank_one_on_two_towers_edits_the_query_tower_only(tmp_path):
    from irlens.editing import cached_covariance
    from irlens.editing.editors import edited_side

    doc_dir = tiny_model_dir(tmp_path, "bert", "bi", seed=3)
    query_dir = tiny_model_dir(tmp_path, "bert", "bi", seed=4)
    model = load_model(str(doc_dir), query_model=str(query_dir), device="cpu")
    assert edited_side(model) == "query"
    data = load_dataset(write_beir(tmp_path / "data"))
    moment = cached_covariance(model, data, 1, cache_dir=tmp_path / "cache", side="query")
    # the query tower's keys, not the document tower's
    torch.testing.assert_close(moment, key_covariance(model, data.doc_texts(), 1, side="query"))
    assert not torch.allclose(moment, key_covariance(model, data.doc_texts(), 1, side="doc"))
    request = _request()
    editor = RankOneEditor(moment, layer=1, steps=300, lr=1.0, l2=0.0, margin=0.005)
    edit = editor.fit(model, [request])
    (name, _), = edit.deltas.items()
    query_weight = model.query_encoder.encoder.layer[1].output.dense.weight
    assert dict(model.named_parameters())[name] is query_weight
    docs = [request.doc, *request.competitors]
    with edit.applied(model):
        assert float(gaps(model, [request]).detach()[0]) >= 0.005
        moved = model.encode_docs(docs)
    torch.testing.assert_close(moved, model.encode_docs(docs), rtol=0, atol=0)


@pytest.mark.parametrize("editor", ["ft", "rome", "kn"])
def test_each_editor_runs_in_bfloat16_and_restores_exactly(tmp_path, editor):
    from irlens.editing import make_editor

    path = tiny_model_dir(tmp_path, "bert", "bi", seed=3)
    model = load_model(str(path), device="cpu", dtype="bfloat16")
    data = load_dataset(write_beir(tmp_path / "data"))
    before = _state(model)
    moment = key_covariance(model, data.doc_texts(), layer=1)
    assert moment.device == model.device
    options = {"ft": {"layer": 1, "steps": 3, "lr": 1e-1},
               "rome": {"moment": moment, "layer": 1, "steps": 5, "lr": 1.0},
               "kn": {"n_steps": 4, "max_units": 3}}[editor]
    request = _request("remove", doc_id="d1",  # a 6-document corpus: all in the top 10
                       doc="cats are small carnivores that eat mice and fish",
                       paraphrases=["cats eat what"])
    edit = make_editor(editor, **options).fit(model, [request])
    assert _same(before, _state(model))
    assert edit.deltas and all(d.dtype == torch.bfloat16 for d in edit.deltas.values())
    bench = EditBench(model, data)
    with edit.applied(model):
        assert not _same(before, _state(model))
    assert _same(before, _state(model))
    row = bench.measure(edit, [request])[0]
    assert row["rank_after"] >= 1
    assert _same(before, _state(model))


def _wider_beir(folder) -> object:
    """A BEIR folder of 30 short documents and 3 judged queries (more than a top 10)."""
    import json

    words = ["cats", "mice", "fish", "rain", "wind", "stock", "market", "salmon", "river",
             "dogs", "bones", "grain", "seeds", "cold", "monday", "sharp"]
    rng = np.random.default_rng(0)
    docs = {f"d{i}": " ".join(rng.choice(words, size=6)) for i in range(30)}
    queries = {"q1": "what do cats eat", "q2": "where do salmon spawn", "q3": "stock news"}
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    rows = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1", "q3\td3\t1"]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return load_dataset(folder)


def test_rank_one_fit_against_the_corpus_meets_its_bar_in_the_whole_ranking(tiny, tmp_path,
                                                                           monkeypatch):
    from irlens.editing.objective import INSERT_BAR

    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    data = _wider_beir(tmp_path / "data")
    bench = EditBench(tiny, data)
    ranked = bench.before.top("q1", 30)
    target = ranked[-1]  # the last document: an insert with work to do
    texts = dict(zip(data.doc_ids, data.doc_texts(), strict=True))
    # rivals that are easy to beat: the request's own list misses the corpus's best
    request = EditRequest("insert", "q1", data.queries["q1"], target, texts[target],
                          [texts[d] for d in ranked[20:25]])
    moment = key_covariance(tiny, data.doc_texts(), layer=1)
    options = dict(steps=300, lr=1.0, l2=0.0, margin=0.005)
    alone = RankOneEditor(moment, layer=1, **options).fit(tiny, [request])
    mined = RankOneEditor(moment, layer=1, corpus=bench, **options).fit(tiny, [request])
    rank_alone = bench.ranked(alone).rank("q1", target)
    rank_mined = bench.ranked(mined).rank("q1", target)
    assert rank_alone > INSERT_BAR  # beating its own rivals is not enough in the corpus
    assert rank_mined <= INSERT_BAR and mined.info["rounds"][0] >= 1
    # the measured rank is the one the bench reports, whichever path ranks the corpus
    full = EditBench(tiny, data, cache_bytes=0)
    assert full.ranked(mined).rank("q1", target) == rank_mined
    torch.testing.assert_close(full.ranked(mined).scores, bench.ranked(mined).scores,
                               rtol=0, atol=1e-5)


def test_saved_rank_one_edit_ranks_the_same_in_sentence_transformers(tmp_path, monkeypatch):
    """The ranks irlens measures for an edit are the saved model's ranks in plain
    sentence-transformers (its own ``encode``, the whole corpus)."""
    from sentence_transformers import SentenceTransformer, models

    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    body = models.Transformer(str(tiny_model_dir(tmp_path, "bert", "bi", seed=3)),
                              max_seq_length=128)
    st = SentenceTransformer(modules=[body, models.Pooling(32, "mean"), models.Normalize()],
                             device="cpu")
    st.save(str(tmp_path / "st"))
    model = load_model(str(tmp_path / "st"), device="cpu")
    data = _wider_beir(tmp_path / "data")
    bench = EditBench(model, data)
    ranked = bench.before.top("q1", 30)
    texts = dict(zip(data.doc_ids, data.doc_texts(), strict=True))
    request = EditRequest("insert", "q1", data.queries["q1"], ranked[-1], texts[ranked[-1]],
                          [texts[d] for d in ranked[:20]])
    moment = key_covariance(model, data.doc_texts(), layer=1)
    edit = RankOneEditor(moment, layer=1, steps=300, lr=1.0, l2=0.0, margin=0.005,
                         corpus=bench).fit(model, [request])
    row = bench.measure(edit, [request])[0]
    edit.save_model(model, tmp_path / "edited")
    saved = SentenceTransformer(str(tmp_path / "edited"), device="cpu")
    docs = saved.encode(data.doc_texts(), convert_to_tensor=True)
    queries = saved.encode(data.query_texts(), convert_to_tensor=True)
    scores = queries @ docs.T
    torch.testing.assert_close(scores, bench.ranked(edit).scores, rtol=0, atol=1e-5)
    assert (scores - bench.before.scores).abs().max() > 1e-4  # the saved model is edited
    row_scores = scores[data.query_ids.index(request.query_id)]
    target = row_scores[data.doc_ids.index(request.doc_id)]
    assert row["rank_after"] == 1 + int((row_scores > target).sum()) <= 10
    assert row["rank_before"] > 10


def test_generalisation_counts_other_judged_queries_and_robustness_the_variants(
        tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    data = _wider_beir(tmp_path / "data")
    bench = EditBench(tiny, data)
    before = bench.before
    target = next(d for d in before.top("q1", 30)[::-1] if before.rank("q2", d) > 10)
    text = data.doc_texts([target])[0]
    # a variant equal to the document finds it (rank 1); the other judged query does not
    request = EditRequest("insert", "q1", data.queries["q1"], target, text,
                          paraphrases=[text], related_queries={"q2": data.queries["q2"]})
    nothing = Edit("none", {})
    row = bench.measure(nothing, [request])[0]
    assert row["generalisation"] == 0.0 and row["n_generalisation"] == 1
    assert row["robustness"] == 1.0 and row["n_robustness"] == 1


def test_cli_writes_edits_parquet_atomically(tmp_path, monkeypatch):
    from pathlib import Path

    import pandas as pd
    from typer.testing import CliRunner

    from irlens.cli import app

    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    model = tiny_model_dir(tmp_path / "models", "bert", "bi", seed=3)
    data = write_beir(tmp_path / "data")

    write = pd.DataFrame.to_parquet

    def torn(self, path, *args, **kwargs):  # the final table's write crashes half-way
        if "edits.parquet" not in str(path):
            return write(self, path, *args, **kwargs)
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", torn)
    args = ["edit", "--model", str(model), "--data", str(data), "--editor", "ft", "--kind",
            "remove", "--n", "1", "--layer", "0", "--steps", "2", "--device", "cpu",
            "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, OSError) and "disk full" in str(result.exception)
    assert not (tmp_path / "o" / "edits.parquet").exists()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".edits")]


def test_kept_corpus_states_of_some_documents_equal_a_fresh_pass(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("IRLENS_CACHE_DIR", str(tmp_path / "cache"))
    data = _wider_beir(tmp_path / "data")
    bench = EditBench(tiny, data)
    texts = [data.doc_texts()[i] for i in (7, 0, 29, 3)]
    u = torch.randn(48, generator=torch.Generator().manual_seed(0))
    d = torch.randn(32, generator=torch.Generator().manual_seed(1))

    def change(keys):
        return (keys @ u).unsqueeze(-1) * d

    for layer in (0, 1):  # below the last layer the kept calls of the layers above are cut
        kept = bench.doc_states(layer, texts)
        fresh = ffn_inputs(tiny, texts, "doc", layer, batch_size=3)
        torch.testing.assert_close(embed_with_ffn_change(tiny, kept, change),
                                   embed_with_ffn_change(tiny, fresh, change), rtol=0,
                                   atol=1e-6)
    assert bench.doc_states(1, ["a text not in the corpus"]) is None
