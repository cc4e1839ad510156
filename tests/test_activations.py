"""Knowledge-neuron attribution against a slow reference that shares no code with it
(plain torch hooks on the Hugging Face modules, a loop over steps), completeness, one
forward per chunk, the model left as it was, counts, the study, page, CLI and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from probe_data import open_in_chromium, write_probe_beir
from tiny import tiny_model, tiny_model_dir
from typer.testing import CliRunner

import irlens.activations.study as study_module
from irlens.activations import (
    ActivationConfig,
    ActivationCounts,
    KnowledgeNeurons,
    active_mask,
    gini,
    participation_ratio,
    run_activations,
)
from irlens.cli import app
from irlens.errors import IrlensError

pytestmark = pytest.mark.usefixtures("one_thread")

QUERIES = ["what do cats eat", "where do salmon spawn in cold rivers", "stock market news"]
DOCS = ["cats are small carnivores that eat mice and fish", "salmon swim upstream",
        "the stock market fell sharply on monday morning after the news"]


def _module(encoder, layer: int, sublayer: str, keys: str = "post"):
    block = encoder.encoder.layer[layer]
    if sublayer == "values":
        return block.output.dense
    return block.intermediate if keys == "post" else block.intermediate.dense


def reference(encoder, tokenizer, text, layer, sublayer, target, steps, keys="post"):
    """Slow IG of one layer for one text: a hook that scales the module's output by
    alpha = k/steps, one forward and ``torch.autograd.grad`` per step (right Riemann)."""
    enc = tokenizer([text], return_tensors="pt")
    module = _module(encoder, layer, sublayer, keys)
    total = 0.0
    for k in range(1, steps + 1):
        seen = {}

        def hook(_m, _i, out, alpha=k / steps, seen=seen):
            seen["clean"] = out.detach()
            seen["scaled"] = out * alpha
            return seen["scaled"]

        handle = module.register_forward_hook(hook)
        try:
            cls = encoder(**enc).last_hidden_state[:, 0]
            value = target(cls).sum()
            (grad,) = torch.autograd.grad(value, seen["scaled"])
        finally:
            handle.remove()
        total = total + (seen["clean"] * grad).sum(1)[0].double() / steps
    return total.numpy()


def zeroed_reference(encoder, tokenizer, text, layer, sublayer, target):
    """F with that layer's activation set to 0, through a plain forward hook."""
    handle = _module(encoder, layer, sublayer).register_forward_hook(
        lambda _m, _i, out: out * 0)
    try:
        with torch.no_grad():
            return float(target(encoder(**tokenizer([text], return_tensors="pt"))
                                .last_hidden_state[:, 0]).sum())
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def model(tiny_root):
    return tiny_model(tiny_root, "bert", "bi")  # CLS pooling, cosine similarity


@pytest.mark.parametrize("side,target,keys", [("query", "relevance", "post"),
                                              ("doc", "norm", "pre")])
def test_attribution_equals_the_slow_per_unit_reference(model, side, target, keys):
    texts, others = (QUERIES, DOCS) if side == "query" else (DOCS, QUERIES)
    partners = model.encode_docs(others) if side == "query" else model.encode_queries(others)
    kn = KnowledgeNeurons(model, n_steps=6, keys=keys, target=target)
    out = kn.attribute(texts, side, partners if target == "relevance" else None)
    encoder = model.query_encoder if side == "query" else model.doc_encoder
    for i, text in enumerate(texts):
        if target == "relevance":
            def fn(cls, i=i):
                return F.cosine_similarity(cls, partners[i][None], dim=-1)
        else:
            def fn(cls):
                return cls.norm(dim=-1)
        for layer in range(2):
            for sub in ("keys", "values"):
                ref = reference(encoder, model.tokenizer, text, layer, sub, fn, 6, keys)
                scale = np.abs(ref).max()
                assert scale > 0
                np.testing.assert_allclose(out[sub][i, layer], ref, atol=1e-5 * scale)


def test_attributions_are_complete_at_high_step_counts(model):
    partners = model.encode_docs(DOCS)
    kn = KnowledgeNeurons(model, n_steps=24, rule="gausslegendre")
    out = kn.attribute(QUERIES, "query", partners)
    for i, text in enumerate(QUERIES):
        def fn(cls, i=i):
            return F.cosine_similarity(cls, partners[i][None], dim=-1)

        with torch.no_grad():
            full = float(fn(model.query_encoder(**model.tokenizer([text], return_tensors="pt"))
                            .last_hidden_state[:, 0]))
        assert out["score"][i] == pytest.approx(full, abs=1e-6)
        for s, sub in enumerate(("keys", "values")):
            for layer in range(2):
                zero = zeroed_reference(model.query_encoder, model.tokenizer, text, layer, sub,
                                        fn)
                assert out["zeroed"][i, s, layer] == pytest.approx(zero, abs=1e-6)
                gap = out[sub][i, layer].sum() - (full - zero)
                assert abs(gap) < 1e-4 * max(abs(full - zero), 1e-3)


def test_one_forward_reads_every_layer_step_and_example(model):
    same = ["cats eat mice and fish", "dogs eat meat and bones", "birds eat seeds and worms"]
    calls = []
    handle = model.doc_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        kn = KnowledgeNeurons(model, n_steps=5, target="norm", memory_budget="64GB",
                              passes="one")
        batched = kn.attribute(same, "doc")
        assert len(calls) == 1  # 3 examples x 2 sublayers x 2 layers x (5 steps + 1) + 3
        per_layer = KnowledgeNeurons(model, n_steps=5, target="norm", memory_budget="64GB",
                                     passes="per-layer").attribute(same, "doc")
        assert len(calls) == 1 + 2  # one pass per layer, examples and steps batched
    finally:
        handle.remove()
    for key in ("keys", "values", "score", "zeroed"):
        np.testing.assert_array_equal(per_layer[key], batched[key])
    # 1 byte: one row per chunk
    alone = KnowledgeNeurons(model, n_steps=5, target="norm", memory_budget=1).attribute(
        same[:1], "doc")
    for key in ("keys", "values", "score", "zeroed"):  # batch and chunk invariance
        np.testing.assert_allclose(batched[key][:1], alone[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family,keys,rule,target,side", [
    ("bert", "post", "riemann_right", "relevance", "query"),  # alpha=1: the clean gradient
    ("bert", "post", "gausslegendre", "relevance", "doc"),
    ("bert", "pre", "riemann_right", "relevance", "query"),
    ("bert", "pre", "gausslegendre", "norm", "doc"),
    ("roberta", "post", "riemann_right", "norm", "query"),
    ("electra", "pre", "gausslegendre", "relevance", "doc")])
def test_suffix_path_equals_the_hook_path(tiny_root, family, keys, rule, target, side):
    """The suffix runner (own code from each layer's FFN output upwards) against the hook
    path (a full forward with the layer scaled through hooks), mean pooling so that the
    norm target is not constant."""
    model = tiny_model(tiny_root, family, "bi", pooling="mean")
    texts, others = (QUERIES, DOCS) if side == "query" else (DOCS, QUERIES)
    encode = model.encode_docs if side == "query" else model.encode_queries
    partners = encode(others) if target == "relevance" else None
    kw = dict(n_steps=5, rule=rule, keys=keys, target=target)
    fast = KnowledgeNeurons(model, passes="suffix", **kw)
    assert KnowledgeNeurons(model, **kw).passes == "suffix"  # the CPU default
    slow = KnowledgeNeurons(model, passes="per-layer", **kw).attribute(texts, side, partners)
    for budget in ("2GB", 1):  # one chunk; one row per chunk
        fast.budget = KnowledgeNeurons(model, memory_budget=budget).budget
        out = fast.attribute(texts, side, partners)
        for key in ("keys", "values", "score", "zeroed"):
            scale = np.abs(slow[key]).max()
            assert scale > 1e-4
            np.testing.assert_allclose(out[key], slow[key], rtol=0, atol=1e-6 * scale)


def test_suffix_path_runs_the_layers_below_once_per_chunk(model, monkeypatch):
    """Layer 0 runs only in the clean pass (once per chunk of examples), never per row;
    the top layer runs in the clean pass and in layer 0's suffix passes."""
    import irlens.activations.attribution as attribution

    # the counting hooks would make the suffix path refuse to run (an attached hook may
    # be an edit it would bypass); these only count
    monkeypatch.setattr(attribution, "unsupported", lambda *_a: None)
    same = ["cats eat mice and fish", "dogs eat meat and bones", "birds eat seeds and worms"]
    layers = model.doc_encoder.encoder.layer
    calls = {0: 0, 1: 0}
    handles = [layers[i].register_forward_pre_hook(
        lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1)) for i in calls]
    try:
        kn = KnowledgeNeurons(model, n_steps=5, target="norm", memory_budget="64GB",
                              passes="suffix")
        kn.attribute(same, "doc")
        # one chunk: the clean pass, then for layer 0 the scaled rows (3 examples x 2
        # sublayers x 4 nodes below alpha=1) in one pass and the zeroed rows in another
        assert calls == {0: 1, 1: 1 + 2}
        kn.budget = 1  # one row per chunk: one clean pass per example, still not per row
        calls.update({0: 0, 1: 0})
        kn.attribute(same, "doc")
        assert calls == {0: 3, 1: 3 * (1 + 2 * 4 + 1)}
    finally:
        for handle in handles:
            handle.remove()


def test_suffix_path_refuses_what_it_cannot_run_and_auto_falls_back(tiny_root, model):
    distil = tiny_model(tiny_root, "distilbert", "bi")
    with pytest.raises(IrlensError, match=r"^passes='suffix' cannot run this model \(model "
                       r"type 'distilbert' is not BERT-like\); use passes='per-layer'$"):
        KnowledgeNeurons(distil, passes="suffix")
    assert KnowledgeNeurons(distil).passes == "per-layer"
    from irlens.hooks import ablate

    kn = KnowledgeNeurons(model, n_steps=3, target="norm")
    with ablate(model, "layer.0.ffn.post", units=[0, 1], side="doc"):
        with pytest.raises(IrlensError, match="hooks are attached to the tower"):
            KnowledgeNeurons(model, n_steps=3, target="norm", passes="suffix").attribute(
                DOCS, "doc")
        auto = kn.attribute(DOCS, "doc")  # falls back to the hook path under the edit
        hooked = KnowledgeNeurons(model, n_steps=3, target="norm",
                                  passes="per-layer").attribute(DOCS, "doc")
    for key in ("keys", "values", "score", "zeroed"):
        np.testing.assert_array_equal(auto[key], hooked[key])


@pytest.mark.parametrize("passes,fail_at", [("suffix", 1), ("suffix", 3), ("per-layer", 1)])
def test_model_is_left_as_it_was_after_an_exception(model, monkeypatch, passes, fail_at):
    """An error in the clean pass (call 1) or inside a suffix pass (call 3) leaves no hook,
    no frozen parameter and no changed normalisation behind."""
    import irlens.activations.attribution as attribution

    before = model.encode_queries(QUERIES)
    flags = [p.requires_grad for p in model.parameters()]
    normalize = model.normalize
    calls = []
    real = attribution._target_fn

    def boom(*a, **k):
        fn = real(*a, **k)

        def target(pooled):
            calls.append(1)
            if len(calls) == fail_at:
                raise RuntimeError("mid-run")
            return fn(pooled)
        return target

    monkeypatch.setattr(attribution, "_target_fn", boom)
    with pytest.raises(RuntimeError, match="mid-run"):
        KnowledgeNeurons(model, n_steps=3, target="norm", passes=passes).attribute(
            QUERIES, "query")
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.normalize == normalize and model.active_edits == []
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(model.encode_queries(QUERIES), before)


def test_active_units_gini_and_participation_ratio_by_hand():
    attr = np.array([[[1.0, 0.05, 0.2], [0.5, -3.0, 0.09]],
                     [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = active_mask(attr, 0.1)
    assert mask[0].tolist() == [[True, False, True], [True, False, False]]
    assert not mask[1].any()  # no positive attribution: nothing active
    counts = np.array([0, 0, 0, 4])
    assert gini(counts) == pytest.approx(0.75)  # (n-1)/n for one unit holding everything
    assert gini(np.array([2, 2, 2])) == 0.0
    rng = np.random.default_rng(0)
    c = rng.integers(0, 9, 40).astype(float)
    slow = np.abs(c[:, None] - c[None]).sum() / (2 * len(c) ** 2 * c.mean())
    assert gini(c) == pytest.approx(slow)
    assert participation_ratio(np.array([3, 3, 3, 0])) == pytest.approx(3.0)
    assert participation_ratio(np.array([5, 0, 0])) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    return write_probe_beir(tmp_path_factory.mktemp("act-beir"), n_queries=6)


def test_study_counts_resumes_and_opens_in_chromium(tiny_root, beir, tmp_path, monkeypatch):
    a, b = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    config = ActivationConfig(n_examples=4, n_steps=3, shard_size=2, max_length=32)
    counts = run_activations([str(a), str(b)], beir, tmp_path / "o", config, progress=False)
    frame = ActivationCounts.load(tmp_path / "o" / "counts").to_frame()
    assert len(frame) == 2 * 2 * 2 * 2  # models x sides x sublayers x layers
    assert np.isfinite(frame["completeness_gap"]).all()  # 3 Riemann steps: not small
    assert (frame["active_per_example"] >= 1).all()  # the top unit is always active
    diff = counts.difference()
    assert len(diff) == 8
    calls = []
    real = study_module._shard_job
    monkeypatch.setattr(study_module, "_shard_job",
                        lambda *a, **k: (lambda: calls.append(1) or real(*a, **k)()))
    again = run_activations([str(a), str(b)], beir, tmp_path / "o", config, progress=False)
    assert calls == []
    assert again.rows == counts.rows
    seen = open_in_chromium(tmp_path / "o" / "activations.html")
    assert seen["errors"] == [] and all(ok and w > 0 for ok, w in seen["images"])
    assert "query tower, keys" in seen["text"]


def test_cli_activations_json_and_bad_input(tiny_root, beir, tmp_path):
    a, b = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    runner = CliRunner()
    res = runner.invoke(app, ["activations", "-m", str(a), "-m", str(b), "-d", str(beir),
                              "-o", str(tmp_path / "c"), "--examples", "2", "--steps", "2",
                              "--sides", "doc", "--sublayers", "values", "--json",
                              "--max-length", "32"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 2 * 2 and {r["sublayer"] for r in rows} == {"values"}
    res = runner.invoke(app, ["activations", "-m", str(a), "-d", str(beir), "-o",
                              str(tmp_path / "d")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0
    assert "give --model twice" in res.output


def test_bad_input_is_one_line_and_early(tiny_root, tmp_path):
    cross = tiny_model_dir(tiny_root, kind="cross")
    with pytest.raises(IrlensError, match="cross-encoder: it has no query and document"):
        run_activations(["default", str(cross)], tmp_path / "none", tmp_path / "o")
    with pytest.raises(IrlensError, match="compares 2 models but got 1"):
        run_activations(["default"], tmp_path / "none", tmp_path / "o")
    with pytest.raises(IrlensError, match="unknown target"):
        ActivationConfig(target="logit").check()
    with pytest.raises(IrlensError, match="unknown side"):
        ActivationConfig(sides=("both",)).check()
    with pytest.raises(IrlensError, match="^memory budget 'lots' not understood"):
        ActivationConfig(memory_budget="lots").check()
    folder = write_probe_beir(tmp_path / "d")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(IrlensError, match="no query with a relevant document"):
        run_activations([str(tiny_model_dir(tiny_root)), str(tiny_model_dir(tiny_root))],
                        folder, tmp_path / "o2", ActivationConfig(split="dev"))


def test_attribute_refuses_missing_partners(model):
    with pytest.raises(IrlensError, match="needs one partner vector per text"):
        KnowledgeNeurons(model).attribute(QUERIES, "query")


@pytest.mark.real
def test_real_default_model_is_complete_on_nfcorpus(default_model, data_dir):
    """All-MiniLM-L6-v2 (mean pooling, cosine): per-layer completeness on real passages
    with Gauss-Legendre, and the relevance target equals the model's own score."""
    from irlens.activations import examples_for
    from irlens.data import load_dataset

    dataset = load_dataset(data_dir / "nfcorpus")
    pairs = examples_for(dataset, 2, seed=0)
    queries = [dataset.queries[q] for q, _ in pairs]
    docs = dataset.doc_texts([d for _, d in pairs])
    saved, default_model.max_length = default_model.max_length, 64
    try:
        kn = KnowledgeNeurons(default_model, n_steps=12, rule="gausslegendre")
        out = kn.attribute(docs, "doc", default_model.encode_queries(queries))
        scores = default_model.score(queries, docs).detach().numpy()
    finally:
        default_model.max_length = saved
    np.testing.assert_allclose(out["score"], scores, atol=1e-5)
    for s, sub in enumerate(("keys", "values")):
        gap = out[sub].sum(-1) - (out["score"][:, None] - out["zeroed"][:, s])
        assert np.abs(gap).max() < 0.02 * np.abs(out["score"][:, None]
                                                 - out["zeroed"][:, s]).max()


def test_two_tower_pair_attributes_each_side_in_its_own_tower(tiny_root):
    """The DPR code path (DOC+QUERY) on tiny BERT encoders: query attributions come from
    the query encoder, passage attributions from the passage encoder."""
    from irlens.probing import load_encoder

    doc_dir, query_dir = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    pair = load_encoder(f"{doc_dir}+{query_dir}")
    # the relevance target: with CLS pooling, the norm after a random model's final
    # LayerNorm is constant (sqrt(hidden)), and its attributions are rounding noise
    partners = {"query": pair.encode_docs(DOCS), "doc": pair.encode_queries(QUERIES)}
    texts = {"query": QUERIES, "doc": DOCS}
    kn = KnowledgeNeurons(pair, n_steps=3)
    assert kn.passes == "suffix" and pair.similarity_name == "dot"
    for side, encoder in (("query", pair.query_encoder), ("doc", pair.doc_encoder)):
        out = kn.attribute(texts[side][:1], side, partners[side][:1])
        ref = reference(encoder, pair.tokenizer, texts[side][0], 1, "keys",
                        lambda cls, p=partners[side][0]: (cls * p).sum(-1), 3)  # DPR: dot
        assert np.abs(ref).max() > 1e-4
        np.testing.assert_allclose(out["keys"][0, 1], ref, atol=1e-5 * np.abs(ref).max())
    # the suffix path against the hook path in each tower
    for side in ("query", "doc"):
        kw = dict(n_steps=4, rule="gausslegendre")
        fast = KnowledgeNeurons(pair, passes="suffix", **kw).attribute(texts[side], side,
                                                                       partners[side])
        hooked = KnowledgeNeurons(pair, passes="per-layer", **kw).attribute(
            texts[side], side, partners[side])
        for key in ("keys", "values", "score", "zeroed"):
            np.testing.assert_allclose(fast[key], hooked[key], rtol=0,
                                       atol=1e-6 * np.abs(hooked[key]).max())


@pytest.mark.real
def test_real_default_model_suffix_path_equals_the_hook_path(default_model, data_dir):
    """All-MiniLM-L6-v2 (six layers, mean pooling): the suffix path against the hook path
    on a real SciFact query, Dai et al.'s right Riemann sum."""
    from irlens.activations import examples_for
    from irlens.data import load_dataset

    dataset = load_dataset(data_dir / "scifact")
    [(q, d)] = examples_for(dataset, 1, seed=0)
    partners = default_model.encode_docs(dataset.doc_texts([d]))
    kw = dict(n_steps=4, rule="riemann_right")
    fast = KnowledgeNeurons(default_model, passes="suffix", **kw).attribute(
        [dataset.queries[q]], "query", partners)
    slow = KnowledgeNeurons(default_model, passes="per-layer", **kw).attribute(
        [dataset.queries[q]], "query", partners)
    for key in ("keys", "values", "score", "zeroed"):
        np.testing.assert_allclose(fast[key], slow[key], rtol=0,
                                   atol=2e-6 * np.abs(slow[key]).max())
