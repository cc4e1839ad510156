"""The path engine and every method built on it, table-driven.

For every method (IG, SIG, occlusion, gradient x input, random, NIG): parameters and
hooks restored after an exception raised inside a forward, batch invariance, artefact
round trip, completeness against a plain model call, and (real model) peak memory
within the budget. Plus the engine's own fixes: budgets for baseline forwards, the
random control's per-pair draws, prompt prefixes, and activation-space paths.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tiny import tiny_model

from irlens.attribution import (
    GradientXInput,
    IntegratedGradients,
    Occlusion,
    RandomAttribution,
    SequentialIntegratedGradients,
    TokenAttribution,
    make_method,
    measure_faithfulness,
)
from irlens.errors import IrlensError
from irlens.models import Batch, Segment
from irlens.neurons import NeuronAttribution, NeuronIntegratedGradients
from irlens.paths import Engine, Rows, build_problem, quadrature

QUERIES = ["what do cats eat", "why do dogs bark at night", "salmon", "stock news"]
DOCS = ["cats are carnivores that eat mice and small birds.", "dogs bark to warn owners",
        "salmon swim upstream to spawn in cold rivers", "the market fell today"]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

METHODS = {
    "ig": lambda m, **kw: IntegratedGradients(m, n_steps=8, gap_tolerance=1e9, **kw),
    "sig": lambda m, **kw: SequentialIntegratedGradients(m, n_steps=3, gap_tolerance=1e9,
                                                         **kw),
    "occlusion": lambda m, **kw: Occlusion(m, **kw),
    "gxi": lambda m, **kw: GradientXInput(m, **kw),
    "random": lambda m, **kw: RandomAttribution(m, seed=5, **kw),
    "nig": lambda m, **kw: NeuronIntegratedGradients(m, n_steps=4, gap_tolerance=1e9, **kw),
}


@pytest.fixture(scope="module")
def cross(tiny_root):
    return tiny_model(tiny_root, "bert", "cross")


@pytest.fixture(scope="module")
def bi(tiny_root):
    return tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")


def _arrays(result) -> list[np.ndarray]:
    if isinstance(result, NeuronAttribution):
        return [result.ffn, result.attn, result.score]
    return [np.array([r.scores[:len(r.tokens)] for r in result][0]),
            np.array([r.score for r in result])]


def _first(result):
    return result.subset([0]) if isinstance(result, NeuronAttribution) else result[:1]


# -- table-driven over every method ---------------------------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_flags_and_hooks_restored_after_an_error_inside_a_forward(cross, name):
    cross.requires_grad_(True)
    layer = cross.model.base_model.encoder.layer[1]
    calls = []

    def boom(*_):
        calls.append(1)
        raise RuntimeError("boom")  # inside the first forward: parameters frozen, NIG's
        # capture hooks (and the eager attention probes) in place

    before = {id(m): dict(m._forward_hooks) for m in cross.modules()}
    impl = cross.model.config._attn_implementation
    handle = layer.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            METHODS[name](cross).attribute(QUERIES, DOCS)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert all(p.requires_grad for p in cross.parameters())
    assert {id(m): dict(m._forward_hooks) for m in cross.modules()} == before
    assert cross.active_edits == [] and cross.model.config._attn_implementation == impl


@pytest.mark.parametrize("name", list(METHODS))
def test_one_pair_alone_equals_the_same_pair_in_a_batch_of_four(cross, bi, name):
    for model in (cross, bi):
        alone = METHODS[name](model).attribute(QUERIES[0], DOCS[0])
        batch = METHODS[name](model).attribute(QUERIES, DOCS)
        for a, b in zip(_arrays(alone), _arrays(_first(batch)), strict=True):
            np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(METHODS))
def test_artefact_round_trip(bi, name, tmp_path):
    result = METHODS[name](bi).attribute(QUERIES[:2], DOCS[:2])
    if isinstance(result, NeuronAttribution):
        back = NeuronAttribution.load(result.save(tmp_path / name))
        np.testing.assert_array_equal(back.ffn, result.ffn)
        np.testing.assert_array_equal(back.attn, result.attn)
        assert back.manifest.model_fingerprint == bi.fingerprint
        return
    back = TokenAttribution.load(result[1].save(tmp_path / name))
    assert back.to_dict() == result[1].to_dict()  # NaN gaps: compare as JSON
    assert back.manifest.model_fingerprint == bi.fingerprint
    assert back.manifest.config["method"] == repr(METHODS[name](bi))
    frame = back.to_frame()
    assert frame["score"].tolist() == result[1].scores and len(frame) == len(back.tokens)
    assert repr(back).startswith(f"<TokenAttribution {name} ")


def _plain_score(model, query: str, doc: str, masked: set[int], side: str | None = None):
    """F with the token positions ``masked`` (of ``side``) replaced by [MASK]: plain
    tokenizer + model call, no irlens path code."""
    mask = model.tokenizer.mask_token_id
    with torch.no_grad():
        if hasattr(model, "model"):
            b = model.tokenize([query], [doc])
            ids = b.input_ids.clone()
            ids[0, sorted(masked)] = mask
            return float(model.forward_embeds(Batch(ids, b.attention_mask, b.segments,
                                                    b.token_type_ids)))
        vec = {}
        for s, text in (("query", query), ("doc", doc)):
            b = model.tokenize([text], s)
            ids = b.input_ids.clone()
            if s == side:
                ids[0, sorted(masked)] = mask
            vec[s] = model.forward_embeds(Batch(ids, b.attention_mask, b.segments,
                                                b.token_type_ids, s))
        return float(model.pair_similarity(vec["query"], vec["doc"]))


@pytest.mark.parametrize("name", ["ig", "sig", "occlusion", "nig"])
def test_completeness_against_plain_model_calls(cross, name):
    q, d = QUERIES[0], DOCS[0]
    b = cross.tokenize([q], [d])
    docs = set((b.segments[0] == Segment.DOC).nonzero().flatten().tolist())
    f_x = _plain_score(cross, q, d, set())
    if name == "nig":  # the layer outputs are cuts: each sums to F(x) - F(x')
        res = NeuronIntegratedGradients(cross, n_steps=65, target="doc", baseline="mask",
                                        rule="riemann_trapezoid", output="logit").attribute(q, d)
        delta = f_x - _plain_score(cross, q, d, docs)
        np.testing.assert_allclose(res.resid[0], delta, rtol=5e-3)
        return
    method = make_method(name, cross, n_steps=64, target="doc", memory_budget=None)
    [r] = method.attribute(q, d)
    if name == "ig":  # all document tokens together
        assert sum(r.scores) == pytest.approx(f_x - _plain_score(cross, q, d, docs), rel=1e-3)
    else:  # SIG's per-token paths and occlusion: one token at a time
        for i in sorted(docs):
            ref = f_x - _plain_score(cross, q, d, {i})
            assert r.scores[i] == pytest.approx(ref, abs=1e-4 if name == "sig" else 1e-6)


@pytest.mark.parametrize("name", list(METHODS))
def test_repr_round_trips_through_make_method(cross, name):
    if name == "nig":
        nig = METHODS[name](cross)
        assert repr(nig).startswith("nig(n_steps=4,") and "rule=riemann_right" in repr(nig)
        return
    method = METHODS[name](cross, target="doc", memory_budget="64MB")
    again = make_method(repr(method), cross)
    assert again.get_params() == method.get_params() and repr(again) == repr(method)


def test_make_method_parses_the_short_spec(cross):
    ig = make_method("ig(baseline=pad, rule=riemann_left, n_steps=7)", cross)
    assert (str(ig.baseline), ig.rule, ig.n_steps) == ("pad", "riemann_left", 7)
    assert repr(make_method("ig", cross)) == "ig(baseline=mask, rule=gausslegendre, n_steps=50)"
    assert make_method("sig-pad", cross, n_steps=3, seed=1).n_steps == 3
    for spec, message in [("ig(n_steps)", "is not key=value"), ("lime", "unknown attribution"),
                          ("gxi-pad", "takes no baseline"), ("ig(foo=1)", "takes no foo"),
                          ("ig(n_steps=0)", "n_steps must be")]:
        with pytest.raises(IrlensError, match=message):
            make_method(spec, cross)


# -- fixes ----------------------------------------------------------------------------------

def _rows_per_forward(model):
    rows = []
    body = model.model.base_model if hasattr(model, "model") else model.doc_encoder
    handle = body.register_forward_hook(lambda _m, args, kwargs, _o: rows.append(
        (kwargs.get("inputs_embeds", kwargs.get("input_ids"))).shape[0]), with_kwargs=True)
    return rows, handle


@pytest.mark.parametrize("name", ["sig", "occlusion", "gxi", "random"])
def test_baseline_and_control_forwards_respect_the_memory_budget(bi, name):
    rows, handle = _rows_per_forward(bi)
    try:  # a budget of one row-token: every forward holds one row
        METHODS[name](bi, target="both", memory_budget="1KB").attribute(QUERIES, DOCS)
    finally:
        handle.remove()
    assert rows and max(rows) == 1


def test_random_scores_do_not_depend_on_the_batch_and_differ_between_pairs(bi):
    rand = RandomAttribution(bi, seed=3, target="doc")
    [alone] = rand.attribute(QUERIES[1], DOCS[1])
    batch = rand.attribute(QUERIES, DOCS)
    assert alone.scores == batch[1].scores
    # two groups of one pair each (as faithfulness studies run them) with equal lengths
    [a] = rand.attribute("cats", "cats eat mice")
    [b] = rand.attribute("dogs", "dogs eat meat")
    assert len(a.tokens) == len(b.tokens) and a.scores != b.scores
    assert rand.attribute("cats", "cats eat mice")[0].scores == a.scores


def test_prompt_prefixes_get_their_own_segment_and_never_move(tiny_root):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    model.query_prefix, model.doc_prefix = "query: ", "passage: "
    q, d = "what do cats eat", "cats eat mice"
    [r] = IntegratedGradients(model, n_steps=32, target="both").attribute(q, d)
    prefix = [i for i, s in enumerate(r.segments) if s == Segment.PREFIX]
    assert [r.tokens[i] for i in prefix] == ["query", ":", "passage", ":"]
    assert all(r.scores[i] == 0.0 for i in prefix)
    # completeness against a plain call with every explained token masked, prefix real
    enc = {s: model.tokenize([t], s) for s, t in (("query", q), ("doc", d))}
    mask = model.tokenizer.mask_token_id
    with torch.no_grad():
        vec = {}
        for s, b in enc.items():
            ids = b.input_ids.clone()
            n_pre = len(model.tokenizer((model.query_prefix if s == "query"
                                         else model.doc_prefix), add_special_tokens=False)
                        ["input_ids"])
            ids[0, 1 + n_pre:-1] = mask
            vec[s] = model.forward_embeds(Batch(ids, b.attention_mask, b.segments,
                                                b.token_type_ids, s))
        base = float(model.pair_similarity(vec["query"], vec["doc"]))
    assert r.baseline_score == pytest.approx(base, abs=1e-5)
    faith = measure_faithfulness(model, r, top_k=0.5)
    assert faith.n_explained == len([w for w in r.word_ids if w >= 0]) - len(prefix)


def test_activation_path_matches_a_plain_loop_over_steps(bi):
    """Scaling layer 1's FFN activation from 0 (Dai et al. 2022) at the document tokens,
    against a loop with a plain torch forward hook and autograd.grad per step."""
    q, d = QUERIES[:2], DOCS[:2]
    problem = build_problem(bi, q, d, "doc", "mask", "dot")
    problem.add_points(["layer.1.ffn.post"])
    alphas, weights = quadrature(6, "gausslegendre")
    engine = Engine(problem, memory_budget="50KB")
    grads = engine.gradients(Rows.paths(2, alphas, weights, layer=0))[0][0]
    h, h0 = problem.streams[0].acts[0]
    ours = (grads * (h - h0)).sum(-1)
    assert engine.n_forwards > 2
    module = bi.doc_encoder.base_model.encoder.layer[1].intermediate
    for p in range(2):
        qv = bi.forward_embeds(bi.tokenize([q[p]], "query")).detach()
        b = bi.tokenize([d[p]], "doc")
        docs = (b.segments == Segment.DOC).unsqueeze(-1)
        real = {}
        handle = module.register_forward_hook(lambda _m, _i, o, real=real: real.setdefault("h", o))
        with torch.no_grad():
            bi.forward_embeds(b)
        handle.remove()
        total = torch.zeros_like(real["h"])
        for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
            leaf = torch.where(docs, a * real["h"], real["h"]).detach().requires_grad_(True)
            handle = module.register_forward_hook(lambda _m, _i, _o, leaf=leaf: leaf)
            try:
                score = (qv * bi.forward_embeds(b)).sum()
            finally:
                handle.remove()
            (g,) = torch.autograd.grad(score, leaf)
            total += w * g * real["h"] * docs
        ref = total.sum(-1)[0]
        n = ref.shape[0]
        torch.testing.assert_close(ours[p, :n], ref, atol=1e-5, rtol=1e-4)
        assert ref.abs().max() > 1e-3


def test_bad_engine_input(cross):
    problem = build_problem(cross, QUERIES[:1], DOCS[:1], "doc", "mask", "logit")
    for call, message in [
        (lambda: problem.add_points(["layer.0.attn.probs"]), "not token-major"),
        (lambda: problem.add_points(["layer.9.ffn.post"]), "unknown hook point"),
        (lambda: problem.add_points(["layer.0.ffn.post"], baseline="one"), "activation"),
        (lambda: build_problem(cross, ["q"], ["d"], "title", "mask", "logit"), "unknown target"),
        (lambda: Engine(problem, memory_budget="lots"), "not understood"),
    ]:
        with pytest.raises(IrlensError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


# -- real model: peak memory within the budget --------------------------------------------

_PEAK = textwrap.dedent("""
    import json, resource, sys, torch
    torch.set_num_threads(1)
    from irlens.models import load_model
    from irlens.attribution import make_method
    from irlens.neurons import NeuronIntegratedGradients
    name, budget = sys.argv[1], sys.argv[2]
    model = load_model("default", device="cpu")
    q = "does vitamin d supplementation reduce the risk of fractures in older adults"
    d = " ".join(["Vitamin D and calcium supplements were given to older adults in a "
                  "randomised trial and hip fractures were counted over five years."] * 6)
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096
    warm = make_method("gxi", model, target="doc").attribute(q, d)  # allocator warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    base = rss()
    if name == "nig":
        NeuronIntegratedGradients(model, n_steps=21, memory_budget=budget,
                                  gap_tolerance=1e9).attribute(q, d)
    else:
        make_method(name, model, n_steps=20, target="doc", memory_budget=budget,
                    gap_tolerance=1e9).attribute(q, d)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"base": base, "before": before, "peak": peak}))
""")


@pytest.mark.real
@pytest.mark.parametrize("name", list(METHODS))
def test_peak_memory_stays_within_the_budget_on_the_real_model(name):
    budget = 200 * 2**20
    out = subprocess.run([sys.executable, "-c", _PEAK, name, "200MB"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    used = r["peak"] - max(r["base"], r["before"])
    assert used <= budget, f"{name}: {used / 2**20:.0f} MB above the {budget / 2**20:.0f} MB budget"
    assert not math.isnan(used)
