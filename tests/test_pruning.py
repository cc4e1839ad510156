"""Pruning: restores the model bit for bit, ablates where asked, evaluates against random
controls, resumes, reports; bad input gives one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import tiny_model, tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens import IrlensError
from irlens.cli import app
from irlens.hooks import hook_points
from irlens.neurons.pruning import (
    PruningConfig,
    PruningResult,
    evaluate_pruning,
    prune,
    unit_means,
)
from irlens.neurons.report import render_report
from irlens.neurons.selection import Selection, select
from irlens.neurons.study import StudyConfig, run_study

Q, D = ["what do cats eat", "stock market"], ["cats eat mice and fish", "the market fell"]
SMALL = PruningConfig(ps=(5.0, 10.0), seeds=2, layer_p=10.0)


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    return write_beir(tmp_path_factory.mktemp("beir"))


@pytest.fixture(scope="module")
def bi_study(tiny_root, beir, tmp_path_factory):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    config = StudyConfig(n_triplets=2, keep="all", shard_size=2, n_steps=2)
    return run_study(model, beir, tmp_path_factory.mktemp("s") / "s", config, progress=False)


def _selection(units: dict[str, list[int]]) -> Selection:
    return Selection(units, "top", 1.0, "ffn", 96)


def test_prune_restores_the_model_bit_for_bit_even_after_an_exception(tiny_root):
    model = tiny_model(tiny_root, "bert", "cross")
    before, print_ = model.score(Q, D).detach(), model.fingerprint
    sel = _selection({"layer.0.ffn.post": [1, 2, 3], "layer.1.ffn.post": list(range(48))})
    with pytest.raises(RuntimeError, match="boom"):
        with prune(model, sel):
            assert not torch.equal(model.score(Q, D), before)
            assert model.fingerprint != print_  # the intervention is in the cache key
            raise RuntimeError("boom")
    assert torch.equal(model.score(Q, D).detach(), before)
    assert model.fingerprint == print_ and model.active_edits == []
    assert all(not p.module._forward_hooks for p in hook_points(model).values())


def test_prune_positions_limit_the_ablation_to_one_segment(tiny_root):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    sel = _selection({"layer.0.ffn.post": list(range(24))})
    docs = model.encode_docs(D)
    with prune(model, sel, positions="query"):  # a document pass has no query tokens
        assert torch.equal(model.encode_docs(D), docs)
        assert not torch.equal(model.encode_queries(Q), model.encode_docs(Q))
    with prune(model, sel, positions="doc"):
        assert not torch.allclose(model.encode_docs(D), docs)
    heads = Selection({"layer.1.attn.probs": [0, 1]}, "top", 50.0, "attn", 8)
    with prune(model, heads):
        assert not torch.allclose(model.encode_docs(D), docs)
    assert torch.equal(model.encode_docs(D), docs)


def test_mean_ablation_uses_unit_means(tiny_root, beir):
    from irlens.data import load_dataset

    model = tiny_model(tiny_root, "bert", "cross")
    means = unit_means(model, load_dataset(beir), ["layer.0.ffn.post"])
    assert means["layer.0.ffn.post"].shape == (48,)
    sel = _selection({"layer.0.ffn.post": [5]})
    with prune(model, sel, how="mean", values=means):
        mean_ablated = model.score(Q, D)
    with prune(model, sel):
        zeroed = model.score(Q, D)
    assert not torch.equal(mean_ablated, zeroed)
    with pytest.raises(IrlensError, match="mean ablation needs unit means"):
        with prune(model, sel, how="mean"):
            pass


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_evaluation_has_intact_relevance_random_rows_and_resumes(tiny_root, beir, bi_study,
                                                                  kind, tmp_path):
    extra = {"pooling": "mean", "similarity": "dot"} if kind == "bi" else {}
    model = tiny_model(tiny_root, "bert", kind, **extra)
    result = evaluate_pruning(model, beir, bi_study, SMALL, out_dir=tmp_path, progress=False)
    rows = result.rows
    assert len(rows) == 1 + 2 * (1 + 2) + 2 * (1 + 2)
    assert set(rows["selection"]) == {"intact", "relevance", "random"}
    curve = rows[rows["experiment"] == "curve"]
    assert set(curve.loc[curve["p"] == 10, "n_units"]) == {10}
    assert {"nDCG@10", "RR@10"} <= set(rows.columns)
    summary = result.summary()
    assert list(summary["experiment"]) == ["curve", "curve", "layer", "layer"]
    assert (summary["seeds"] == 2).all()
    path = tmp_path / f"pruning-{beir.name}.parquet"
    stamp = path.stat().st_mtime_ns
    again = evaluate_pruning(model, beir, bi_study, SMALL, out_dir=tmp_path, progress=False)
    assert path.stat().st_mtime_ns == stamp  # nothing recomputed
    assert again.rows["key"].tolist() == rows["key"].tolist()
    assert PruningResult.from_parquet(path).parameters["ranking"]
    more = PruningConfig(**{**SMALL.__dict__, "seeds": 3})  # one more seed per p and layer
    grown = evaluate_pruning(model, beir, bi_study, more, out_dir=tmp_path, progress=False)
    assert len(grown.rows) == len(rows) + 4
    kept = grown.rows.set_index("key").loc[rows["key"], "nDCG@10"]
    assert kept.tolist() == rows["nDCG@10"].tolist()  # finished evaluations reused
    other = PruningConfig(**{**SMALL.__dict__, "depth": 7})
    with pytest.raises(IrlensError, match="holds a different pruning run.*depth"):
        evaluate_pruning(model, beir, bi_study, other, out_dir=tmp_path, progress=False)


def test_pruning_every_unit_hurts_and_random_controls_differ(tiny_root, beir, bi_study):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    config = PruningConfig(ps=(100.0,), seeds=1, layer_p=None, pool="judged+bm25")
    rows = evaluate_pruning(model, beir, bi_study, config, progress=False).rows
    assert rows["n_units"].max() == 96
    assert rows.loc[rows["selection"] == "relevance", "p"].tolist() == [100.0]


def test_bm25_pool_ranks_the_cross_encoder_candidates(tiny_root, beir, bi_study):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    config = PruningConfig(ps=(10.0,), seeds=1, layer_p=None, pool="bm25", depth=3)
    result = evaluate_pruning(model, beir, bi_study, config, progress=False)
    assert result.parameters["ranking"] == "rank BM25 top-3 per query"
    assert ((result.rows["nDCG@10"] >= 0) & (result.rows["nDCG@10"] <= 1)).all()


def test_bad_input_gives_one_line_errors(tiny_root, beir, bi_study, default_model):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    cases = [
        (PruningConfig(ps=(0.0,)), r"p must be a percentage in \(0, 100\]"),
        (PruningConfig(ps=(101.0,)), r"p must be a percentage in \(0, 100\]"),
        (PruningConfig(ps=(0.01,)), "selects no unit"),
        (PruningConfig(pool="corpus"), "unknown pool"),
        (PruningConfig(positions="title"), "unknown positions"),
    ]
    for config, message in cases:
        with pytest.raises(IrlensError, match=message) as info:
            evaluate_pruning(model, beir, bi_study, config, progress=False)
        assert "\n" not in str(info.value)
    with pytest.raises(IrlensError, match="made for a model with 2 layers"):
        evaluate_pruning(default_model, beir, bi_study, SMALL, progress=False)
    with pytest.raises(IrlensError, match="empty selection"):
        with prune(model, _selection({"layer.0.ffn.post": []})):
            pass


def test_report_and_plots(tiny_root, beir, bi_study, tmp_path):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    result = evaluate_pruning(model, beir, bi_study, SMALL, progress=False)
    png = result.plot(tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = render_report(tmp_path / "r.html", neurons_dir=bi_study.folder,
                         pruning=[result]).read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "Pruning on" in html and "Top attention heads per layer" in html
    assert '"dataset": "' in result.to_json()


def test_cli_prune(tiny_root, beir, bi_study, tmp_path):
    runner = CliRunner()
    model = tiny_model_dir(tiny_root, "bert", "bi")
    args = ["prune", "--neurons", str(bi_study.folder), "--data", str(beir), "--model",
            str(model), "--p", "5,10", "--seeds", "2", "--layer-p", "10", "--out",
            str(tmp_path), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curve.png").is_file() and (tmp_path / "report.html").is_file()
    assert "nDCG@10 ratio" in result.stdout
    bad = runner.invoke(app, [*args[:7], "--p", "0.1,abc"])
    assert bad.exit_code == 2 and "comma-separated numbers" in bad.output
    combined = runner.invoke(app, ["report", "--pruning", str(tmp_path), "--neurons",
                                   str(bi_study.folder), "--out", str(tmp_path / "all")])
    assert combined.exit_code == 0, combined.output
    assert "data:image/png;base64," in (tmp_path / "all" / "report.html").read_text()
    assert (tmp_path / "all" / "layers.png").is_file()
    twice = runner.invoke(app, ["report", "--pruning", str(tmp_path), "--pruning",
                                str(tmp_path), "--out", str(tmp_path / "twice")])
    assert twice.exit_code == 0, twice.output
    names = {r["dataset"] for r in json.loads((tmp_path / "twice" / "summary.json")
                                              .read_text())["summary"]}
    assert names == {beir.name, f"{beir.name} (relevant, ffn)"}
    empty = runner.invoke(app, ["report", "--pruning", str(tmp_path / "all"), "--out",
                                str(tmp_path / "x")])
    assert empty.exit_code == 2 and "no pruning-*.parquet" in empty.output


@pytest.mark.real
@pytest.mark.parametrize("pool", ["judged+bm25", "bm25"])
def test_real_model_pruning_on_a_scifact_subset(default_model, data_dir, tmp_path, pool):
    config = StudyConfig(n_triplets=2, n_steps=4, keep="all", max_length=96)
    study = run_study(default_model, data_dir / "scifact", tmp_path / "s", config,
                      progress=False)
    sel = select(study.scores, 1)
    assert sel.n == round(0.01 * 6 * 1536)
    result = evaluate_pruning(
        default_model, data_dir / "scifact", study,
        PruningConfig(ps=(1.0,), seeds=1, layer_p=None, pool=pool, depth=10,
                      max_length=64, max_queries=5), progress=False)
    values = result.rows.set_index("selection")["nDCG@10"]
    assert 0 < values["intact"] <= 1 and np.isfinite(values["relevance"])
