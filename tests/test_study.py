"""Relevance-neuron study: Parquet + manifest, resume, aggregation, selection, overlaps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny import tiny_model, tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens import IrlensError
from irlens.cli import app
from irlens.neurons.selection import fuse, intersect, overlaps, random_like, select
from irlens.neurons.study import Study, StudyConfig, check_model, run_neurons, run_study

CONFIG = StudyConfig(n_triplets=2, keep="all", shard_size=1, n_steps=3)


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    return write_beir(tmp_path_factory.mktemp("beir"))


@pytest.fixture(scope="module")
def study(tiny_root, beir, tmp_path_factory) -> Study:
    model = tiny_model(tiny_root, "bert", "cross")
    return run_study(model, beir, tmp_path_factory.mktemp("study") / "s", CONFIG,
                     progress=False)


def test_study_folder_has_parquet_and_manifest(study):
    files = {p.name for p in study.folder.iterdir()}
    assert {"manifest.json", "scores.parquet", "completeness.parquet", "jobs"} <= files
    assert study.shards() == ["shard-00000", "shard-00001"]
    assert len(study.triplets) == 2
    m = study.info
    assert m["config"]["n_steps"] == 3 and m["config"]["seed"] == 0 and m["units"] == {
        "layers": 2, "ffn": 48, "heads": 4}
    assert m["hook_names"][0] == "layer.0.ffn.post" and "torch" in m["versions"]
    assert m["n_relevant"] == m["n_nonrelevant"] == 2
    assert study.manifest.model_fingerprint and study.manifest.data_fingerprint
    scores = study.scores
    assert set(scores.columns) >= {"hook", "kind", "layer", "unit", "segment", "relevant",
                                   "nonrelevant", "contrast"}
    # 2 layers x 48 units x (all + 6 segments) + 2 layers x 4 heads x (all + 36 blocks)
    assert len(scores) == 2 * 48 * 7 + 2 * 4 * 37
    meta = json.loads(__import__("pyarrow.parquet", fromlist=["x"])
                      .read_schema(study.folder / "scores.parquet").metadata[b"irlens.neurons"])
    assert meta["model_id"] == m["model_id"] and meta["n_relevant"] == 2


def test_scores_are_means_over_pairs_and_contrast_is_their_difference(study):
    rel, non = study.attributions("relevant"), study.attributions("nonrelevant")
    assert len(rel) == len(non) == 2
    scores = study.scores
    ffn = scores[(scores["kind"] == "ffn") & (scores["segment"] == "all")] \
        .sort_values(["layer", "unit"])
    np.testing.assert_allclose(ffn["relevant"], rel.ffn_total.mean(0).ravel(), rtol=1e-5,
                               atol=1e-12)
    np.testing.assert_allclose(ffn["contrast"], ffn["relevant"] - ffn["nonrelevant"])
    doc = scores[(scores["kind"] == "ffn") & (scores["segment"] == "doc")] \
        .sort_values(["layer", "unit"])
    np.testing.assert_allclose(doc["relevant"], rel.ffn[:, :, 3].mean(0).ravel(), rtol=1e-5,
                               atol=1e-12)
    block = scores[(scores["kind"] == "attn") & (scores["segment"] == "query->doc")]
    assert len(block) == 8


def test_interrupted_study_resumes_from_last_finished_shard(tiny_root, beir, tmp_path):
    model = tiny_model(tiny_root, "bert", "cross")
    out = tmp_path / "s"
    first = run_study(model, beir, out, CONFIG, progress=False)
    before = first.scores
    shard0 = out / "jobs" / "shard-00000" / "manifest.json"
    stamp = shard0.stat().st_mtime_ns
    # an interruption during shard 1: its job and the aggregate never got written
    import shutil

    shutil.rmtree(out / "jobs" / "shard-00001")
    (out / "scores.parquet").unlink()
    again = run_study(model, beir, out, CONFIG, progress=False)
    assert shard0.stat().st_mtime_ns == stamp  # finished shard not recomputed
    assert (out / "jobs" / "shard-00001" / "manifest.json").is_file()
    pd.testing.assert_frame_equal(again.scores, before)
    with pytest.raises(IrlensError, match="cannot be resumed: its config differs in n_steps"):
        run_study(model, beir, out, StudyConfig(**{**CONFIG.__dict__, "n_steps": 4}),
                  progress=False)
    other = tiny_model(tiny_root, "bert", "cross", seed=1)  # same shapes, other weights
    with pytest.raises(IrlensError, match="cannot be resumed: it was made by model"):
        run_study(other, beir, out, CONFIG, progress=False)


def test_no_relevant_pairs_after_filtering_is_one_clear_line(tiny_root, beir, tmp_path):
    model = tiny_model(tiny_root, "bert", "cross")  # random: every probability ~0.5004
    config = StudyConfig(**{**CONFIG.__dict__, "keep": "classified"})
    with pytest.raises(IrlensError, match="no relevant pairs left after filtering") as info:
        run_study(model, beir, tmp_path / "s", config, progress=False)
    assert "\n" not in str(info.value)
    bi = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    with pytest.raises(IrlensError, match="needs a cross-encoder"):
        run_study(bi, beir, tmp_path / "b", config, progress=False)


def test_selection_counts_scopes_and_errors(study):
    scores = study.scores
    top = select(scores, 10)
    assert top.n == round(0.1 * 96) and top.method == "top"
    ffn = scores[(scores["kind"] == "ffn") & (scores["segment"] == "all")]
    best = ffn.sort_values("relevant", ascending=False).head(top.n)
    assert top.keys() == {(h, u) for h, u in zip(best["hook"], best["unit"], strict=True)}
    per_layer = select(scores, 10, scope="layer")
    assert per_layer.per_layer() == {0: 5, 1: 5}
    heads = select(scores, 50, kind="attn", segment="query->doc", score="contrast")
    assert heads.n == 4 and all(h.endswith("attn.probs") for h in heads.units)
    for p in (0, -1, 100.5):
        with pytest.raises(IrlensError, match=r"p must be a percentage in \(0, 100\]"):
            select(scores, p)
    with pytest.raises(IrlensError, match="selects no unit"):
        select(scores, 0.1)
    with pytest.raises(IrlensError, match="unknown segment 'title'"):
        select(scores, 1, segment="title")


def test_random_controls_match_size_and_are_seeded(study):
    scores = study.scores
    top = select(scores, 10, scope="layer")
    a, b, c = (random_like(scores, top, s, "layer") for s in (0, 0, 1))
    assert a.units == b.units and a.units != c.units
    assert a.per_layer() == top.per_layer() and a.n == top.n
    assert random_like(scores, top, 3).n == top.n


def test_intersection_fusion_and_overlaps(study):
    scores = study.scores
    other = scores.copy()
    other["relevant"] = -other["relevant"]
    assert intersect([select(scores, 10), select(scores, 10)]).n == 10
    assert intersect([select(scores, 10), select(other, 10)]).n == 0
    fused = fuse([scores, other])
    assert np.allclose(fused["relevant"], 0)
    same = overlaps(scores, scores, 10)
    assert list(same["layer"]) == ["0", "1", "all"]
    assert np.allclose(same["jaccard"], 1) and np.allclose(same["spearman"], 1)
    flipped = overlaps(scores, other, 10)
    assert np.allclose(flipped["spearman"], -1) and np.allclose(flipped["jaccard"], 0)


def test_neuron_study_of_another_model_is_refused(study, tiny_root):
    import dataclasses

    bi = tiny_model(tiny_root, "bert", "bi")
    with pytest.raises(IrlensError, match="made with a CrossEncoder .*, not a BiEncoder"):
        check_model(study.manifest, bi)
    cross = tiny_model(tiny_root, "bert", "cross")
    check_model(study.manifest, cross)  # the model it was made with
    bigger = dataclasses.replace(study.manifest, extra={
        **study.manifest.extra, "units": {"layers": 6, "ffn": 1536, "heads": 12}})
    with pytest.raises(IrlensError, match="made for a model with 6 layers x 1536 FFN units"):
        check_model(bigger, cross)
    retrained = tiny_model(tiny_root, "bert", "cross", seed=1)
    with pytest.raises(IrlensError, match="does not fit: it was made by model"):
        check_model(study.manifest, retrained)


def test_run_neurons_combines_in_domain_and_ood(tiny_root, beir, tmp_path):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    summary = run_neurons(model, beir, tmp_path / "n", ood=[beir], config=CONFIG, p=10,
                          progress=False)
    out = tmp_path / "n"
    assert set(summary["studies"]) == {beir.name, f"{beir.name}-1"}
    assert summary["selected"]["intersection"] == 10  # same data twice
    assert Study(out / "fusion").scores.shape == Study(out / beir.name).scores.shape
    ov = pd.read_parquet(out / "overlaps.parquet")
    assert np.allclose(ov["jaccard"], 1)
    sel = json.loads((out / "selections.json").read_text())
    assert sel["fusion"]["method"] == "top" and sel["intersection"]["method"] == "intersection"


def test_cli_neurons_writes_report_and_errors_in_one_line(tiny_root, beir, tmp_path):
    runner = CliRunner()
    model = tiny_model_dir(tiny_root, "bert", "cross")
    out = tmp_path / "cli"
    args = ["neurons", "--model", str(model), "--data", str(beir), "--out", str(out),
            "--triplets", "2", "--keep", "all", "--steps", "2", "--p", "10",
            "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"].endswith("report.html")
    html = (out / "report.html").read_text()
    assert "Top FFN units per layer" in html and "Completeness per layer" in html
    bad = runner.invoke(app, [*args[:-4], "--p", "0", "--device", "cpu"])
    assert bad.exit_code == 2 and "--p must be in (0, 100], got 0" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    early = runner.invoke(app, ["neurons", "--model", "/no/such/model", "--data", str(beir),
                                "--keep", "best"])  # refused before the model loads
    assert early.exit_code == 2
    assert early.stderr.strip() == ("error: --keep must be one of ordered, classified, all, "
                                    "got 'best'")
    for option, message in ((["--rule", "simpson"], "error: unknown rule 'simpson'; use "
                             "riemann_right, riemann_left, riemann_trapezoid"),
                            (["--steps", "1"], "error: --steps must be >= 2, got 1; NIG "
                             "needs 2 or more points on its path"),
                            (["--baseline", "unk"], "error: unknown baseline 'unk'; use pad, "
                             "mask, zero, text:<words>"),
                            (["--memory-budget", "lots"], "error: memory budget 'lots' not "
                             "understood; write e.g. 1GB or 512MB")):
        early = runner.invoke(app, ["neurons", "--model", "/no/such/model", "--data",
                                    str(beir), *option])
        assert early.exit_code == 2 and early.stderr.strip() == message


def test_a_failure_inside_a_hooked_forward_leaves_no_hook_behind(tiny_root, beir, tmp_path):
    """The failure happens mid-run, while NIG's hooks are on the model (a module of the
    last layer raises on its first call), not in argument checks before any hook exists;
    the study then resumes cleanly."""
    from irlens.hooks import hook_points

    model = tiny_model(tiny_root, "bert", "cross")
    points = hook_points(model)
    before = {name: dict(p.module._forward_hooks) for name, p in points.items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    seen: list[int] = []

    def boom(module, inputs, output):
        hooked = sum(len(p.module._forward_hooks) for p in points.values())
        if hooked > 1:  # only in NIG's forwards (the triplet scoring runs unhooked)
            seen.append(hooked)
            raise RuntimeError("boom inside the forward")

    handle = points["layer.1.ffn.out"].module.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom inside the forward"):
            run_study(model, beir, tmp_path / "s", CONFIG, progress=False)
    finally:
        handle.remove()
    assert seen  # NIG's own hooks were in place when it failed
    assert {name: dict(p.module._forward_hooks) for name, p in points.items()} == before
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert run_study(model, beir, tmp_path / "s", CONFIG, progress=False).finished
