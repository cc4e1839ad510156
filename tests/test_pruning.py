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


STUDY = StudyConfig(n_triplets=2, keep="all", shard_size=2, n_steps=2)


@pytest.fixture(scope="module")
def bi_study(tiny_root, beir, tmp_path_factory):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    return run_study(model, beir, tmp_path_factory.mktemp("s") / "s", STUDY, progress=False)


@pytest.fixture(scope="module")
def cross_study(tiny_root, beir, tmp_path_factory):
    model = tiny_model(tiny_root, "bert", "cross")
    return run_study(model, beir, tmp_path_factory.mktemp("c") / "c", STUDY, progress=False)


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
                                                                  cross_study, kind, tmp_path):
    extra = {"pooling": "mean", "similarity": "dot"} if kind == "bi" else {}
    model = tiny_model(tiny_root, "bert", kind, **extra)
    study = bi_study if kind == "bi" else cross_study
    result = evaluate_pruning(model, beir, study, SMALL, out_dir=tmp_path, progress=False)
    rows = result.rows
    assert len(rows) == 1 + 2 * (1 + 2) + 2 * (1 + 2)
    assert set(rows["selection"]) == {"intact", "relevance", "random"}
    curve = rows[rows["experiment"] == "curve"]
    assert set(curve.loc[curve["p"] == 10, "n_units"]) == {10}
    assert {"nDCG@10", "RR@10"} <= set(rows.columns)
    summary = result.summary()
    assert list(summary["experiment"]) == ["curve", "curve", "layer", "layer"]
    assert (summary["seeds"] == 2).all()
    run = tmp_path / f"pruning-{beir.name}"
    jobs = sorted((run / "jobs").iterdir())
    stamps = [j.stat().st_mtime_ns for j in jobs]
    again = evaluate_pruning(model, beir, study, SMALL, out_dir=tmp_path, progress=False)
    assert [j.stat().st_mtime_ns for j in jobs] == stamps  # nothing recomputed
    assert again.rows["key"].tolist() == rows["key"].tolist()
    back = PruningResult.load(run)
    assert back.parameters["ranking"] and back.rows.equals(again.rows)
    more = PruningConfig(**{**SMALL.__dict__, "seeds": 3})  # one more seed per p and layer
    grown = evaluate_pruning(model, beir, study, more, out_dir=tmp_path, progress=False)
    assert len(grown.rows) == len(rows) + 4
    assert [j.stat().st_mtime_ns for j in jobs] == stamps  # finished evaluations reused
    kept = grown.rows.set_index("key").loc[rows["key"], "nDCG@10"]
    assert kept.tolist() == rows["nDCG@10"].tolist()
    other = PruningConfig(**{**SMALL.__dict__, "depth": 7})
    with pytest.raises(IrlensError, match="cannot be resumed: its config differs in depth"):
        evaluate_pruning(model, beir, study, other, out_dir=tmp_path, progress=False)


def test_a_study_of_another_model_kind_is_refused(tiny_root, beir, bi_study):
    """Before the fix only unit counts were compared: a bi-encoder study passed for a
    cross-encoder with the same layers and units."""
    cross = tiny_model(tiny_root, "bert", "cross")
    with pytest.raises(IrlensError, match="made with a BiEncoder .* not a CrossEncoder") as e:
        evaluate_pruning(cross, beir, bi_study, SMALL, progress=False)
    assert "\n" not in str(e.value)


def test_a_study_of_other_weights_with_the_same_shape_is_refused(tiny_root, beir, bi_study):
    other = tiny_model(tiny_root, "bert", "bi", seed=1, pooling="mean", similarity="dot")
    with pytest.raises(IrlensError, match="does not fit: it was made by model"):
        evaluate_pruning(other, beir, bi_study, SMALL, progress=False)


def test_resume_with_another_study_or_a_retrained_model_is_refused(tiny_root, beir, bi_study,
                                                                   tmp_path):
    """Before the fix both silently reused the old rows of the same --out."""
    import shutil

    from irlens.models import load_model

    config = PruningConfig(ps=(10.0,), seeds=1, layer_p=None, pool="bm25", depth=3)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir(tiny_root, "bert", "bi"), model_dir)
    model = load_model(str(model_dir), device="cpu", pooling="mean", similarity="dot")
    scores = bi_study.scores
    evaluate_pruning(model, beir, scores, config, out_dir=tmp_path / "out", progress=False)
    flipped = scores.assign(relevant=-scores["relevant"])  # another study's scores
    with pytest.raises(IrlensError, match="cannot be resumed: its config differs in "
                       "neurons_id"):
        evaluate_pruning(model, beir, flipped, config, out_dir=tmp_path / "out",
                         progress=False)
    # retrain: other weights written to the same model folder
    other = tiny_model_dir(tiny_root, "bert", "bi", seed=1)
    shutil.copy(other / "model.safetensors", model_dir / "model.safetensors")
    retrained = load_model(str(model_dir), device="cpu", pooling="mean", similarity="dot")
    assert retrained.model_id == model.model_id
    with pytest.raises(IrlensError, match="cannot be resumed: it was made by model"):
        evaluate_pruning(retrained, beir, scores, config, out_dir=tmp_path / "out",
                         progress=False)


def test_prune_accepts_the_folder_irlens_neurons_wrote(tiny_root, beir, tmp_path):
    from irlens.neurons.study import resolve_neurons, run_neurons

    model = tiny_model(tiny_root, "bert", "cross")
    out = tmp_path / "n"
    run_neurons(model, beir, out, ood=[beir], config=STUDY, p=10, progress=False)
    study, note = resolve_neurons(out)
    assert study.folder == out / beir.name
    assert f"also holds {beir.name}-1, fusion" in note
    assert resolve_neurons(out, "fusion")[0].folder == out / "fusion"
    with pytest.raises(IrlensError, match=f"no study 'x' in .*it holds {beir.name}, "):
        resolve_neurons(out, "x")
    runner = CliRunner()
    args = ["prune", "--neurons", str(out), "--data", str(beir), "--model",
            str(tiny_model_dir(tiny_root, "bert", "cross")), "--p", "10", "--seeds", "2",
            "--layer-p", "0", "--depth", "3", "--out", str(tmp_path / "p")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "using the in-domain study" in result.stderr


def test_pruning_matches_zeroed_weights_scored_by_hand(tiny_root, beir, cross_study):
    """Independent reference: zeroing FFN units (post-activation) equals zeroing the
    matching input columns of the FFN output layer; rerank BM25's candidates with that
    edited copy and score the run with ir_measures directly."""
    import ir_measures

    from irlens.data import load_dataset
    from irlens.retrieval import bm25_search

    model = tiny_model(tiny_root, "bert", "cross")
    config = PruningConfig(ps=(25.0,), seeds=1, layer_p=None, depth=4, metrics=("nDCG@10",))
    rows = evaluate_pruning(model, beir, cross_study, config, progress=False).rows
    got = rows.set_index("selection")["nDCG@10"]
    sel = select(cross_study.scores, 25.0)
    edited = tiny_model(tiny_root, "bert", "cross")
    with torch.no_grad():
        for hook, units in sel.units.items():
            layer = int(hook.split(".")[1])
            edited.model.bert.encoder.layer[layer].output.dense.weight[:, units] = 0
    dataset = load_dataset(beir)
    candidates = bm25_search(dataset, k=4, progress=False)
    judged = [q for q in dataset.queries if dataset.qrels.get(q)]

    def ndcg(m) -> float:
        run = []
        for qid in judged:
            docs = list(candidates.get(qid, {}))
            scores = m.score([dataset.queries[qid]] * len(docs),
                             [dataset.corpus[d].contents for d in docs]).detach()
            run += [ir_measures.ScoredDoc(qid, d, float(s))
                    for d, s in zip(docs, scores, strict=True)]
        qrels = [ir_measures.Qrel(q, d, g) for q in judged for d, g in dataset.qrels[q].items()]
        return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[
            ir_measures.nDCG @ 10]

    assert got["intact"] == pytest.approx(ndcg(model), abs=1e-6)
    assert got["relevance"] == pytest.approx(ndcg(edited), abs=1e-6)


def test_summary_excess_drop_and_ci_match_scipy():
    import pandas as pd
    from scipy import stats

    rows = [{"dataset": "d", "experiment": "curve", "layer": -1, "p": 0.0,
             "selection": "intact", "seed": -1, "n_units": 0, "m": 0.5},
            {"dataset": "d", "experiment": "curve", "layer": -1, "p": 1.0,
             "selection": "relevance", "seed": -1, "n_units": 3, "m": 0.2}]
    rows += [{"dataset": "d", "experiment": "curve", "layer": -1, "p": 1.0,
              "selection": "random", "seed": s, "n_units": 3, "m": 0.5} for s in range(3)]
    row = PruningResult.of(pd.DataFrame(rows), {"metrics": ["m"]}).summary().iloc[0]
    assert row["m excess"] == pytest.approx(0.3)  # random units cost nothing: no inf ratio
    assert row["m excess lo"] == pytest.approx(0.3) == row["m excess hi"]
    assert row["m verdict"] == "above"
    drops = np.array([0.1, 0.0, 0.5])
    rows[2:] = [{**rows[2], "seed": s, "m": 0.5 - d} for s, d in enumerate(drops)]
    row = PruningResult.of(pd.DataFrame(rows), {"metrics": ["m"]}).summary().iloc[0]
    lo, hi = stats.t.interval(0.95, 2, loc=0.3 - drops.mean(), scale=stats.sem(drops))
    assert (row["m excess lo"], row["m excess hi"]) == pytest.approx((lo, hi))
    assert lo < 0 < hi and row["m verdict"] == "within"


def test_bm25_pool_ranks_the_cross_encoder_candidates(tiny_root, beir, bi_study):
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    config = PruningConfig(ps=(10.0,), seeds=1, layer_p=None, pool="bm25", depth=3)
    result = evaluate_pruning(model, beir, bi_study, config, progress=False)
    assert result.parameters["ranking"] == "rank BM25 top-3 per query"
    assert ((result.rows["nDCG@10"] >= 0) & (result.rows["nDCG@10"] <= 1)).all()


def test_bad_input_gives_one_line_errors(tiny_root, beir, bi_study):
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
    distil = tiny_model(tiny_root, "distilbert", "bi")  # same kind and unit counts
    with pytest.raises(IrlensError, match="does not fit: it was made by model .*bert-bi"):
        evaluate_pruning(distil, beir, bi_study, SMALL, progress=False)
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


def test_cli_prune(tiny_root, beir, cross_study, tmp_path):
    runner = CliRunner()
    model = tiny_model_dir(tiny_root, "bert", "cross")
    args = ["prune", "--neurons", str(cross_study.folder), "--data", str(beir), "--model",
            str(model), "--p", "5,10", "--seeds", "2", "--layer-p", "10", "--out",
            str(tmp_path), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curve.png").is_file() and (tmp_path / "report.html").is_file()
    assert "nDCG@10 excess" in result.stdout and "nDCG@10 95% CI" in result.stdout
    table = result.stdout.splitlines()
    assert table[1].split()[2] == "all"  # the whole-model curve, not layer -1
    assert "excess = relevance drop minus the mean random drop" in result.stdout
    bad = runner.invoke(app, [*args[:7], "--p", "0.1,abc"])
    assert bad.exit_code == 2 and "--p must be a comma-separated list of floats" in bad.output
    combined = runner.invoke(app, ["report", "--pruning", str(tmp_path), "--neurons",
                                   str(cross_study.folder), "--out", str(tmp_path / "all")])
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
    assert empty.exit_code == 2 and "no finished pruning run" in empty.output


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


def test_held_out_pruning_leaves_out_the_triplets_queries(tiny_root, beir, bi_study, tmp_path):
    """--held-out: the units were chosen on the triplets' queries, so those are dropped; a
    query with the same id but another text (another collection) stays."""
    from irlens.data import load_dataset
    from irlens.neurons.pruning import without_triplet_queries

    chosen = set(bi_study.triplets["qid"])
    full = load_dataset(beir)
    assert chosen and chosen < set(full.queries)
    rest = without_triplet_queries(full, bi_study)
    assert set(rest.queries) == set(full.queries) - chosen
    assert set(rest.qrels) <= set(rest.queries) and rest.corpus == full.corpus
    renamed = full.subset()
    renamed.queries = {q: t + " (other collection)" for q, t in full.queries.items()}
    assert set(without_triplet_queries(renamed, bi_study).queries) == set(full.queries)
    model = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    config = PruningConfig(ps=(10.0,), seeds=1, layer_p=None, held_out=True)
    result = evaluate_pruning(model, beir, bi_study, config, progress=False)
    assert result.parameters["n_queries"] == len(rest.queries)
