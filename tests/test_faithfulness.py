"""Faithfulness metrics checked against rescoring edited texts; the study and its CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from tiny import tiny_model, tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens.attribution import IntegratedGradients
from irlens.attribution.faithfulness import measure_faithfulness
from irlens.attribution.study import (
    DEFAULT_METHODS,
    FaithfulnessTable,
    faithfulness_study,
    method_agreement,
)
from irlens.cli import app
from irlens.data import load_dataset
from irlens.errors import IrlensError
from irlens.models import Segment

QUERY = "what do cats eat"
DOC = "mice like cheese and cats chase mice"  # 7 pieces: top 20% is one token


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def bi(tiny_root):
    return tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")


@pytest.fixture(scope="module")
def cross(tiny_root):
    return tiny_model(tiny_root, "bert", "cross")


def with_top(result, word: str):
    """The result with ``word`` (a document token) given the highest score."""
    scores = [0.0 if s == 0 else -abs(s) for s in result.scores]
    scores[result.tokens.index(word, result.segments.index(Segment.DOC))] = 5.0
    return dataclasses.replace(result, scores=scores)


def test_bi_encoder_metrics_equal_rescoring_the_edited_texts(bi):
    [result] = IntegratedGradients(bi, n_steps=4, target="doc").attribute(QUERY, DOC)
    result = with_top(result, "cheese")
    s0 = bi.score([QUERY], [DOC]).item()
    s_mask = bi.score([QUERY], ["mice like [MASK] and cats chase mice"]).item()
    s_del = bi.score([QUERY], ["mice like and cats chase mice"]).item()
    s_keep = bi.score([QUERY], ["cheese"]).item()
    cands = torch.tensor([s0 + 1.0, s0 - 0.01, s0 - 30.0, s0 + 30.0])
    m = measure_faithfulness(bi, result, cands, scale=0.1)

    def prob(s):
        return torch.softmax(0.1 * torch.cat([torch.tensor([s]), cands]).double(), 0)[0].item()

    assert (m.n_explained, m.k, m.rank, m.n_candidates) == (7, 1, 3, 4)
    assert m.score == pytest.approx(s0, abs=1e-4)
    assert m.comprehensiveness_score == pytest.approx(s0 - s_del, abs=1e-4)
    assert m.sufficiency_score == pytest.approx(s0 - s_keep, abs=1e-4)
    assert m.prob == pytest.approx(prob(s0), rel=1e-4)
    assert m.comprehensiveness == pytest.approx(prob(s0) - prob(s_del), abs=1e-5)
    assert m.sufficiency == pytest.approx(prob(s0) - prob(s_keep), abs=1e-5)
    assert m.log_odds == pytest.approx(math.log(prob(s_mask)) - math.log(prob(s0)), abs=1e-4)
    rank = lambda s: 1 + int((cands > s).sum())  # noqa: E731
    assert m.rank_change_comprehensiveness == rank(s_del) - rank(s0)
    assert m.rank_change_sufficiency == rank(s_keep) - rank(s0)


def test_cross_encoder_probability_is_the_sigmoid_and_both_sides_count(cross):
    [result] = IntegratedGradients(cross, n_steps=4, target="both").attribute(QUERY, DOC)
    result = with_top(result, "cheese")
    m = measure_faithfulness(cross, result, None, top_k=0.1)
    logit = cross.score([QUERY], [DOC], output="logit").item()
    p_del = cross.score([QUERY], ["mice like and cats chase mice"], output="prob").item()
    assert (m.n_explained, m.k, m.n_candidates, m.rank) == (4 + 7, 1, 0, 1)
    assert m.prob == pytest.approx(torch.sigmoid(torch.tensor(logit)).item(), abs=1e-6)
    assert m.comprehensiveness == pytest.approx(m.prob - p_del, abs=1e-6)


def test_metric_arguments_are_checked(bi):
    [result] = IntegratedGradients(bi, n_steps=2, target="doc").attribute(QUERY, DOC)
    with pytest.raises(IrlensError, match=r"top_k is a fraction of tokens in \(0, 1\]"):
        measure_faithfulness(bi, result, top_k=20)
    with pytest.raises(IrlensError, match="cannot replace tokens by 'unk'; use mask or pad"):
        measure_faithfulness(bi, result, replace_with="unk")


def _encoder_calls(model):
    calls = []
    return calls, model.doc_encoder.register_forward_hook(lambda *_: calls.append(1))


def test_study_resumes_pair_by_pair_and_refuses_another_config(bi, tmp_path):
    dataset = load_dataset(write_beir(tmp_path / "beir"), "test")
    out = tmp_path / "study"
    kwargs = dict(n_steps=3, max_doc_tokens=16, n_candidates=3, out_dir=out)
    table = faithfulness_study(bi, dataset, 3, **kwargs)
    assert len(table.records) == 3 * len(DEFAULT_METHODS)
    assert all(r["n_candidates"] == 3 for r in table.records)
    jobs = sorted((out / "jobs").iterdir())
    assert [j.name for j in jobs] == ["pair-00000", "pair-00001", "pair-00002"]

    calls, handle = _encoder_calls(bi)
    try:
        again = faithfulness_study(bi, dataset, 3, **kwargs)
    finally:
        handle.remove()
    assert calls == [] and again.records == table.records  # nothing recomputed

    import shutil

    shutil.rmtree(jobs[1])  # an interruption during the second pair
    stamp = (jobs[0] / "manifest.json").stat().st_mtime_ns
    resumed = faithfulness_study(bi, dataset, 3, **kwargs)
    assert (jobs[0] / "manifest.json").stat().st_mtime_ns == stamp
    for a, b in zip(resumed.records, table.records, strict=True):
        for key in ("qid", "doc_id", "method", "k", "rank"):
            assert a[key] == b[key]
        assert a["comprehensiveness_score"] == pytest.approx(b["comprehensiveness_score"],
                                                             abs=1e-5)
    with pytest.raises(IrlensError, match="cannot be resumed: its config differs in top_k"):
        faithfulness_study(bi, dataset, 3, **{**kwargs, "top_k": 0.5})
    other = load_dataset(write_beir(tmp_path / "beir2"), "train")
    with pytest.raises(IrlensError, match="cannot be resumed: .*"):
        faithfulness_study(bi, other, 1, **kwargs)

    loaded = FaithfulnessTable.load(out / "table")
    assert loaded.records == resumed.records and loaded.config == resumed.config
    assert repr(loaded).startswith("<FaithfulnessTable 3 pairs x 5 methods model=")


def test_aggregate_matches_numpy_and_scipy(bi, tmp_path):
    import numpy as np
    from scipy import stats

    dataset = load_dataset(write_beir(tmp_path / "beir"), "test")
    table = faithfulness_study(bi, dataset, 3, ["ig-mask", "random"], n_steps=2,
                               max_doc_tokens=16, n_candidates=3)
    agg = table.aggregate().set_index("method")
    assert list(agg.index) == ["ig-mask", "random"] and (agg["pairs"] == 3).all()
    for method in ("ig-mask", "random"):
        values = [r["comprehensiveness_score"] for r in table.records if r["method"] == method]
        assert agg.loc[method, "comprehensiveness_score"] == pytest.approx(np.mean(values))
        assert agg.loc[method, "comprehensiveness_score_se"] == pytest.approx(
            stats.sem(values))
    assert not math.isnan(agg.loc["ig-mask", "relative_gap"])
    assert math.isnan(agg.loc["random", "relative_gap"])
    markdown = table.to_markdown()
    assert markdown.count("\n") == 1 + 2 and "| random | 3 |" in markdown
    one = faithfulness_study(bi, dataset, 1, ["ig-mask"], n_steps=2, max_doc_tokens=16,
                             n_candidates=3)
    row = one.to_markdown().splitlines()[2]
    value = one.records[0]["comprehensiveness_score"]
    assert f"| {value:.3f} |" in row and "±" not in row  # one pair: no standard error


def test_random_control_draws_anew_for_every_pair(bi, tmp_path):
    dataset = load_dataset(write_beir(tmp_path / "beir"), "test")
    table = faithfulness_study(bi, dataset, 3, ["random"], max_doc_tokens=16, n_candidates=3)
    ranks = []
    for r in table.records:
        explained = [v for v in r["token_scores"] if v != 0]
        ranks.append(tuple(np.argsort(explained)[:3]))
    assert len(set(ranks)) > 1


def test_faithfulness_cli_writes_the_study_folder(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "bi")
    data = write_beir(tmp_path / "beir")
    out = tmp_path / "out"
    args = ["faithfulness", "--model", str(folder), "--data", str(data), "--n-steps", "2",
            "--max-doc-tokens", "12", "--candidates", "2", "--methods",
            "ig-mask,sig-mask,random", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--pairs", "2"])
    assert result.exit_code == 0, result.output
    table = FaithfulnessTable.load(out / "table")
    assert [r["method"] for r in table.records[:3]] == ["ig-mask", "sig-mask", "random"]
    assert table.config["n_steps"] == 2 and len(table.records) == 6
    assert "| ig-mask | 2 |" in result.stdout
    assert result.stderr.count("faithfulness:") >= 1 and "2/2" in result.stderr  # per pair
    printed = CliRunner().invoke(app, [*args, "--pairs", "2", "--json"])
    assert printed.exit_code == 0, printed.output
    payload = json.loads(printed.stdout)  # stdout is the JSON alone
    assert [row["method"] for row in payload["summary"]] == ["ig-mask", "sig-mask", "random"]
    one = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "one"), "--pairs", "1"])
    assert one.exit_code == 0, one.output  # used to crash: the standard error of one pair
    assert "| ig-mask | 1 |" in one.stdout


@pytest.mark.parametrize("args, message", [
    (["--pairs", "0"], "error: --pairs must be >= 1, got 0; pass a value of 1 or more"),
    (["--pairs", "-2"], "error: --pairs must be >= 1, got -2; pass a value of 1 or more"),
    (["--methods", "ig,lime"], "error: unknown attribution method 'lime'; use ig, sig, "
                               "occlusion, gxi, random (ig, sig and occlusion take a "
                               "baseline suffix, e.g. ig-pad, sig-mask)"),
    (["--steps", "0"], "error: --n-steps must be >= 1, got 0; pass a value of 1 or more"),
    (["--top-k", "2"], "error: --top-k must be in (0, 1], got 2; pass a share of tokens such "
                       "as 0.2"),
    (["--rule", "simpson"], "error: unknown rule 'simpson'; use gausslegendre, riemann_left, "
                            "riemann_right, riemann_middle, riemann_trapezoid"),
    (["--memory-budget", "0GB"], "error: memory budget must be positive, got 0GB"),
])
def test_faithfulness_options_are_refused_before_data_and_model_load(args, message, tmp_path,
                                                                    monkeypatch):
    from test_cli_bad_options import guard

    guard(monkeypatch)
    (tmp_path / "data").mkdir()
    res = CliRunner().invoke(app, ["faithfulness", "--model", "default", "--data",
                                   str(tmp_path / "data"), *args])
    assert res.exit_code == 2
    assert res.stderr.strip() == message


def test_faithfulness_cli_too_many_pairs_is_one_line(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "bi")
    data = write_beir(tmp_path / "beir")
    bad = CliRunner().invoke(app, ["faithfulness", "--model", str(folder), "--data", str(data),
                                   "--pairs", "50", "--device", "cpu", "--out",
                                   str(tmp_path / "o")])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: asked for 50 pairs but beir (test) has only 4")


def test_sig_agrees_with_occlusion_and_random_does_not(bi, tmp_path):
    dataset = load_dataset(write_beir(tmp_path / "beir"), "test")
    table = faithfulness_study(bi, dataset, 3, ["sig-mask", "occlusion-mask", "random"],
                               n_steps=24, max_doc_tokens=16, n_candidates=3)
    close = method_agreement(table, "sig-mask", "occlusion-mask")
    assert close["pairs"] == 3 and close["spearman"] > 0.999
    assert close["max_relative_difference"] < 1e-3
    far = method_agreement(table, "random", "occlusion-mask")
    assert far["spearman"] < 0.9 and far["max_relative_difference"] > 0.1
