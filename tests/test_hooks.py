"""Hook points: same names on every family, faithful captures, clean exits, ablations."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model

from irlens import IrlensError
from irlens.hooks import ablate, capture, hook_points, intervene
from irlens.models import Segment

Q = ["what do cats eat"]
D = ["cats are carnivores and eat meat such as mice and fish"]


def _irlens_hooks(model) -> int:
    """Forward hooks that irlens owns (transformers installs some of its own)."""
    return sum(
        getattr(hook, "__module__", "").startswith("irlens") or hasattr(m, "irlens_probs")
        for m in model.modules()
        for hook in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
    ) + sum(hasattr(m, "irlens_probs") for m in model.modules())


def _no_hooks_left(model) -> bool:
    return _irlens_hooks(model) == 0


def _hf_reference(model, batch):
    """A plain Hugging Face forward with eager attention, hidden states and attentions."""
    body = model.encoders()["shared"]
    saved = body.config._attn_implementation
    body.config._attn_implementation = "eager"
    try:
        return body(input_ids=batch.input_ids, output_hidden_states=True, output_attentions=True,
                    **batch.model_inputs())
    finally:
        body.config._attn_implementation = saved


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_captures_equal_a_manual_forward(tiny_root, family, kind):
    model = tiny_model(tiny_root, family, kind)
    batch = model.tokenize(Q + ["dogs"], D + ["dogs bark"]) if kind == "cross" else \
        model.tokenize(D + ["dogs bark"], "doc")
    points = hook_points(model)
    assert len(points) == 1 + 6 * 2
    with capture(model, list(points)) as cache:
        model.forward_embeds(batch)
    ref = _hf_reference(model, batch)
    torch.testing.assert_close(cache["embeddings"], ref.hidden_states[0], atol=1e-6, rtol=0)
    for i in range(2):
        torch.testing.assert_close(cache[f"layer.{i}.resid"], ref.hidden_states[i + 1],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(cache[f"layer.{i}.attn.probs"], ref.attentions[i],
                                   atol=1e-6, rtol=0)
        pre, post = cache[f"layer.{i}.ffn.pre"], cache[f"layer.{i}.ffn.post"]
        assert pre.shape[-1] == points[f"layer.{i}.ffn.pre"].units == 48
        torch.testing.assert_close(post, torch.nn.functional.gelu(pre), atol=1e-6, rtol=0)
        out_linear = points[f"layer.{i}.ffn.out"].module
        torch.testing.assert_close(cache[f"layer.{i}.ffn.out"], out_linear(post), atol=1e-6,
                                   rtol=0)
    assert _no_hooks_left(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_ablation_changes_score_and_exit_restores_bit_identical(tiny_root, family):
    model = tiny_model(tiny_root, family, "cross")
    before = model.score(Q, D).detach()
    fingerprint = model.fingerprint
    for name in ("layer.1.ffn.post", "layer.0.attn.probs", "layer.1.resid"):
        with ablate(model, name):
            assert model.fingerprint != fingerprint
            assert not torch.equal(model.score(Q, D), before)
        assert torch.equal(model.score(Q, D), before)
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, "layer.*.ffn.post"), capture(model, "layer.*.attn.probs"):
            raise RuntimeError("boom")
    assert torch.equal(model.score(Q, D), before)
    assert model.fingerprint == fingerprint and _no_hooks_left(model)
    assert model.encoders()["shared"].config._attn_implementation != "irlens_eager"


def test_exception_inside_forward_hook_still_cleans_up(tiny_root):
    model = tiny_model(tiny_root, "bert", "cross")
    before = model.score(Q, D).detach()

    def broken(act, ctx):
        raise ValueError("bad edit")

    with pytest.raises(ValueError, match="bad edit"):
        with intervene(model, {"layer.0.attn.probs": broken}):
            model.score(Q, D)
    assert torch.equal(model.score(Q, D), before) and _no_hooks_left(model)


def test_ablate_units_and_segment_positions(tiny_root):
    model = tiny_model(tiny_root, "bert", "cross")
    batch = model.tokenize(Q, D)
    with ablate(model, "layer.0.ffn.post", units=[3, 7], positions="query"), \
            capture(model, "layer.0.ffn.post") as cache:
        model.forward_embeds(batch)
    act = cache["layer.0.ffn.post"][0]
    query = batch.segments[0] == Segment.QUERY
    assert act[query][:, [3, 7]].abs().sum() == 0
    assert act[~query][:, [3, 7]].abs().sum() > 0 and act[query][:, [0, 1]].abs().sum() > 0
    with ablate(model, "layer.0.attn.probs", units=[1]), \
            capture(model, "layer.0.attn.probs") as cache:
        model.forward_embeds(batch)
    probs = cache["layer.0.attn.probs"]
    assert probs[:, 1].abs().sum() == 0 and probs[:, 0].abs().sum() > 0


def test_mean_ablation_uses_given_values(tiny_root):
    model = tiny_model(tiny_root, "bert", "cross")
    values = {"layer.1.ffn.post": torch.arange(48, dtype=torch.float32)}
    with ablate(model, "layer.1.ffn.post", how="mean", values=values, units=[5]), \
            capture(model, "layer.1.ffn.post") as cache:
        model.score(Q, D)
    assert torch.all(cache["layer.1.ffn.post"][..., 5] == 5.0)
    with pytest.raises(IrlensError, match="needs values"):
        with ablate(model, "layer.1.ffn.post", how="mean"):
            model.score(Q, D)


def test_side_filter_and_gradients(tiny_root):
    model = tiny_model(tiny_root, "bert", pooling="mean", similarity="dot")
    with capture(model, "layer.0.ffn.post", side="doc", grad=True) as cache:
        score = model.score(Q, D)
    assert len(cache.calls("layer.0.ffn.post")) == 1
    assert cache["layer.0.ffn.post"].shape[1] == model.tokenize(D, "doc").input_ids.shape[1]
    score.sum().backward()
    assert cache.grad("layer.0.ffn.post").abs().sum() > 0
    with capture(model, "layer.0.ffn.post") as both:
        model.score(Q, D)
    with pytest.raises(IrlensError, match="ran 2 times"):
        both["layer.0.ffn.post"]


def test_unknown_hook_point_is_one_line(tiny_root):
    model = tiny_model(tiny_root, "bert")
    with pytest.raises(IrlensError, match=r"^unknown hook point 'layer.9.ffn.post'"):
        with capture(model, "layer.9.ffn.post"):
            pass


@pytest.mark.real
def test_real_model_hooks(default_model):
    model = default_model
    before = model.score(Q, D).detach()
    batch = model.tokenize(D, "doc")
    with capture(model, ["layer.5.resid", "layer.2.attn.probs", "layer.0.ffn.post"]) as cache:
        model.forward_embeds(batch)
    ref = _hf_reference(model, batch)
    torch.testing.assert_close(cache["layer.5.resid"], ref.hidden_states[6], atol=1e-5, rtol=0)
    torch.testing.assert_close(cache["layer.2.attn.probs"], ref.attentions[2], atol=1e-6, rtol=0)
    assert cache["layer.0.ffn.post"].shape[-1] == 1536
    with ablate(model, "layer.3.ffn.post"):
        assert abs(model.score(Q, D).item() - before.item()) > 1e-3
    assert torch.equal(model.score(Q, D), before) and _no_hooks_left(model)


def test_capture_with_grad_under_no_grad_is_refused(tiny_root):
    model = tiny_model(tiny_root, "bert", pooling="mean", similarity="dot")
    with torch.no_grad(), pytest.raises(IrlensError, match=r"inside torch.no_grad\(\)"):
        with capture(model, "layer.0.ffn.post", grad=True):
            pass
    with pytest.raises(IrlensError, match=r"computed under torch.no_grad\(\) \(e.g. encode_docs"):
        with capture(model, "layer.0.ffn.post", grad=True):
            model.encode_docs(D)  # a no-grad forward inside a grad capture
    assert _no_hooks_left(model)


def test_fingerprint_covers_every_ablation_setting(tiny_root):
    model = tiny_model(tiny_root, "bert")
    name = "layer.1.ffn.post"

    def fingerprint(**kwargs) -> str:
        with ablate(model, name, **kwargs):
            assert model.cacheable
            return model.fingerprint

    ones, twos = {name: torch.ones(48)}, {name: torch.full((48,), 2.0)}
    assert fingerprint(how="mean", values=ones) != fingerprint(how="mean", values=twos)
    # equal content in new objects is the same intervention (a cache hit, not a new entry)
    assert fingerprint(how="mean", values=ones) == fingerprint(how="mean",
                                                               values={name: torch.ones(48)})
    assert fingerprint(positions=[1, 2]) == fingerprint(positions=[1, 2])
    assert fingerprint(positions=[1, 2]) != fingerprint(positions=[1, 3])
    assert fingerprint(units=[1]) != fingerprint(units=torch.tensor([2]))
    bf16 = {name: torch.ones(48, dtype=torch.bfloat16)}  # hashed by its bytes, any dtype
    assert fingerprint(how="mean", values=bf16) != fingerprint(how="mean", values=ones)
    with ablate(model, name, side="query"):
        query_side = model.fingerprint
    assert query_side != fingerprint()
    intact = model.fingerprint
    assert intact not in {query_side, fingerprint()} and model.cacheable


def test_function_edits_make_the_model_uncacheable(tiny_root):
    model = tiny_model(tiny_root, "bert")

    def halve(act, ctx):
        return act / 2

    seen = []
    for _ in range(2):
        with intervene(model, {"layer.0.ffn.out": halve}):
            assert not model.cacheable
            seen.append(model.fingerprint)
        with ablate(model, "layer.0.ffn.out", how=lambda a: a * 0.5):
            assert not model.cacheable
            seen.append(model.fingerprint)
    assert len(set(seen)) == 4  # never shared, even for the same function object
    with intervene(model, {"layer.0.ffn.out": halve}, label="halve"):
        assert model.cacheable
    assert model.cacheable


@pytest.mark.real
def test_an_unknown_layer_names_the_true_layer_range(default_model):
    """Issue 20: a 6-layer model was said to have "layers 0-6" (points // 5 - 1)."""
    from irlens.errors import IrlensError
    from irlens.hooks import resolve_names

    with pytest.raises(IrlensError, match=r"\(layers 0-5;"):
        resolve_names(default_model, "layer.99.ffn.out")
