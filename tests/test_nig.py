"""NIG engine: equal to the slow per-step reference, complete per layer, chunking-invariant."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import FAMILIES, tiny_model, tiny_model_dir

from irlens import IrlensError, load_model
from irlens.hooks import hook_points
from irlens.neurons import SEGMENTS, NeuronAttribution, NeuronIntegratedGradients
from irlens.neurons._naive import naive_nig

Q = ["what do cats eat", "where do salmon spawn", "stock market news today"]
D = ["cats are small carnivores that eat mice and fish",
     "salmon swim upstream to spawn in cold rivers every year in autumn",
     "the market fell"]


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> None:
    scale = max(float(np.abs(b).max()), 1e-30)
    assert np.abs(a - b).max() <= tol * scale, (np.abs(a - b).max(), scale)


def _model(root, kind: str, family: str = "bert"):
    extra = {"pooling": "mean", "similarity": "dot"} if kind == "bi" else {}
    return tiny_model(root, family, kind, **extra).double()


@pytest.mark.parametrize("kind,target,rule", [
    ("cross", "both", "right"), ("cross", "query", "left"), ("bi", "doc", "trapezoid"),
    ("bi", "both", "right"),
])
def test_engine_equals_one_backward_per_step_reference(tiny_root, kind, target, rule):
    model = _model(tiny_root, kind)
    output = {"output": "logit"} if kind == "cross" else {}
    # max_rows=3 splits each 6-point path into blocks: the carry across blocks is exercised
    engine = NeuronIntegratedGradients(model, n_steps=5, target=target, rule=rule,
                                       max_rows=3, **output)
    fast = engine.attribute(Q[1:], D[1:])
    slow = naive_nig(engine, Q[1:], D[1:], batch_size=2)
    for name in ("ffn", "attn", "resid", "score", "baseline_score"):
        _close(getattr(fast, name), getattr(slow, name))
    assert np.abs(fast.ffn).max() > 0 and np.abs(fast.attn).max() > 0


def test_chunking_and_pair_order_do_not_change_results(tiny_root):
    model = _model(tiny_root, "cross")
    results = [NeuronIntegratedGradients(model, n_steps=5, max_rows=rows).attribute(Q, D)
               for rows in (1, 4, 100)]
    for other in results[1:]:
        _close(other.ffn, results[0].ffn, 1e-9)
        _close(other.attn, results[0].attn, 1e-9)
    flipped = NeuronIntegratedGradients(model, n_steps=5).attribute(Q[::-1], D[::-1])
    _close(flipped.ffn[::-1], results[0].ffn, 1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_output_sum_equals_score_change_within_quadrature_error(tiny_root, family):
    model = tiny_model(tiny_root, family, "bi", pooling="mean", similarity="dot").double()
    gaps = []
    for steps in (4, 32):
        res = NeuronIntegratedGradients(model, n_steps=steps, rule="trapezoid").attribute(Q, D)
        gaps.append(np.abs(res.completeness_gap).max())
        assert res.completeness_gap.shape == (3, 2)
    assert np.abs(res.delta).min() > 1e-3
    # second-order rule: 8x the steps shrinks the gap ~64x; allow slack
    assert gaps[1] < gaps[0] / 10
    assert gaps[1] < 1e-2 * np.abs(res.delta).max()
    # the FFN is not a cut (residual bypass): its share is part of the change, not all
    assert np.all(np.abs(res.completeness()["ffn_share"]) < 5)


def test_right_rule_gap_shrinks_like_one_over_steps(tiny_root):
    model = _model(tiny_root, "bi")
    gaps = [np.abs(NeuronIntegratedGradients(model, n_steps=s).attribute(Q, D)
                   .completeness_gap).max() for s in (4, 16)]
    assert gaps[1] < gaps[0] / 2.5


def test_segments_of_a_document_path(tiny_root):
    model = _model(tiny_root, "bi")
    res = NeuronIntegratedGradients(model, n_steps=4, target="doc").attribute(Q, D)
    seg = {name: i for i, name in enumerate(SEGMENTS)}
    # only the document pass runs on the path: no query or first-[SEP] positions exist
    assert np.all(res.ffn[:, :, seg["query"]] == 0) and np.all(res.ffn[:, :, seg["sep"]] == 0)
    assert np.abs(res.ffn[:, :, seg["doc"]]).max() > 0
    assert np.all(res.attn[:, :, :, seg["query"], :] == 0)
    assert res.ffn.shape == (3, 2, 5, 48) and res.attn.shape == (3, 2, 4, 5, 5)
    assert res.hook_names[0] == "layer.0.ffn.post" and res.hook_names[-1] == "layer.1.attn.probs"


def test_ffn_pre_and_post_agree_up_to_quadrature(tiny_root):
    model = _model(tiny_root, "bi")
    pre = NeuronIntegratedGradients(model, n_steps=64, ffn="pre", rule="trapezoid")
    post = NeuronIntegratedGradients(model, n_steps=64, ffn="post", rule="trapezoid")
    a, b = pre.attribute(Q, D).ffn_total, post.attribute(Q, D).ffn_total
    assert np.abs(a - b).max() < 1e-2 * np.abs(b).max()


def test_parquet_round_trip(tiny_root, tmp_path):
    model = _model(tiny_root, "cross")
    res = NeuronIntegratedGradients(model, n_steps=3).attribute(Q, D)
    back = NeuronAttribution.from_parquet(res.to_parquet(tmp_path / "nig.parquet"))
    assert back.parameters == res.parameters and back.hook_names == res.hook_names
    _close(back.ffn, res.ffn, 1e-6)
    _close(back.attn, res.attn, 1e-6)
    np.testing.assert_allclose(back.resid, res.resid)
    assert '"n_pairs": 3' in res.to_json()
    with pytest.raises(IrlensError, match="no such NIG file"):
        NeuronAttribution.from_parquet(tmp_path / "missing.parquet")


def test_bad_input_gives_one_line_errors(tiny_root):
    cross = tiny_model(tiny_root, "bert", "cross")
    bi = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    cases = [
        (lambda: NeuronIntegratedGradients(cross, rule="middle"), "unknown rule 'middle'"),
        (lambda: NeuronIntegratedGradients(cross, output="similarity"), "unknown output"),
        (lambda: NeuronIntegratedGradients(bi, output="prob"), "use similarity"),
        (lambda: NeuronIntegratedGradients(cross, n_steps=0), "n_steps must be"),
        (lambda: NeuronIntegratedGradients(cross, memory_gb=-1), "memory_gb must be"),
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
        NeuronIntegratedGradients(dpr, target="both").attribute(Q, D)
    # a failed pass leaves no hook behind
    assert all(not p.module._forward_hooks for p in hook_points(cross).values())


@pytest.mark.real
def test_real_default_model_is_complete_per_layer(default_model):
    engine = NeuronIntegratedGradients(default_model, n_steps=16, rule="trapezoid")
    res = engine.attribute(["do statins lower cholesterol"],
                           ["Statins reduce LDL cholesterol and cardiovascular events."])
    table = res.completeness()
    assert res.ffn.shape == (1, 6, 5, 1536) and res.attn.shape == (1, 6, 12, 5, 5)
    assert table["rel_gap"].max() < 0.05
