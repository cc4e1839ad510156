"""Layer-wise probes: representations against Hugging Face's hidden states, planted signal
and noise, grouped folds, the study's resume, the page in Chromium, the CLI and bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from probe_data import open_in_chromium, write_probe_beir
from tiny import tiny_model, tiny_model_dir
from typer.testing import CliRunner

import irlens.probing.study as study_module
from irlens.cli import app
from irlens.errors import IrlensError
from irlens.probing import (
    ProbeConfig,
    ProbeItem,
    ProbeResult,
    build_items,
    check_specs,
    control_labels,
    control_seen,
    fold_accuracies,
    layer_representations,
    load_encoder,
    run_probes,
    task_data,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["cats eat mice", "salmon swim upstream to spawn in cold rivers", "stock market",
         "heavy rain and strong wind are expected tomorrow", "dogs"]


def _hf_states(encoder, tokenizer, texts):
    """Reference: Hugging Face's own hidden states (embeddings + every layer), pooled here."""
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = encoder(**enc, output_hidden_states=True)
    states = torch.stack(out.hidden_states)  # [L+1, B, T, H]
    mask = enc["attention_mask"][None, :, :, None].float()
    return {"cls": states[:, :, 0].numpy(),
            "mean": ((states * mask).sum(2) / mask.sum(2)).numpy()}


def test_representations_match_hidden_states_in_one_forward_per_batch(tiny_root):
    model = tiny_model(tiny_root, "bert", "bi")
    calls = []
    handle = model.doc_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        reps = layer_representations(model, TEXTS, "doc", batch_size=2)
    finally:
        handle.remove()
    assert len(calls) == 3  # 5 texts, 2 per batch: every layer read in the same forward
    ref = _hf_states(model.doc_encoder, model.tokenizer, TEXTS)
    for pooling in ("cls", "mean"):
        assert reps[pooling].shape == (3, 5, 32)
        np.testing.assert_allclose(reps[pooling], ref[pooling], atol=1e-5)


def test_two_towers_read_each_side_through_its_own_tower(tiny_root):
    """The DPR code path (DOC+QUERY) on tiny BERT encoders: queries through the query
    encoder, passages through the passage encoder."""
    doc_dir, query_dir = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    model = load_encoder(f"{doc_dir}+{query_dir}")
    assert set(model.encoders()) == {"query", "doc"}
    q = layer_representations(model, TEXTS[:2], "query")
    d = layer_representations(model, TEXTS[:2], "doc")
    np.testing.assert_allclose(
        q["cls"], _hf_states(model.query_encoder, model.tokenizer, TEXTS[:2])["cls"], atol=1e-5)
    np.testing.assert_allclose(
        d["cls"], _hf_states(model.doc_encoder, model.tokenizer, TEXTS[:2])["cls"], atol=1e-5)
    assert np.abs(q["cls"][-1] - d["cls"][-1]).max() > 1e-3


def _synthetic(n_items: int, n: int, hidden: int, aligned: float, marker: float, seed: int):
    """Random queries and candidates; the relevant one gets ``aligned`` x its query added
    (a q.p signal) and ``marker`` on feature 0 (a query-independent signal)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n_items, hidden))
    docs = rng.normal(size=(n_items, n, hidden))
    labels = rng.integers(0, n, n_items)
    rows = np.arange(n_items)
    docs[rows, labels] += aligned * q
    docs[rows, labels, 0] += marker
    items = [ProbeItem(f"q{i}", "", tuple(f"d{j}" for j in range(n)), int(labels[i]),
                       int((labels[i] + 1) % n)) for i in range(n_items)]
    return q, docs, items


@pytest.mark.parametrize("task,listwise", [("listwise", "concat"), ("listwise", "shared"),
                                           ("pairwise", "concat")])
def test_probe_recovers_a_planted_signal_and_stays_at_chance_on_noise(task, listwise):
    """The reproduction's concat probe is linear in [q; p1..pN], so it can only find a
    query-independent marker; the shared scorer and the pairwise probe see q*p."""
    n = 4
    chance = 1 / n if task == "listwise" else 0.5
    concat = task == "listwise" and listwise == "concat"
    q, docs, items = _synthetic(300, n, 6, 0.0 if concat else 3.0, 3.0 if concat else 0.0, 0)
    planted = fold_accuracies(task, *task_data(task, q, docs, items, listwise), folds=5,
                              listwise=listwise)
    q, docs, items = _synthetic(300, n, 6, 0.0, 0.0, 1)
    noise = fold_accuracies(task, *task_data(task, q, docs, items, listwise), folds=5,
                            listwise=listwise)
    assert planted.mean() > 0.9
    assert abs(noise.mean() - chance) < 0.1


def test_grouped_folds_never_test_a_query_seen_in_training():
    """Pairwise rows of one query share an identical, query-specific feature vector with
    opposite labels; any leak of a query across folds would show up as a label the probe
    could not know, so accuracy on this task is exactly chance per fold."""
    rng = np.random.default_rng(0)
    n_items = 40
    q = rng.normal(size=(n_items, 5))
    docs = np.repeat(q[:, None], 2, axis=1)  # relevant and negative look the same
    items = [ProbeItem(f"q{i}", "", ("a", "b"), 0, 1) for i in range(n_items)]
    feats, y, groups = task_data("pairwise", q, docs, items)
    acc = fold_accuracies("pairwise", feats, y, groups, folds=4)
    np.testing.assert_allclose(acc, 0.5)


def _pool_items(n_items: int, n: int, pool: int, seed: int) -> list[ProbeItem]:
    """Items whose candidates are drawn from ``pool`` passages, so passages recur."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_items):
        docs = tuple(f"p{j}" for j in rng.choice(pool, n, replace=False))
        label = int(rng.integers(n))
        items.append(ProbeItem(f"q{i}", "", docs, label, (label + 1) % n))
    return items


@pytest.mark.parametrize("task,listwise", [("listwise", "concat"), ("listwise", "shared"),
                                           ("pairwise", "concat")])
def test_control_labels_are_fixed_per_passage_wherever_it_recurs(task, listwise):
    """Hewitt & Liang: one random behaviour per type. The same candidates in another order
    (and another query) point at the same passage; a passage's pairwise label is the same
    in every row that shows it; the labels have the real task's rate."""
    items = _pool_items(400, 4, 30, 0)
    flipped = [ProbeItem(f"x{i}", "", it.doc_ids[::-1], 3 - it.label, 3 - it.negative)
               for i, it in enumerate(items)]
    a = control_labels(task, items, listwise, seed=1)
    b = control_labels(task, flipped, listwise, seed=1)
    if task == "listwise":
        pick_a = a if listwise == "concat" else a.reshape(-1, 4).argmax(1)
        pick_b = b if listwise == "concat" else b.reshape(-1, 4).argmax(1)
        assert [it.doc_ids[j] for it, j in zip(items, pick_a, strict=True)] == \
            [it.doc_ids[j] for it, j in zip(flipped, pick_b, strict=True)]
        assert abs(np.bincount(pick_a, minlength=4) / len(items) - 0.25).max() < 0.1
    else:
        shown = [it.doc_ids[it.label] for it in items] + [it.doc_ids[it.negative] for it in items]
        by_doc: dict[str, set[int]] = {}
        for doc, label in zip(shown, a, strict=True):
            by_doc.setdefault(doc, set()).add(int(label))
        assert all(len(v) == 1 for v in by_doc.values())
        assert len(by_doc) == 30 and 0.2 < a.mean() < 0.8
    assert not np.array_equal(a, control_labels(task, items, listwise, seed=2))


@pytest.mark.parametrize("task,listwise", [("listwise", "concat"), ("listwise", "shared"),
                                           ("pairwise", "concat")])
def test_a_probe_that_memorises_passages_beats_chance_on_the_control(task, listwise):
    """Features that encode passage identity (a fixed random vector per passage) and a
    small pool, so test passages were seen in training: the control is learnable, well
    above chance; with fresh noise per row (no identity) it stays at chance. A control
    of labels permuted per row is at chance on both, so it measured nothing."""
    n, hidden = 4, 48
    items = _pool_items(300, n, 30, 0)
    rng = np.random.default_rng(0)
    vectors = {f"p{j}": rng.normal(size=hidden) for j in range(30)}
    q = rng.normal(size=(len(items), hidden))
    docs = np.stack([[vectors[d] for d in it.doc_ids] for it in items])
    chance = 1 / n if task == "listwise" else 0.5
    feats, y, groups = task_data(task, q, docs, items, listwise)
    control = control_labels(task, items, listwise, seed=1)
    assert control_seen(task, items, groups, 5) > 0.9
    memorised = fold_accuracies(task, feats, control, groups, folds=5, listwise=listwise)
    assert memorised.mean() > chance + 0.3, memorised
    noise = rng.normal(size=docs.shape)
    feats, _, _ = task_data(task, q, noise, items, listwise)
    blind = fold_accuracies(task, feats, control, groups, folds=5, listwise=listwise)
    assert abs(blind.mean() - chance) < 0.1, blind


def test_control_seen_is_zero_when_no_passage_recurs():
    items = [ProbeItem(f"q{i}", "", tuple(f"d{i}-{j}" for j in range(3)), 0, 1)
             for i in range(20)]
    q, docs = np.zeros((20, 2)), np.zeros((20, 3, 2))
    for task in ("listwise", "pairwise"):
        _, _, groups = task_data(task, q, docs, items)
        assert control_seen(task, items, groups, 4) == 0.0


def test_fold_cis_use_the_corrected_resampled_t():
    """Nadeau & Bengio (2003): over k folds the variance of the mean is
    s^2 (1/k + n_test/n_train); for 5 folds (ratio 1/4) the CI is sqrt(0.45/0.2) = 1.5x
    the plain t interval, in mean_ci and in the study's summary."""
    from scipy import stats

    acc = np.array([0.50, 0.62, 0.55, 0.71, 0.58])
    ctrl = np.array([0.30, 0.25, 0.20, 0.28, 0.22])
    plain = stats.t.interval(0.95, 4, loc=acc.mean(), scale=stats.sem(acc))
    from irlens.report import mean_ci

    ci = mean_ci(acc, test_fraction=0.25)
    mean, lo, hi = ci["mean"], ci["lo"], ci["hi"]
    assert mean == pytest.approx(acc.mean())
    assert (hi - lo) == pytest.approx(1.5 * (plain[1] - plain[0]))
    assert mean_ci(acc)["lo"] == pytest.approx(plain[0])  # examples: no correction
    result = ProbeResult(None, ["a"], ["embeddings"], ["mean"], ["pairwise"], 2, 100,
                         np.stack([acc, ctrl])[None, None, None, None], [0.5])
    row = result.summary_frame().iloc[0]
    assert row["ci_high"] - row["ci_low"] == pytest.approx(1.5 * (plain[1] - plain[0]))
    diff = acc - ctrl
    half = stats.t.ppf(0.975, 4) * np.sqrt((1 / 5 + 1 / 4) * diff.var(ddof=1))
    assert row["selectivity"] == pytest.approx(diff.mean())
    assert row["selectivity_high"] - row["selectivity"] == pytest.approx(half)


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    return write_probe_beir(tmp_path_factory.mktemp("probe-beir"))


def test_items_have_one_relevant_and_bm25_hard_negatives(beir):
    from irlens.data import load_dataset

    dataset = load_dataset(beir)
    items = build_items(dataset, 4, folds=2)
    assert len(items) == 12
    for it in items:
        assert it.doc_ids[it.label] == f"r{it.qid[1:]}"
        negs = [d for i, d in enumerate(it.doc_ids) if i != it.label]
        assert len(set(negs)) == 3 and f"r{it.qid[1:]}" not in negs  # unjudged only
        assert it.negative != it.label
    assert len({it.label for it in items}) > 1  # shuffled order


def test_study_writes_parquet_plot_and_page_and_resumes(tiny_root, beir, tmp_path,
                                                       monkeypatch):
    a, b = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    config = ProbeConfig(n_candidates=3, folds=2, max_queries=None, max_length=32,
                         poolings=("mean",))
    result = run_probes([str(a), str(b)], beir, tmp_path / "out", config, progress=False)
    assert result.accuracy.shape == (2, 3, 1, 2, 2, 2)
    frame = ProbeResult.load(tmp_path / "out" / "probes").to_frame()
    assert len(frame) == 2 * 3 * 1 * 2 * 2 * 2
    assert set(frame["probe"]) == {"relevance", "control"}
    assert {"model", "layer", "pooling", "task", "fold", "accuracy"} <= set(frame.columns)
    assert (tmp_path / "out" / "probe.png").stat().st_size > 1000
    calls = []
    real = study_module.probe_model
    monkeypatch.setattr(study_module, "probe_model",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_probes([str(a), str(b)], beir, tmp_path / "out", config, progress=False)
    assert calls == []  # both models finished: loaded, never recomputed
    np.testing.assert_array_equal(again.accuracy, result.accuracy)
    other = dataclasses.replace(config, seed=1)
    with pytest.raises(IrlensError, match="cannot be resumed.*seed"):
        run_probes([str(a), str(b)], beir, tmp_path / "out", other, progress=False)


def test_the_same_model_given_twice_is_probed_once(tiny_root, beir, tmp_path, monkeypatch):
    a = tiny_model_dir(tiny_root, seed=0)
    config = ProbeConfig(n_candidates=2, folds=2, max_queries=None, max_length=32,
                         poolings=("mean",), tasks=("pairwise",))
    calls = []
    real = study_module.probe_model
    monkeypatch.setattr(study_module, "probe_model",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    result = run_probes([str(a), str(a)], beir, tmp_path / "o", config, progress=False)
    assert calls == [1]
    np.testing.assert_array_equal(result.accuracy[0], result.accuracy[1])


def test_probe_page_opens_offline_in_chromium(tiny_root, beir, tmp_path):
    a, b = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    config = ProbeConfig(n_candidates=2, folds=2, max_queries=None, max_length=32,
                         poolings=("cls",), tasks=("pairwise",))
    run_probes([str(a), f"{b}"], beir, tmp_path / "o", config, progress=False)
    page = tmp_path / "o" / "probe.html"
    html = page.read_text()
    assert "<script" not in html and "http" not in html
    seen = open_in_chromium(page)
    assert seen["errors"] == []
    assert seen["images"] and all(done and width > 0 for done, width in seen["images"])
    assert "pairwise, cls pooling" in seen["text"]


def test_cli_probe_prints_json_and_errors_in_one_line(tiny_root, beir, tmp_path):
    a, b = tiny_model_dir(tiny_root, seed=0), tiny_model_dir(tiny_root, seed=1)
    runner = CliRunner()
    res = runner.invoke(app, ["probe", "-m", str(a), "-m", str(b), "-d", str(beir), "-o",
                              str(tmp_path / "cli"), "-n", "2", "--folds", "2", "--queries",
                              "0", "--pooling", "mean", "--task", "pairwise", "--json",
                              "--max-length", "32"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 2 * 3 and {r["task"] for r in rows} == {"pairwise"}
    res = runner.invoke(app, ["probe", "-m", str(a), "-d", str(beir), "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "give --model twice" in res.output


# -- bad input: one line, before any model loads ------------------------------------------

def test_model_given_once_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(IrlensError, match="compares 2 models but got 1"):
        run_probes(["default"], tmp_path / "no-such-data", tmp_path / "o")


def test_two_towers_asked_of_a_cross_encoder(tiny_root):
    cross = tiny_model_dir(tiny_root, kind="cross")
    with pytest.raises(IrlensError, match="cross-encoder: it has no query and document"):
        check_specs(["default", str(cross)])


def test_fewer_hard_negatives_than_n_needs(tmp_path, beir):
    from irlens.data import load_dataset

    with pytest.raises(IrlensError, match="N=5 needs 4 hard negatives but the BM25 depth is 3"):
        ProbeConfig(n_candidates=5, depth=3).check()
    with pytest.raises(IrlensError, match="have 39 BM25 hard negatives"):
        build_items(load_dataset(beir), 40, folds=2)


def test_empty_split_is_refused(tmp_path):
    from irlens.data import load_dataset

    folder = write_probe_beir(tmp_path / "d")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(IrlensError) as err:
        build_items(load_dataset(folder, split="dev"), 3, folds=2)
    assert "\n" not in str(err.value) and "dev" in str(err.value)


def test_spec_and_config_errors():
    with pytest.raises(IrlensError, match="is not DOC\\+QUERY"):
        load_encoder("a+")
    with pytest.raises(IrlensError, match="unknown task"):
        ProbeConfig(tasks=("ranking",)).check()
    with pytest.raises(IrlensError, match="cannot fill 5 folds"):
        ProbeConfig(max_queries=3).check()


@pytest.mark.real
def test_real_default_model_probe_on_scifact(data_dir, tmp_path):
    """The same model twice gives the same curve; the last layer's shared scorer picks the
    relevant passage of 5 well above chance (all-MiniLM-L6-v2 is retrieval-trained)."""
    config = ProbeConfig(n_candidates=5, folds=3, max_queries=60, max_length=96,
                         poolings=("mean",), tasks=("listwise",), listwise="shared")
    result = run_probes(["default", "default"], data_dir / "scifact", tmp_path / "o", config,
                        progress=False)
    np.testing.assert_array_equal(result.accuracy[0], result.accuracy[1])
    last = result.accuracy[0, -1, 0, 0, 0].mean()
    assert last > 0.4, last
