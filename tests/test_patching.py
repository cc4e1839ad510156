"""Activation patching: exactness at the extremes, alignment, axioms, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points
from irlens.models import CrossEncoder
from irlens.patching import align, patch_pair, perturb, text_pair
from irlens.patching.patch import Runner, run_rows
from tests.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

Q = "what do cats eat"
CLEAN, CORRUPT = "cats eat mice and fish", "cats eat grain and fish"  # same piece count


@pytest.fixture(scope="module", params=["cross", "bi"])
def model(request, tiny_root):
    kwargs = {"pooling": "mean", "similarity": "dot"} if request.param == "bi" else {}
    # float64: the random tiny models' score differences are small (1e-6)
    return tiny_model(tiny_root, kind=request.param, **kwargs).double()


def _runners(model, pert):
    return (Runner(model, pert.clean_query, pert.clean_doc, pert.side),
            Runner(model, pert.corrupt_query, pert.corrupt_doc, pert.side))


def test_patching_a_whole_layer_restores_clean_and_nothing_keeps_corrupted(model):
    pert = text_pair(Q, CLEAN, CORRUPT)
    clean, corrupt = _runners(model, pert)
    assert len(clean.ids) == len(corrupt.ids)
    s_clean, s_corrupt = clean.score()[0], corrupt.score()[0]
    delta = abs(float(s_clean - s_corrupt))
    assert delta > 1e-8
    source = clean.cache()
    partner = align(corrupt.ids, clean.ids)
    every = list(range(len(corrupt.ids)))
    rows = [[]] + [[(name, None, every)] for name in corrupt.names("resid")]
    scores = run_rows(corrupt, source, partner, rows, max_rows=2)  # chunked on purpose
    assert float(scores[0]) == pytest.approx(float(s_corrupt), abs=1e-4 * delta)
    for s in scores[1:]:
        assert float(s) == pytest.approx(float(s_clean), abs=1e-4 * delta)


def test_patch_pair_effects_and_directions(model):
    pert = text_pair(Q, CLEAN, CORRUPT)
    res = patch_pair(model, pert)
    n_layers = sum(p.kind == "resid" for p in hook_points(model, "doc").values())
    for d in ("denoise", "noise"):
        assert res.resid[d].shape[0] == n_layers and res.heads[d].shape == (n_layers, 4)
    last = res.resid["denoise"][-1]
    if isinstance(model, CrossEncoder):  # the head reads only [CLS] of the last layer
        assert float(last[0]) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(last[1:], torch.zeros(len(last) - 1, dtype=last.dtype),
                                   atol=1e-6, rtol=0)
    else:  # mean pooling and a dot product are linear in each last-layer position
        assert float(last.sum()) == pytest.approx(1.0, abs=1e-6)


def test_role_patching_equals_patching_each_role_by_hand(model):
    pert = text_pair(Q, CLEAN, CORRUPT)
    res = patch_pair(model, pert, kinds=("resid",), directions=("denoise",), resid="roles")
    clean, corrupt = _runners(model, pert)
    roles = res.roles["denoise"]
    doc = [p for p, r in enumerate(roles) if r == "doc"]
    name = corrupt.names("resid")[0]
    s = run_rows(corrupt, clean.cache(), align(corrupt.ids, clean.ids), [[(name, None, doc)]])
    want = (s[0] - res.corrupted) / (res.clean - res.corrupted)
    assert float(res.resid["denoise"][0, 3]) == pytest.approx(float(want), abs=1e-6)


def test_alignment_gives_inserted_tokens_no_partner():
    assert align([1, 5, 6, 2], [1, 5, 6, 7, 8, 2]) == [0, 1, 2, 5]
    assert align([1, 5, 6, 7, 8, 2], [1, 5, 6, 2]) == [0, 1, 2, -1, -1, 3]


def test_unrelated_inputs_are_refused_in_one_line(model):
    pert = text_pair(Q, "salmon swim upstream to spawn in cold rivers every year",
                     "the stock market fell sharply on monday")
    with pytest.raises(IrlensError, match="share only") as err:
        patch_pair(model, pert)
    assert "\n" not in str(err.value)


def test_tfc1_inserted_term_is_patched_nowhere(model):
    df, n = {"cats": 2, "eat": 5}, 10
    pert = perturb("tfc1", Q, "cats hunt mice", df, n)
    assert pert.clean_doc == "cats hunt mice cats" and pert.corrupt_doc == "cats hunt mice"
    res = patch_pair(model, pert, kinds=("resid",))
    noise = res.resid["noise"]  # target = clean: the appended "cats" has no partner
    assert torch.isnan(noise[:, -2]).all() and not torch.isnan(noise[:, :-2]).any()
    assert "term" in res.roles["denoise"]


def test_axioms_and_skips():
    df, n = {"cats": 2, "eat": 50, "mice": 3}, 100
    tdc = perturb("tdc", Q, "cats eat mice", df, n)
    assert tdc.clean_doc == "cats eat mice" and tdc.corrupt_doc == "eat eat mice"
    assert perturb("tdc", Q, "dogs bark loudly", df, n) == "no query term in the document"
    removal = perturb("removal", Q, "cats eat mice", df, n)
    assert removal.side == "query" and removal.corrupt_query == "what do eat"
    lnc1 = perturb("lnc1", Q, "cats eat mice", df, n, filler="stocks fell")
    assert lnc1.corrupt_doc == "cats eat mice stocks fell"
    with pytest.raises(IrlensError, match="unknown axiom"):
        perturb("tfc9", Q, "x", df, n)


def test_hooks_are_removed_after_an_error_inside_a_patch(model):
    pert = text_pair(Q, CLEAN, CORRUPT)
    clean, corrupt = _runners(model, pert)
    before = corrupt.score()
    bad_partner = [10_000] * len(corrupt.ids)  # indexes outside the source: fails mid-run
    with pytest.raises(IndexError):
        run_rows(corrupt, clean.cache(), bad_partner, [[(corrupt.names("ffn")[0], None, [1])]])
    assert torch.equal(corrupt.score(), before)
    assert not model.active_edits


def test_head_outputs_equal_probabilities_times_values(tiny_root):
    model = tiny_model(tiny_root, kind="cross")
    batch = model.tokenize([Q], [CLEAN])
    with capture(model, ["embeddings", "layer.0.attn.probs", "layer.0.attn.heads"]) as c:
        model.forward_embeds(batch)
    layer = model.model.base_model.encoder.layer[0].attention.self
    v = layer.value(c["embeddings"]).view(1, -1, 4, 8).transpose(1, 2)
    want = (c["layer.0.attn.probs"] @ v).transpose(1, 2).reshape(1, -1, 32)
    torch.testing.assert_close(c["layer.0.attn.heads"], want, atol=1e-6, rtol=0)


def test_equal_length_substitutions_are_partnered():
    assert align([1, 5, 6, 7, 2], [1, 5, 9, 7, 2]) == [0, 1, 2, 3, 4]
    assert align([1, 5, 6, 7, 2], [1, 5, 9, 9, 7, 2]) == [0, 1, -1, 4, 5]


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    from tests.tiny_data import write_beir

    return write_beir(tmp_path_factory.mktemp("beir"))


def test_study_counts_skips_resumes_and_refuses_another_config(tiny_root, beir, tmp_path):
    from irlens.data import load_dataset
    from irlens.patching.study import PatchingStudy, patching_study

    model = tiny_model(tiny_root, kind="cross")
    ds = load_dataset(beir)
    study = patching_study(model, ds, "tdc", 4, tmp_path / "s", min_delta=0.0,
                           progress=False)
    # q3 "stock market news" vs d3: "stock" and "market" occur, so TDC applies; the
    # relevant pairs whose document holds no query term are skipped and counted
    assert study.n_pairs + sum(study.skipped.values()) == 4
    assert study.heads_mean.shape == (2, 2, 4) and study.roles_mean.shape[2] == 6
    jobs = sorted((tmp_path / "s" / "jobs").iterdir())
    stamps = [p.stat().st_mtime_ns for p in jobs]
    again = patching_study(model, ds, "tdc", 4, tmp_path / "s", min_delta=0.0, progress=False)
    assert [p.stat().st_mtime_ns for p in jobs] == stamps  # nothing recomputed
    np.testing.assert_array_equal(again.heads_mean, study.heads_mean)
    with pytest.raises(IrlensError, match="config differs in min_delta"):
        patching_study(model, ds, "tdc", 4, tmp_path / "s", min_delta=0.5, progress=False)
    back = PatchingStudy.load(study.save(tmp_path / "saved"))
    assert back.top_components(2) == study.top_components(2)


def test_patch_cli_writes_heatmaps_and_rejects_unknown_axioms(tiny_root, beir, tmp_path):
    from typer.testing import CliRunner

    from irlens.cli import app
    from tests.tiny import tiny_model_dir

    folder = tiny_model_dir(tiny_root, kind="cross")
    res = CliRunner().invoke(app, ["patch", "--model", str(folder), "--data", str(beir),
                                   "--axiom", "tfc1", "--pairs", "2", "--min-delta", "0",
                                   "--out", str(tmp_path / "o"), "--json", "--resid", "roles",
                                   "--ablate-top", "2", "--ablate-pairs", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pairs"] == 2
    assert (tmp_path / "o" / "heatmap-denoise.png").stat().st_size > 1000
    table = json.loads(res.stdout)["ablate_top"]
    assert [r["condition"] for r in table] == ["none", "top-2", "random-0", "random-1",
                                               "random-2"]
    assert all(0 <= r["axiom_holds"] <= 1 and 0 <= r["nDCG@10"] <= 1 for r in table)
    # held-out pairs come from queries that did not choose the components
    from irlens.data import load_dataset
    from irlens.patching.study import study_pairs

    chosen = {q for q, _, _ in study_pairs(load_dataset(beir), "tfc1", 2)[0]}
    held = {q for r in table for q in r["held_out_queries"].split(";")}
    assert held and not held & chosen
    bad = CliRunner().invoke(app, ["patch", "--model", str(folder), "--data", str(beir),
                                   "--axiom", "tfc9", "--out", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "--axiom must be one of" in bad.stderr
    assert bad.stderr.count("\n") == 1


@pytest.mark.real
def test_default_model_tfc1_pair_on_real_data(default_model, data_dir):
    from irlens.data import load_dataset
    from irlens.patching.study import study_pairs

    ds = load_dataset(data_dir / "scifact")
    perts, skipped = study_pairs(ds, "tfc1", 2, max_doc_words=20)
    res = patch_pair(default_model, perts[0][2], kinds=("ffn", "resid"), resid="roles")
    assert res.ffn["denoise"].shape == (6,) and res.resid["noise"].shape == (6, 6)
    # the appended term is the only difference: every role but the inserted one is
    # partnered, and patching everything shared cannot be NaN
    assert not torch.isnan(res.resid["denoise"][:, 3]).any()


def test_one_usable_pair_draws_without_an_all_nan_warning():
    """Issue 20: with one usable pair every CI is NaN; the heatmap title took np.nanmax of
    them (numpy's "All-NaN slice" warning) and printed "± nan"."""
    import warnings

    from irlens.patching.study import PatchingStudy, _ci, heatmap_figure

    one = np.random.default_rng(0).normal(size=(1, 2, 2, 4))
    heads_mean, heads_ci = _ci(one)
    ffn_mean, ffn_ci = _ci(one[:, :, :, 0])
    roles_mean, roles_ci = _ci(np.random.default_rng(1).normal(size=(1, 2, 2, 6)))
    study = PatchingStudy(heads_mean, heads_ci, ffn_mean, ffn_ci, roles_mean, roles_ci,
                          axiom="tfc1", n_pairs=1, skipped={}, axiom_holds=1.0,
                          mean_delta=0.1)
    assert np.isnan(heads_ci).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = heatmap_figure(study, "denoise")
    assert "CI n/a: one pair" in fig.axes[0].get_title()
