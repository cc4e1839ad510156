"""NIG: equal to an independent per-step loop, complete per layer, chunking-invariant."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tiny import FAMILIES, tiny_model, tiny_model_dir

from irlens import IrlensError, load_model
from irlens.attribution import CompletenessWarning
from irlens.hooks import hook_points
from irlens.neurons import SEGMENTS, NeuronAttribution, NeuronIntegratedGradients
from irlens.neurons._naive import naive_nig

Q = ["what do cats eat", "where do salmon spawn", "stock market news today"]
D = ["cats are small carnivores that eat mice and fish",
     "salmon swim upstream to spawn in cold rivers every year in autumn",
     "the market fell"]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> None:
    scale = max(float(np.abs(b).max()), 1e-30)
    assert np.abs(a - b).max() <= tol * scale, (np.abs(a - b).max(), scale)


def _model(root, kind: str, family: str = "bert"):
    extra = {"pooling": "mean", "similarity": "dot"} if kind == "bi" else {}
    return tiny_model(root, family, kind, **extra).double()


@pytest.mark.parametrize("kind,target,rule", [
    ("cross", "both", "riemann_right"), ("cross", "query", "riemann_left"),
    ("bi", "doc", "riemann_trapezoid"), ("bi", "query", "riemann_right"),
])
def test_engine_equals_an_independent_per_step_loop(tiny_root, kind, target, rule):
    """The reference shares nothing with the engine: plain torch hooks on the HF modules,
    a Python loop over points, one autograd.grad per point."""
    model = _model(tiny_root, kind)
    output = {"output": "logit"} if kind == "cross" else {}
    # a small budget splits each 6-point path over chunks: the carry is exercised
    nig = NeuronIntegratedGradients(model, n_steps=6, target=target, rule=rule,
                                    memory_budget="60KB", **output)
    fast = nig.attribute(Q[1:], D[1:])
    slow = naive_nig(model, Q[1:], D[1:], n_steps=6, rule=rule, target=target)
    for name in ("ffn", "resid", "score", "baseline_score"):
        _close(getattr(fast, name), slow[name])
    assert np.abs(fast.ffn).max() > 0 and np.abs(fast.attn).max() > 0


def test_chunking_batching_and_pair_order_do_not_change_results(tiny_root):
    model = _model(tiny_root, "cross")
    results = [NeuronIntegratedGradients(model, n_steps=6, memory_budget=b).attribute(Q, D)
               for b in ("20KB", "200KB", None)]
    for other in results[1:]:
        _close(other.ffn, results[0].ffn, 1e-9)
        _close(other.attn, results[0].attn, 1e-9)
    flipped = NeuronIntegratedGradients(model, n_steps=6).attribute(Q[::-1], D[::-1])
    _close(flipped.ffn[::-1], results[0].ffn, 1e-9)


def test_a_bare_string_pair_is_one_pair(tiny_root):
    model = _model(tiny_root, "cross")
    nig = NeuronIntegratedGradients(model, n_steps=3)
    one = nig.attribute("abc", "xyz")
    assert len(one) == 1
    _close(one.ffn, nig.attribute(["abc"], ["xyz"]).ffn, 1e-12)


def test_parameters_are_frozen_during_the_pass_and_restored(tiny_root):
    model = _model(tiny_root, "cross")
    model.requires_grad_(True)
    seen = []
    body = model.model.base_model
    handle = body.register_forward_hook(
        lambda *_: seen.append(any(p.requires_grad for p in model.parameters())))
    try:
        NeuronIntegratedGradients(model, n_steps=3).attribute(Q, D)
    finally:
        handle.remove()
    assert seen and not any(seen)  # autograd saved no inputs for weight gradients
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_output_sum_equals_score_change_within_quadrature_error(tiny_root, family):
    model = tiny_model(tiny_root, family, "bi", pooling="mean", similarity="dot").double()
    gaps = []
    for steps in (5, 33):
        res = NeuronIntegratedGradients(model, n_steps=steps, rule="riemann_trapezoid",
                                        gap_tolerance=1e9).attribute(Q, D)
        gaps.append(np.abs(res.completeness_gap).max())
        assert res.completeness_gap.shape == (3, 2)
    assert np.abs(res.delta).min() > 1e-3
    # second-order rule: 8x the intervals shrinks the gap ~64x; allow slack
    assert gaps[1] < gaps[0] / 10
    assert gaps[1] < 1e-2 * np.abs(res.delta).max()
    # the FFN is not a cut (residual bypass): its share is part of the change, not all
    assert np.all(np.abs(res.completeness()["ffn_share"]) < 5)


def test_per_layer_gaps_are_warned_with_the_right_fix(tiny_root):
    model = _model(tiny_root, "bi")
    with pytest.warns(CompletenessWarning, match=r"NIG completeness gap above 1.0% .* "
                      r"layer\(s\) .*raise n_steps or use rule='riemann_trapezoid'"):
        NeuronIntegratedGradients(model, n_steps=3).attribute(Q, D)
    with pytest.warns(CompletenessWarning) as caught:
        NeuronIntegratedGradients(model, n_steps=3, rule="riemann_trapezoid").attribute(Q, D)
    assert all(str(w.message).endswith("; raise n_steps") for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        NeuronIntegratedGradients(model, n_steps=3, gap_tolerance=1e9).attribute(Q, D)


def test_right_rule_gap_shrinks_like_one_over_steps(tiny_root):
    model = _model(tiny_root, "bi")
    gaps = [np.abs(NeuronIntegratedGradients(model, n_steps=s, gap_tolerance=1e9)
                   .attribute(Q, D).completeness_gap).max() for s in (5, 17)]
    assert gaps[1] < gaps[0] / 2.5


def test_segments_of_a_document_path(tiny_root):
    model = _model(tiny_root, "bi")
    res = NeuronIntegratedGradients(model, n_steps=4, target="doc",
                                    gap_tolerance=1e9).attribute(Q, D)
    seg = {name: i for i, name in enumerate(SEGMENTS)}
    # only the document pass runs on the path: no query or first-[SEP] positions exist
    for name in ("query", "sep", "prefix"):
        assert np.all(res.ffn[:, :, seg[name]] == 0)
    assert np.abs(res.ffn[:, :, seg["doc"]]).max() > 0
    assert np.all(res.attn[:, :, :, seg["query"], :] == 0)
    assert res.ffn.shape == (3, 2, 6, 48) and res.attn.shape == (3, 2, 4, 6, 6)
    assert res.hook_names[0] == "layer.0.ffn.post" and res.hook_names[-1] == "layer.1.attn.probs"


def test_ffn_pre_and_post_agree_up_to_quadrature(tiny_root):
    model = _model(tiny_root, "bi")
    pre = NeuronIntegratedGradients(model, n_steps=65, ffn="pre", rule="riemann_trapezoid")
    post = NeuronIntegratedGradients(model, n_steps=65, ffn="post", rule="riemann_trapezoid")
    a, b = pre.attribute(Q, D).ffn_total, post.attribute(Q, D).ffn_total
    assert np.abs(a - b).max() < 1e-2 * np.abs(b).max()


def test_artifact_and_parquet_round_trips(tiny_root, tmp_path):
    model = _model(tiny_root, "cross")
    res = NeuronIntegratedGradients(model, n_steps=3, gap_tolerance=1e9).attribute(Q, D)
    back = NeuronAttribution.load(res.save(tmp_path / "nig"))
    assert back.manifest.model_fingerprint == model.fingerprint
    assert back.manifest.hooks[0] == "layer.0.ffn.post" and back.manifest.config["n_steps"] == 3
    np.testing.assert_array_equal(back.ffn, res.ffn)
    np.testing.assert_array_equal(back.attn, res.attn)
    np.testing.assert_array_equal(back.resid, res.resid)
    assert back.parameters == res.parameters and back.segments == SEGMENTS
    assert len(back.to_frame()) == 3 * 2 and repr(back).startswith("<NeuronAttribution 3 pairs")
    old = NeuronAttribution.from_parquet(res.to_parquet(tmp_path / "nig.parquet"))
    _close(old.ffn, res.ffn, 1e-6)
    with pytest.raises(IrlensError, match="no such NIG file"):
        NeuronAttribution.from_parquet(tmp_path / "missing.parquet")


def test_bad_input_gives_one_line_errors(tiny_root):
    cross = tiny_model(tiny_root, "bert", "cross")
    bi = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    cases = [
        (lambda: NeuronIntegratedGradients(cross, rule="middle"), "unknown rule 'middle'"),
        (lambda: NeuronIntegratedGradients(cross, output="similarity"), "unknown output"),
        (lambda: NeuronIntegratedGradients(bi, output="prob"), "use similarity"),
        (lambda: NeuronIntegratedGradients(cross, n_steps=1), "n_steps must be"),
        (lambda: NeuronIntegratedGradients(cross, memory_budget=-1), "must be positive"),
        (lambda: NeuronIntegratedGradients(cross, baseline="nope"), "unknown baseline"),
        (lambda: NeuronIntegratedGradients(cross).attribute(Q, D[:2]), "3 queries but 2"),
        (lambda: NeuronIntegratedGradients(cross).attribute([], []), "no pairs"),
        (lambda: NeuronIntegratedGradients(cross).attribute(["q"], [" "]), "empty document"),
    ]
    for call, message in cases:
        with pytest.raises(IrlensError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    dpr = load_model(str(tiny_model_dir(tiny_root, "bert", seed=1)),
                     query_model=str(tiny_model_dir(tiny_root, "bert", seed=2)), device="cpu")
    with pytest.raises(IrlensError, match="separately"):
        NeuronIntegratedGradients(dpr, target="both")
    assert all(not p.module._forward_hooks for p in hook_points(cross).values())


@pytest.mark.real
def test_real_default_model_is_complete_per_layer(default_model):
    nig = NeuronIntegratedGradients(default_model, n_steps=17, rule="riemann_trapezoid")
    res = nig.attribute(["do statins lower cholesterol"],
                        ["Statins reduce LDL cholesterol and cardiovascular events."])
    table = res.completeness()
    assert res.ffn.shape == (1, 6, 6, 1536) and res.attn.shape == (1, 6, 12, 6, 6)
    assert table["rel_gap"].max() < 0.05
