"""Study sections against the plain APIs they adapt: the neuron study and pruning give the
same scores and metrics inside a study as run on their own; the probe section equals
:func:`irlens.probing.probe_model` and refuses a cross-encoder naming its config line."""

from __future__ import annotations

import pandas as pd
import pytest
from study_helpers import write_study

from irlens.errors import IrlensError
from irlens.study import StudyResult, load_spec, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

NEURONS = """\
sections:
  neurons:
    triplets: 4
    shard_size: 2
    n_steps: 3
    keep: all
    max_length: 64
  prune:
    p: [10.0]
    seeds: 2
    depth: 8
    metrics: [nDCG@10, RR@10]
"""

PROBE = """\
sections:
  probe:
    queries: 8
    n_candidates: 2
    folds: 2
    poolings: [mean]
    tasks: [pairwise]
"""


def _result(out, run, prefix: str) -> StudyResult:
    [key] = [k for k in run.jobs if k.startswith(prefix)]
    return StudyResult.load(out / "jobs" / key)


def test_neurons_and_prune_equal_the_plain_neuron_study_and_pruning(tmp_path):
    from irlens.models import load_model
    from irlens.neurons import PruningConfig, StudyConfig, evaluate_pruning
    from irlens.neurons import run_study as neuron_study
    from irlens.study.sections.neurons import scores_table

    path = write_study(tmp_path, sections=NEURONS)
    run = run_study(path, tmp_path / "out", progress=False, report=False)
    spec = load_spec(path)
    model = load_model(spec.model, device="cpu")
    data = tmp_path / "data"
    plain = neuron_study(model, data, tmp_path / "plain", StudyConfig(
        n_triplets=4, shard_size=2, n_steps=3, keep="all", max_length=64), progress=False)
    key = ["hook", "segment", "unit"]
    mine = scores_table(_result(tmp_path / "out", run, "neurons-tiny-scores"))
    mine = mine.sort_values(key).reset_index(drop=True)
    ref = plain.scores.astype({"hook": str, "segment": str}).sort_values(key) \
        .reset_index(drop=True)
    assert len(mine) == len(ref) > 0
    for col in ("relevant", "nonrelevant", "contrast"):
        assert mine[col].to_numpy() == pytest.approx(ref[col].to_numpy(), rel=1e-6, abs=1e-9)

    pruned = evaluate_pruning(model, data, plain, PruningConfig(
        ps=(10.0,), seeds=2, layer_p=None, depth=8, pool="bm25",
        metrics=("nDCG@10", "RR@10"), batch_size=8), progress=False).rows
    for part, sel, seed in (("intact", "intact", -1), ("top10", "relevance", -1),
                            ("random10-s0", "random", 0), ("random10-s1", "random", 1)):
        got = _result(tmp_path / "out", run, f"prune-tiny-{part}-").values["aggregate"]
        row = pruned[(pruned["selection"] == sel) & (pruned["seed"] == seed)].iloc[0]
        for metric in ("nDCG@10", "RR@10"):
            assert got[metric] == pytest.approx(row[metric], abs=1e-9), (part, metric)


def test_probe_section_equals_probe_model(tmp_path):
    from irlens.data import load_dataset
    from irlens.models import load_model
    from irlens.probing import build_items, probe_model
    from irlens.study.sections.probe import probe_config

    path = write_study(tmp_path, sections=PROBE)
    run = run_study(path, tmp_path / "out", progress=False)
    mine = pd.DataFrame(_result(tmp_path / "out", run, "probe-tiny-probes").rows)
    spec = load_spec(path)
    config = probe_config(0, 8, spec.sections["probe"])
    data = load_dataset(tmp_path / "data")
    model = load_model(spec.model, device="cpu")
    model.max_length = min(model.max_length, 256)
    items = build_items(data, 2, max_queries=8, seed=0, folds=2)
    ref = probe_model(model, items, data, config).summary_frame()
    assert len(mine) == len(ref) == len(model_layers(model))
    for col in ("accuracy", "control", "selectivity"):
        assert mine[col].to_numpy() == pytest.approx(ref[col].to_numpy(), abs=1e-12)
    assert (tmp_path / "out" / "report.html").read_text().count("section-probe") >= 1


def model_layers(model) -> list[str]:
    from irlens.probing import layer_names

    return layer_names(model, "query")


def test_probe_section_on_a_cross_encoder_names_its_line(tmp_path):
    from tiny import tiny_model_dir

    from irlens.study import check_model

    path = write_study(tmp_path, sections=PROBE)
    cross = tiny_model_dir(tmp_path / "models", "bert", "cross")
    text = path.read_text()
    path.write_text(text.replace(text.splitlines()[1], f"model: {cross}"))
    with pytest.raises(IrlensError) as err:
        check_model(load_spec(path))
    assert str(err.value).startswith("tiny.yaml line 10: section 'probe' needs a bi-encoder")
    assert "\n" not in str(err.value)


def test_probe_section_bad_options_name_their_line(tmp_path):
    path = write_study(tmp_path, sections=PROBE.replace("tasks: [pairwise]",
                                                        "tasks: [pointwise]"))
    with pytest.raises(IrlensError, match=r"^tiny.yaml line \d+: sections.probe.tasks"):
        load_spec(path)


ACTIVATIONS = """\
sections:
  activations:
    examples: 4
    sides: [query, doc]
    n_steps: 3
"""


def test_activations_section_equals_the_shard_jobs_of_the_plain_analysis(tmp_path):
    from irlens.activations import ActivationConfig, examples_for
    from irlens.activations.study import attribute_examples, count_rows
    from irlens.data import load_dataset
    from irlens.models import load_model

    path = write_study(tmp_path, sections=ACTIVATIONS)
    run = run_study(path, tmp_path / "out", progress=False)
    spec = load_spec(path)
    data = load_dataset(tmp_path / "data")
    model = load_model(spec.model, device="cpu")
    model.max_length = min(model.max_length, 128)
    config = ActivationConfig(n_examples=4, n_steps=3, shard_size=2)  # other shards: same
    pairs = examples_for(data, 4)
    for side in ("query", "doc"):
        shards = [attribute_examples(model, data, pairs[i:i + 2], side, config)
                  for i in (0, 2)]
        ref = pd.DataFrame(count_rows(model.model_id, side, shards, config))
        mine = pd.DataFrame(_result(tmp_path / "out", run, f"activations-tiny-{side}-").rows)
        assert len(mine) == len(ref) > 0
        for col in ("active_per_example", "units_ever", "gini", "participation_ratio"):
            assert mine[col].to_numpy() == pytest.approx(ref[col].to_numpy(), abs=1e-9), col
    assert "section-activations" in (tmp_path / "out" / "report.html").read_text()
