"""Token attribution: Captum / time-interpret references, completeness, batching, errors.

References: IG against Captum's LayerIntegratedGradients (cross-encoders, on the word
embedding layer) and IntegratedGradients (bi-encoders, on word embeddings); SIG against
time-interpret's SequentialIntegratedGradients. Same baseline, rule and steps; 1e-5.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerIntegratedGradients
from tiny import tiny_model

from irlens.attribution import (
    CompletenessWarning,
    GradientXInput,
    IntegratedGradients,
    Occlusion,
    RandomAttribution,
    SequentialIntegratedGradients,
    TokenAttribution,
    make_method,
)
from irlens.errors import IrlensError
from irlens.hooks import intervene
from irlens.models import Batch, Segment
from irlens.paths import parse_memory

QUERIES = ["what do cats eat", "why do dogs bark at night"]
DOCS = ["cats are carnivores that eat mice and small birds.",
        "dogs bark to warn their owners"]
RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
         "riemann_trapezoid")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Within 1e-5 absolute, and attributions large enough for that to mean something."""
    scale = ref.abs().max().item()
    assert scale > 3e-3, f"reference attributions too small to compare ({scale})"
    err = (ours - ref).abs().max().item()
    assert err <= min(1e-5, 1e-4 * scale), f"max |diff| {err} (scale {scale})"


def captum_scale(rule: str, n_steps: int) -> float:
    """Captum's trapezoid weights sum to (n-1)/n; irlens uses the textbook rule (sum 1)."""
    return n_steps / (n_steps - 1) if rule == "riemann_trapezoid" else 1.0


def test_quadrature_weights_sum_to_one_and_trapezoid_is_second_order():
    from irlens.paths import quadrature

    for rule in RULES:
        alphas, weights = quadrature(9, rule)
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
        assert 0 <= float(alphas.min()) and float(alphas.max()) <= 1
    # integral of a^2 over [0, 1] is 1/3: the trapezoid error is h^2/6 with h = 1/(n-1)
    alphas, weights = quadrature(9, "riemann_trapezoid")
    assert float((weights * alphas**2).sum()) - 1 / 3 == pytest.approx(1 / 384, rel=1e-9)


def sharpen(cross):
    """Scale a random cross-encoder's head so its attributions are far from zero."""
    base = set(map(id, cross.model.base_model.modules()))
    with torch.no_grad():
        for name, module in cross.model.named_modules():
            if isinstance(module, torch.nn.Linear) and (id(module) not in base
                                                        or "pooler" in name):
                module.weight.mul_(30)
    return cross


@pytest.fixture(scope="module")
def cross(tiny_root):
    return sharpen(tiny_model(tiny_root, "bert", "cross"))


@pytest.fixture(scope="module")
def bi(tiny_root):
    return tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")


def moving(batch: Batch, target: str) -> torch.Tensor:
    segs = {"doc": [Segment.DOC], "query": [Segment.QUERY],
            "both": [Segment.QUERY, Segment.DOC]}[target]
    return torch.isin(batch.segments, torch.tensor(segs))


def cross_args(batch: Batch) -> tuple:
    return (batch.attention_mask,) + (() if batch.token_type_ids is None
                                      else (batch.token_type_ids,))


def cross_forward(model, output="logit"):
    def forward(ids_or_embeds, mask, tt=None, embeds=False):
        kwargs = {"attention_mask": mask}
        if tt is not None:
            kwargs["token_type_ids"] = tt
        key = "inputs_embeds" if embeds else "input_ids"
        logits = model.model(**{key: ids_or_embeds}, **kwargs).logits.float()
        return model.logits_to_score(logits, output)
    return forward


def scores(results: list[TokenAttribution], width: int) -> torch.Tensor:
    out = torch.zeros(len(results), width)
    for i, r in enumerate(results):
        out[i, :len(r.scores)] = torch.tensor(r.scores)
    return out


# -- Captum / time-interpret references -----------------------------------------------------

@pytest.mark.parametrize("family, rule", [("bert", rule) for rule in RULES] + [
    (family, "gausslegendre") for family in ("roberta", "distilbert", "electra")] + [
    ("roberta", "riemann_trapezoid")])
def test_ig_cross_encoder_matches_captum_layer_ig(tiny_root, family, rule):
    model = sharpen(tiny_model(tiny_root, family, "cross"))
    batch = model.tokenize(QUERIES, DOCS)
    base_ids = batch.input_ids.masked_fill(moving(batch, "both"), model.tokenizer.mask_token_id)
    lig = LayerIntegratedGradients(cross_forward(model), model.word_embeddings())
    ref = lig.attribute(batch.input_ids, base_ids, additional_forward_args=cross_args(batch),
                        n_steps=12, method=rule).sum(-1) * captum_scale(rule, 12)
    ours = IntegratedGradients(model, "mask", 12, rule, memory_budget=None,
                               gap_tolerance=1.0).attribute(QUERIES, DOCS)
    close(scores(ours, ref.shape[1]), ref)


@pytest.mark.parametrize("target", ["doc", "query"])
@pytest.mark.parametrize("baseline", ["pad", "zero", "text:the cat"])
@pytest.mark.parametrize("output", ["logit", "prob"])
def test_ig_baselines_targets_outputs_match_captum(cross, target, baseline, output):
    batch = cross.tokenize(QUERIES, DOCS)
    moves = moving(batch, target)
    table = cross.word_embeddings()
    x = table(batch.input_ids).detach()
    if baseline == "zero":
        x0 = x.masked_fill(moves.unsqueeze(-1), 0.0)
    else:
        ids = batch.input_ids.clone()
        if baseline == "pad":
            ids[moves] = cross.tokenizer.pad_token_id
        else:  # the text's pieces repeated over the explained positions, in order
            fill = cross.tokenizer("the cat", add_special_tokens=False)["input_ids"]
            for row in range(len(ids)):
                where = moves[row].nonzero().flatten()
                ids[row, where] = torch.tensor([fill[j % len(fill)] for j in range(len(where))])
        x0 = table(ids).detach()
    fwd = cross_forward(cross, output)
    ref = CaptumIG(lambda e, m, t: fwd(e, m, t, embeds=True)).attribute(
        x, x0, additional_forward_args=cross_args(batch), n_steps=10).sum(-1)
    ours = IntegratedGradients(cross, baseline, 10, target=target, output=output).attribute(
        QUERIES, DOCS)
    if output == "prob":  # probabilities move less: compare on the logit's scale
        ref, ours_t = ref * 10, scores(ours, ref.shape[1]) * 10
    else:
        ours_t = scores(ours, ref.shape[1])
    close(ours_t, ref)
    assert all(r.output == output for r in ours)


def _bi_reference(bi, target, n_steps, method="ig"):
    qb, db = bi.tokenize(QUERIES, "query"), bi.tokenize(DOCS, "doc")
    table = bi.word_embeddings()

    def side(batch, seg):
        ids = batch.input_ids.masked_fill(batch.segments == seg, bi.tokenizer.mask_token_id)
        return table(batch.input_ids).detach(), table(ids).detach()

    (qx, qx0), (dx, dx0) = side(qb, Segment.QUERY), side(db, Segment.DOC)

    def encode(batch, embeds, mask):
        rows = Batch(batch.input_ids[:1].expand(len(embeds), -1), mask,
                     batch.segments[:1].expand(len(embeds), -1),
                     None if batch.token_type_ids is None else torch.zeros_like(mask),
                     batch.side)
        return bi.forward_embeds(rows, embeds)

    from tint.attr import SequentialIntegratedGradients as TintSIG

    algo = CaptumIG if method == "ig" else TintSIG
    if target == "doc":
        qv = bi.forward_embeds(qb).detach()
        f = lambda e, m, v: bi.pair_similarity(v, encode(db, e, m))  # noqa: E731
        ref = algo(f).attribute(dx, dx0, additional_forward_args=(db.attention_mask, qv),
                                n_steps=n_steps).sum(-1)
        return [ref[i, :int(n)] for i, n in enumerate(db.attention_mask.sum(1))], "doc"
    if target == "query":
        dv = bi.forward_embeds(db).detach()
        f = lambda e, m, v: bi.pair_similarity(encode(qb, e, m), v)  # noqa: E731
        ref = algo(f).attribute(qx, qx0, additional_forward_args=(qb.attention_mask, dv),
                                n_steps=n_steps).sum(-1)
        return [ref[i, :int(n)] for i, n in enumerate(qb.attention_mask.sum(1))], "query"
    f = lambda e1, e2, m1, m2: bi.pair_similarity(encode(qb, e1, m1),  # noqa: E731
                                                  encode(db, e2, m2))
    r1, r2 = algo(f).attribute((qx, dx), (qx0, dx0), n_steps=n_steps,
                               additional_forward_args=(qb.attention_mask, db.attention_mask))
    return [torch.cat([r1[i, :int(nq)].sum(-1), r2[i, :int(nd)].sum(-1)]) for i, (nq, nd)
            in enumerate(zip(qb.attention_mask.sum(1), db.attention_mask.sum(1),
                             strict=True))], "both"


def _side_scores(result: TokenAttribution, side: str) -> torch.Tensor:
    n_q = result.segments.index(Segment.CLS, 1)
    s = torch.tensor(result.scores)
    return {"query": s[:n_q], "doc": s[n_q:], "both": s}[side]


@pytest.mark.parametrize("target", ["doc", "query", "both"])
def test_ig_bi_encoder_matches_captum(bi, target):
    refs, side = _bi_reference(bi, target, 16)
    ours = IntegratedGradients(bi, n_steps=16, target=target).attribute(QUERIES, DOCS)
    for ref, result in zip(refs, ours, strict=True):
        close(_side_scores(result, side), ref)


@pytest.mark.parametrize("target", ["doc", "query"])
def test_sig_bi_encoder_matches_time_interpret(bi, target):
    refs, side = _bi_reference(bi, target, 6, method="sig")
    ours = SequentialIntegratedGradients(bi, n_steps=6, target=target).attribute(QUERIES,
                                                                                 DOCS)
    for ref, result in zip(refs, ours, strict=True):
        close(_side_scores(result, side), ref)


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_sig_cross_encoder_matches_time_interpret(tiny_root, family, rule):
    model = sharpen(tiny_model(tiny_root, family, "cross"))
    batch = model.tokenize(QUERIES, DOCS)
    table = model.word_embeddings()
    x = table(batch.input_ids).detach()
    x0 = table(batch.input_ids.masked_fill(moving(batch, "both"),
                                           model.tokenizer.mask_token_id)).detach()
    fwd = cross_forward(model)
    from tint.attr import SequentialIntegratedGradients as TintSIG

    ref = TintSIG(lambda e, m, *t: fwd(e, m, *t, embeds=True)).attribute(
        x, x0, additional_forward_args=cross_args(batch), n_steps=5, method=rule
    ).sum(-1) * captum_scale(rule, 5)
    ours = SequentialIntegratedGradients(model, n_steps=5, rule=rule,
                                         gap_tolerance=1.0).attribute(QUERIES, DOCS)
    close(scores(ours, ref.shape[1]), ref)


def test_sig_both_sides_of_a_bi_encoder_are_the_one_side_paths(bi):
    both = SequentialIntegratedGradients(bi, n_steps=4, target="both").attribute(QUERIES, DOCS)
    q = SequentialIntegratedGradients(bi, n_steps=4, target="query").attribute(QUERIES, DOCS)
    d = SequentialIntegratedGradients(bi, n_steps=4, target="doc").attribute(QUERIES, DOCS)
    for b, rq, rd in zip(both, q, d, strict=True):
        expected = torch.tensor(rq.scores) + torch.tensor(rd.scores)
        torch.testing.assert_close(torch.tensor(b.scores), expected, atol=1e-6, rtol=0)


# -- completeness ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ig", "sig"])
def test_completeness_gap_is_reported_and_small(cross, bi, name):
    for model in (cross, bi):
        results = make_method(name, model, n_steps=40).attribute(QUERIES, DOCS)
        for r in results:  # plain-model checks of the sums: tests/test_paths.py
            assert r.relative_gap < 1e-3


def test_completeness_warning_above_tolerance(bi):
    with pytest.warns(CompletenessWarning, match=r"completeness gap above 1.0% .* raise n_steps"):
        IntegratedGradients(bi, n_steps=2, rule="riemann_left").attribute(QUERIES, DOCS)
    with pytest.warns(CompletenessWarning, match=r"or use rule='gausslegendre'"):
        IntegratedGradients(bi, n_steps=2, rule="riemann_left").attribute(QUERIES, DOCS)
    with pytest.warns(CompletenessWarning) as caught:  # already Gauss-Legendre: steps only
        IntegratedGradients(bi, n_steps=1, target="doc").attribute(QUERIES, DOCS)
    assert all(str(w.message).endswith("; raise n_steps") for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        IntegratedGradients(bi, n_steps=2, rule="riemann_left",
                            gap_tolerance=100.0).attribute(QUERIES, DOCS)


# -- batching, chunking, memory -----------------------------------------------------------

def _count_forwards(model):
    calls = []
    body = model.model.base_model if hasattr(model, "model") else model.doc_encoder
    handle = body.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("name", ["ig", "sig"])
def test_pairs_steps_and_tokens_share_one_forward(cross, name):
    calls, handle = _count_forwards(cross)
    try:
        make_method(name, cross, n_steps=8, memory_budget=None).attribute(QUERIES, DOCS)
    finally:
        handle.remove()
    # one forward+backward for every path point of both pairs, one for the end points
    assert len(calls) == 2


def test_chunking_and_batching_do_not_change_results(cross, bi):
    for model in (cross, bi):
        for name in ("ig", "sig"):
            whole = make_method(name, model, n_steps=6, memory_budget=None).attribute(QUERIES,
                                                                                      DOCS)
            calls, handle = _count_forwards(model)
            try:
                chunked = make_method(name, model, n_steps=6,
                                      memory_budget="30KB").attribute(QUERIES, DOCS)
            finally:
                handle.remove()
            assert len(calls) > 4
            alone = [make_method(name, model, n_steps=6).attribute(q, d)[0]
                     for q, d in zip(QUERIES, DOCS, strict=True)]
            for a, b, c in zip(whole, chunked, alone, strict=True):
                torch.testing.assert_close(torch.tensor(a.scores), torch.tensor(b.scores),
                                           atol=1e-6, rtol=0)
                torch.testing.assert_close(torch.tensor(a.scores), torch.tensor(c.scores),
                                           atol=1e-5, rtol=0)


def test_memory_budget_bounds_rows_per_forward(cross):
    calls, handle = _count_forwards(cross)
    try:
        IntegratedGradients(cross, n_steps=20, memory_budget="200KB").attribute(QUERIES, DOCS)
    finally:
        handle.remove()
    assert len(calls) > 3
    assert parse_memory("1GB") == 2**30
    assert parse_memory("512MB") == 512 * 2**20
    assert parse_memory(1000) == 1000


def test_parameters_and_hooks_restored_after_an_error(cross):
    flags = [p.requires_grad for p in cross.parameters()]

    def boom(act, ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with intervene(cross, {"layer.1.ffn.out": boom}):
            IntegratedGradients(cross, n_steps=4).attribute(QUERIES, DOCS)
    assert [p.requires_grad for p in cross.parameters()] == flags
    assert all(not m._forward_hooks for m in cross.modules())
    assert cross.active_edits == []


# -- the other methods ----------------------------------------------------------------------

def test_gradient_x_input_is_gradient_times_word_embedding(bi):
    [r] = GradientXInput(bi, target="doc").attribute(QUERIES[0], DOCS[0])
    qv = bi.forward_embeds(bi.tokenize(QUERIES[:1], "query")).detach()
    batch = bi.tokenize(DOCS[:1], "doc")
    x = bi.word_embeddings()(batch.input_ids).detach().requires_grad_()
    (grad,) = torch.autograd.grad(bi.pair_similarity(qv, bi.forward_embeds(batch, x)).sum(), x)
    expected = (grad * x).sum(-1)[0] * (batch.segments[0] == Segment.DOC)
    torch.testing.assert_close(_side_scores(r, "doc"), expected.detach(), atol=1e-5, rtol=1e-5)
    assert math.isnan(r.completeness_gap) and math.isnan(r.baseline_score)


def test_random_attribution_is_seeded_and_only_on_explained_tokens(bi):
    a = RandomAttribution(bi, seed=3, target="doc").attribute(QUERIES, DOCS)
    b = RandomAttribution(bi, seed=3, target="doc").attribute(QUERIES, DOCS)
    c = RandomAttribution(bi, seed=4, target="doc").attribute(QUERIES, DOCS)
    assert a[0].scores == b[0].scores != c[0].scores
    for r in a:
        for s, seg in zip(r.scores, r.segments, strict=True):
            assert (s != 0) == (seg == Segment.DOC)


# -- results --------------------------------------------------------------------------------

def test_result_words_json_and_parquet_round_trip(bi, tmp_path):
    results = IntegratedGradients(bi, n_steps=4).attribute(["carnivores?"], [DOCS[0]])
    r = results[0]
    pieces = [t for t in r.tokens if t.startswith("##")]
    assert pieces, "the test needs a word split into pieces"
    words = r.words()
    assert [w.text for w in words if w.segment == Segment.QUERY] == ["carnivores", "?"]
    assert words[1].space_before is False and words[3].space_before is True
    assert sum(w.score for w in words) == pytest.approx(sum(r.scores), abs=1e-6)
    assert TokenAttribution.from_json(r.to_json()) == r
    gxi = GradientXInput(bi).attribute(QUERIES, DOCS)
    path = TokenAttribution.to_parquet(results + gxi, tmp_path / "attr.parquet")
    back = TokenAttribution.from_parquet(path)
    assert back[0] == r
    assert math.isnan(back[1].completeness_gap) and back[1].scores == gxi[0].scores
    assert r.to_dict()["parameters"] == {"baseline": "mask", "rule": "gausslegendre",
                                         "n_steps": 4, "target": "both", "output": "dot",
                                         "max_doc_tokens": None, "memory_budget": "1GB",
                                         "gap_tolerance": 0.01}


def test_long_texts_are_truncated_and_said(bi):
    long_doc = "cats eat mice " * 100  # 300 pieces; the tiny model takes 128
    with pytest.warns(UserWarning, match="1 of 1 documents were longer than the model's 128"):
        [r] = IntegratedGradients(bi, n_steps=2, rule="gausslegendre", target="doc",
                                  gap_tolerance=1e9).attribute("cats", long_doc)
    assert r.truncated and len(r.tokens) == 3 + 128
    [cut] = IntegratedGradients(bi, n_steps=2, max_doc_tokens=5).attribute("cats", long_doc)
    assert cut.truncated and cut.doc == "cats eat mice cats eat"


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"baseline": "banana"}, r"unknown baseline 'banana'; use pad, mask, zero, text:<words>"),
    ({"baseline": "text:"}, r"needs words after the colon"),
    ({"rule": "simpson"}, r"unknown rule 'simpson'; use gausslegendre"),
    ({"rule": "riemann_trapezoid", "n_steps": 1}, r"n_steps must be an integer >= 2"),
    ({"target": "title"}, r"unknown target 'title'; use doc, query, both"),
    ({"output": "prob"}, r"bi-encoder explains its dot similarity; output 'prob'"),
    ({"memory_budget": "lots"}, r"memory budget 'lots' not understood; write e.g. 1GB"),
])
def test_bad_arguments_give_one_line_errors(bi, kwargs, match):
    with pytest.raises(IrlensError, match=match) as err:
        IntegratedGradients(bi, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_inputs_give_one_line_errors(bi, cross):
    ig = IntegratedGradients(bi, n_steps=2)
    with pytest.raises(IrlensError, match=r"empty query \(pair 0\)"):
        ig.attribute("  ", "doc")
    with pytest.raises(IrlensError, match=r"empty document \(pair 1\)"):
        ig.attribute(["a", "b"], ["doc", ""])
    with pytest.raises(IrlensError, match="2 queries but 1 documents"):
        ig.attribute(["a", "b"], ["doc"])
    with pytest.raises(IrlensError, match="max_doc_tokens must be an integer >= 1"):
        IntegratedGradients(bi, max_doc_tokens=0).attribute("a", "b")
    with pytest.raises(IrlensError, match=r"unknown attribution method 'lime'; use ig, sig"):
        make_method("lime", bi)
    with pytest.raises(IrlensError, match="'gxi' takes no baseline"):
        make_method("gxi-pad", bi)
    with pytest.raises(IrlensError, match="unknown output 'score' for a cross-encoder"):
        IntegratedGradients(cross, output="score")


@pytest.mark.real
def test_gauss_legendre_50_steps_keeps_gap_under_one_percent_on_the_real_model(
        default_model, data_dir):
    from irlens.data import load_dataset, sample_pairs

    dataset = load_dataset(data_dir / "scifact")
    pairs = sample_pairs(dataset, 2, seed=1)
    queries = [dataset.queries[q] for q, _ in pairs]
    docs = [dataset.corpus[d].contents for _, d in pairs]
    results = IntegratedGradients(default_model, n_steps=50, target="doc",
                                  max_doc_tokens=48).attribute(queries, docs)
    for r in results:
        assert abs(r.expected_sum) > 0.05  # a real change to explain
        assert r.relative_gap < 0.01


# -- occlusion: SIG's exact per-token limit -------------------------------------------------

def _masked_one_by_one(model, query: str, doc: str, target: str) -> list[float]:
    """Slow reference: mask each explained token in turn and call the model."""
    mask_id = model.tokenizer.mask_token_id

    def drops(batch, score_of):
        full = float(score_of(batch.input_ids))
        out = []
        for pos in moving(batch, target)[0].nonzero().flatten().tolist():
            ids = batch.input_ids.clone()
            ids[0, pos] = mask_id
            out.append(full - float(score_of(ids)))
        return out

    with torch.no_grad():
        if hasattr(model, "model"):  # cross-encoder: one sequence
            b = model.tokenize([query], [doc])
            return drops(b, lambda ids: model.forward_embeds(
                Batch(ids, b.attention_mask, b.segments, b.token_type_ids)))
        qb, db = model.tokenize([query], "query"), model.tokenize([doc], "doc")
        qv, dv = model.forward_embeds(qb), model.forward_embeds(db)
        out = []
        if target in ("query", "both"):
            out += drops(qb, lambda ids: model.pair_similarity(model.forward_embeds(
                Batch(ids, qb.attention_mask, qb.segments, qb.token_type_ids, "query")), dv))
        if target in ("doc", "both"):
            out += drops(db, lambda ids: model.pair_similarity(qv, model.forward_embeds(
                Batch(ids, db.attention_mask, db.segments, db.token_type_ids, "doc"))))
        return out


@pytest.mark.parametrize("target", ["doc", "query", "both"])
def test_occlusion_equals_masking_tokens_one_by_one(cross, bi, target):
    for model in (cross, bi):
        results = Occlusion(model, target=target, memory_budget="40KB").attribute(QUERIES, DOCS)
        for q, d, r in zip(QUERIES, DOCS, results, strict=True):
            explained = [s for s, seg in zip(r.scores, r.segments, strict=True)
                         if seg in ({"doc": [Segment.DOC], "query": [Segment.QUERY]}
                                    .get(target, [Segment.QUERY, Segment.DOC]))]
            ref = torch.tensor(_masked_one_by_one(model, q, d, target))
            torch.testing.assert_close(torch.tensor(explained), ref, atol=1e-5, rtol=1e-4)
            assert ref.abs().max() > 1e-3


def test_sig_token_totals_converge_to_occlusion(cross, bi):
    for model in (cross, bi):
        exact = Occlusion(model, target="doc").attribute(QUERIES, DOCS)
        errors = []
        for steps in (2, 16):
            sig = SequentialIntegratedGradients(model, n_steps=steps, target="doc",
                                                gap_tolerance=1.0).attribute(QUERIES, DOCS)
            errors.append(max((torch.tensor(s.scores) - torch.tensor(o.scores)).abs().max()
                              for s, o in zip(sig, exact, strict=True)).item())
        assert errors[1] < 1e-5 < errors[0]


@pytest.mark.real
def test_occlusion_on_the_real_model_matches_masking_one_by_one(default_model, data_dir):
    from irlens.data import load_dataset, sample_pairs
    from irlens.paths import cut_text

    dataset = load_dataset(data_dir / "scifact")
    [(qid, doc_id)] = sample_pairs(dataset, 1, seed=2)
    query = dataset.queries[qid]
    doc = cut_text(default_model.tokenizer, dataset.corpus[doc_id].contents, 24)
    [result] = Occlusion(default_model, target="doc").attribute(query, doc)
    explained = [s for s, seg in zip(result.scores, result.segments, strict=True)
                 if seg == Segment.DOC]
    ref = torch.tensor(_masked_one_by_one(default_model, query, doc, "doc"))
    assert len(explained) == 24 and ref.abs().max() > 1e-3
    torch.testing.assert_close(torch.tensor(explained), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.real
def test_bi_encoder_ig_matches_captum_on_sentence_transformers_own_forward(default_model):
    """The reference runs sentence-transformers' own modules (not irlens's forward):
    Captum's LayerIntegratedGradients on the word embeddings of the document pass, with
    the query vector from ``SentenceTransformer.encode``, encoded once."""
    from sentence_transformers import SentenceTransformer

    from irlens.models import resolve_model_path

    st = SentenceTransformer(resolve_model_path("default"), device="cpu")
    query, doc = "do statins lower cholesterol", "Statins reduce LDL cholesterol and events."
    qv = torch.as_tensor(st.encode([query], normalize_embeddings=True))
    feats = st.tokenize([doc])
    ids = feats["input_ids"]
    inner = ids[0, 1:-1]
    base = ids.clone()
    base[0, 1:-1] = st.tokenizer.mask_token_id

    def f(input_ids):
        out = st({"input_ids": input_ids,
                  "attention_mask": feats["attention_mask"].expand(len(input_ids), -1),
                  "token_type_ids": torch.zeros_like(input_ids)})["sentence_embedding"]
        return torch.nn.functional.cosine_similarity(out, qv.expand(len(out), -1))

    lig = LayerIntegratedGradients(f, st[0].auto_model.embeddings.word_embeddings)
    ref = lig.attribute(ids, base, n_steps=20, method="gausslegendre").sum(-1)[0]
    [ours] = IntegratedGradients(default_model, n_steps=20, target="doc").attribute(query, doc)
    doc_scores = torch.tensor(_side_scores(ours, "doc").tolist())
    assert len(inner) + 2 == len(doc_scores)
    close(doc_scores, ref.detach().float())
