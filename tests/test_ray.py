"""Ray: a study on a local Ray cluster equals the single-process run, resumes across the
two, and survives a worker killed mid-run. One Ray session (``num_cpus=2``) for the file."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from study_helpers import write_study

from irlens.study import StudyResult, load_spec, run_study

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed: pip install irlens[ray] (CI installs it)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The single-process run of the tiny study (the reference)."""
    root = tmp_path_factory.mktemp("local")
    path = write_study(root, group=1, steps=4)
    run = run_study(path, root / "out", progress=False, report=False)
    return path, root / "out", run


def _on_ray(path, out):
    """The study at ``path`` run into ``out`` on two Ray workers (the executor passed in)."""
    from irlens.distributed import WorkerPool

    with WorkerPool(load_spec(path), workers=2) as pool:
        return run_study(path, out, executor=pool, progress=False, report=False)


def _killer(title: str, ready=lambda: True) -> tuple[threading.Thread, list[int]]:
    """A started thread that SIGKILLs the first busy Ray worker of this session whose
    process title contains ``title`` (once ``ready()``); the killed pids."""
    import psutil

    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            busy = [p for p in psutil.process_iter(["pid", "cmdline"])  # of this session
                    if title in " ".join(p.info["cmdline"] or [])
                    and os.getpid() in {q.pid for q in p.parents()}]
            if busy and ready():
                os.kill(busy[0].pid, signal.SIGKILL)
                killed.append(busy[0].pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_a_worker, daemon=True)
    thread.start()
    return thread, killed


def _assert_same(a_dir, b_dir, keys):
    for key in keys:
        a, b = StudyResult.load(a_dir / key), StudyResult.load(b_dir / key)
        for name in StudyResult.array_fields:
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), (key, name)
            if x is not None:
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=f"{key} {name}")
        for name, value in a.values.get("aggregate", {}).items():
            assert b.values["aggregate"][name] == pytest.approx(value, abs=1e-6), key
        assert len(a.rows) == len(b.rows), key
        for ra, rb in zip(a.rows, b.rows, strict=True):
            for col, v in ra.items():
                if col == "seconds":  # wall time, not a result
                    continue
                if isinstance(v, float):
                    assert rb[col] == pytest.approx(v, abs=1e-6, nan_ok=True), (key, col)
                else:
                    assert rb[col] == v, (key, col)


def test_ray_equals_single_process_and_resumes_either_way(cluster, local, tmp_path):
    path, local_out, reference = local
    out = tmp_path / "ray"
    run = _on_ray(path, out)
    assert sorted(run.jobs) == sorted(reference.jobs)
    assert len(run.computed) == len(set(run.computed)) == len(run.jobs)
    _assert_same(local_out / "jobs", out / "jobs", run.jobs)
    # a Ray run finishes a single-process one ...
    half = tmp_path / "half"
    shutil.copytree(local_out, half)
    dropped = sorted(run.jobs)[::2]
    for key in dropped:
        shutil.rmtree(half / "jobs" / key)
    resumed = _on_ray(path, half)
    assert sorted(resumed.computed) == dropped
    # ... and a single-process run finishes a Ray one
    for key in dropped:
        shutil.rmtree(out / "jobs" / key)
    again = run_study(path, out, progress=False, report=False)
    assert sorted(again.computed) == dropped
    _assert_same(local_out / "jobs", out / "jobs", run.jobs)


def test_a_worker_killed_mid_run_has_its_job_retried(cluster, local, tmp_path):
    import psutil

    path, local_out, reference = local
    out = tmp_path / "killed"
    jobs = out / "jobs"
    thread, killed = _killer("StudyWorker.run", lambda: jobs.is_dir() and any(
        p.name.startswith("faithfulness") for p in jobs.iterdir()))
    run = _on_ray(path, out)
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    assert not psutil.pid_exists(killed[0]) or \
        psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert sorted(run.jobs) == sorted(reference.jobs)
    assert sorted(run.computed) == sorted(set(run.computed)) == sorted(run.jobs)  # once each
    assert not [p for p in (out / "jobs").iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    _assert_same(local_out / "jobs", out / "jobs", run.jobs)


def test_evaluate_with_ray_encodes_on_workers_and_matches(cluster, local, tmp_path):
    import json

    from typer.testing import CliRunner

    from irlens.cli import app

    spec = load_spec(local[0])
    common = ["evaluate", "--model", spec.model, "--data", spec.datasets["tiny"].path,
              "--device", "cpu", "--metrics", "nDCG@10,RR@10"]
    plain = CliRunner().invoke(app, [*common, "--cache-dir", str(tmp_path / "a")])
    scaled = CliRunner().invoke(app, [*common, "--cache-dir", str(tmp_path / "b"),
                                      "--ray", "auto", "--workers", "2"])
    assert plain.exit_code == 0 and scaled.exit_code == 0, scaled.output
    a, b = json.loads(plain.stdout), json.loads(scaled.stdout)
    for name, value in a["aggregate"].items():
        assert b["aggregate"][name] == pytest.approx(value, abs=1e-6)
    [x] = list((tmp_path / "a").rglob("embeddings.npy"))
    [y] = list((tmp_path / "b").rglob("embeddings.npy"))
    np.testing.assert_allclose(np.load(x), np.load(y), rtol=0, atol=1e-6)


def test_corpus_chunks_encoded_on_ray_fill_the_cache_like_one_process(cluster, local,
                                                                       tmp_path):
    """Several chunks on two workers (finishing in any order): the cached matrix and its
    saved progress equal a single-process encoding of the same texts."""
    import json

    from irlens._encoding import PROGRESS, encode_cached
    from irlens.distributed import RayExecutor
    from irlens.models import load_model

    spec = load_spec(local[0])
    model = load_model(spec.model, device="cpu")
    texts = spec.datasets["tiny"].load().doc_texts()
    plain = encode_cached(model, texts, tmp_path / "plain", {}, 4, 4, False, "docs")
    with RayExecutor("auto", spec.model, workers=2, device="cpu") as executor:
        scaled = encode_cached(model, texts, tmp_path / "ray", {}, 4, 4, False, "docs",
                               executor=executor)
        assert len(executor.actors) == 2  # the chunks went to the workers
    assert executor.actors == []  # closed with the block
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(plain), rtol=0, atol=1e-6)
    assert not (tmp_path / "ray" / PROGRESS).exists()  # finished: progress removed
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["shape"] == [len(texts), plain.shape[1]]


def _cli(*args) -> str:
    import json

    from typer.testing import CliRunner

    from irlens.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else result.stdout


def _artefacts(folder) -> dict[str, float]:
    """Every saved job artefact under ``folder`` and its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("manifest.json") if "jobs" in p.parts}


def _count_dispatched(monkeypatch) -> list[int]:
    """Count the jobs sent to Ray workers (a spy: the real pickling still runs)."""
    import irlens.distributed as distributed

    sent: list[int] = []
    real = distributed._dumps_by_reference

    def spy(job):
        sent.append(1)
        return real(job)

    monkeypatch.setattr(distributed, "_dumps_by_reference", spy)
    return sent


def test_neurons_and_prune_with_ray_equal_the_plain_commands_and_resume_without(
        cluster, local, tmp_path, monkeypatch):
    import pandas as pd

    spec = load_spec(local[0])
    data = Path(spec.datasets["tiny"].path)
    common = ["--model", spec.model, "--data", data, "--triplets", "4", "--keep", "all",
              "--shard-size", "1", "--steps", "3", "--device", "cpu", "--p", "10"]
    _cli("neurons", *common, "--out", tmp_path / "plain")
    sent = _count_dispatched(monkeypatch)
    _cli("neurons", *common, "--out", tmp_path / "ray", "--ray", "auto", "--workers", "2")
    assert len(sent) == 1 + 4  # the triplets job and one NIG shard per triplet
    name = data.name
    a = pd.read_parquet(tmp_path / "plain" / name / "scores.parquet")
    b = pd.read_parquet(tmp_path / "ray" / name / "scores.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-6)
    saved = _artefacts(tmp_path / "ray")
    assert len([k for k in saved if "shard-" in k]) == 4
    _cli("neurons", *common, "--out", tmp_path / "ray")  # without Ray: nothing recomputed
    assert _artefacts(tmp_path / "ray") == saved

    prune = ["--data", data, "--p", "10", "--seeds", "2", "--layer-p", "0", "--depth", "8",
             "--pool", "bm25", "--device", "cpu"]
    _cli("prune", "--neurons", tmp_path / "plain" / name, *prune)
    _cli("prune", "--neurons", tmp_path / "ray" / name, *prune, "--ray", "auto",
         "--workers", "2")
    assert len(sent) == 5 + 4  # intact, top 10%, two random seeds
    rows = [pd.read_parquet(next((tmp_path / side / name / "pruning").rglob("table.parquet")))
            for side in ("plain", "ray")]
    cols = ["experiment", "p", "selection", "seed", "nDCG@10", "RR@10"]
    pd.testing.assert_frame_equal(rows[0][cols], rows[1][cols], check_exact=False, rtol=0,
                                  atol=1e-9)


def test_faithfulness_with_ray_equals_the_plain_command(cluster, local, tmp_path,
                                                       monkeypatch):
    from irlens.attribution.study import FaithfulnessTable

    spec = load_spec(local[0])
    common = ["faithfulness", "--model", spec.model, "--data", spec.datasets["tiny"].path,
              "--pairs", "3", "--methods", "ig-mask,gxi,random", "--n-steps", "2",
              "--candidates", "5", "--device", "cpu", "--json"]
    _cli(*common, "--out", tmp_path / "plain")
    sent = _count_dispatched(monkeypatch)
    _cli(*common, "--out", tmp_path / "ray", "--ray", "auto", "--workers", "2")
    assert len(sent) == 3  # one job per pair
    a = FaithfulnessTable.load(tmp_path / "plain" / "table").to_frame()
    b = FaithfulnessTable.load(tmp_path / "ray" / "table").to_frame()
    numeric = [c for c in a.columns if a[c].dtype.kind == "f" and c != "seconds"]
    assert len(a) == len(b) == 9 and numeric
    assert a[numeric].to_numpy() == pytest.approx(b[numeric].to_numpy(), abs=1e-6,
                                                  nan_ok=True)


def test_a_job_holding_part_of_a_model_is_refused_before_it_is_sent(local):
    from irlens.distributed import _dumps_by_reference
    from irlens.errors import IrlensError
    from irlens.models import load_model

    model = load_model(load_spec(local[0]).model, device="cpu")
    whole = _dumps_by_reference(lambda: model.max_length)  # the model: a reference only
    assert len(whole) < 10_000
    layer = next(m for m in model.modules() if m is not model)
    with pytest.raises(IrlensError, match="not a whole irlens model; it cannot run on Ray"):
        _dumps_by_reference(lambda: layer)


@pytest.mark.parametrize("command", [
    ["neurons", "--data", "{beir}"],
    ["prune", "--neurons", "{tmp}", "--data", "{beir}"],
    ["faithfulness", "--data", "{beir}"],
])
def test_unreachable_ray_address_on_the_plain_commands_is_one_line(command, tmp_path):
    from tiny_data import write_beir
    from typer.testing import CliRunner

    from irlens.cli import app

    beir = write_beir(tmp_path / "beir")  # valid options: the cluster is what fails
    args = [a.format(beir=beir, tmp=tmp_path) for a in command]
    result = CliRunner().invoke(app, [*args, "--ray", "127.0.0.1:9"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot reach a Ray cluster at 127.0.0.1:9 ("), lines[0]


def test_a_job_worker_killed_mid_job_is_retried_by_the_plain_command(cluster, local,
                                                                      tmp_path):
    import pandas as pd
    import psutil

    spec = load_spec(local[0])
    data = Path(spec.datasets["tiny"].path)
    common = ["--model", spec.model, "--data", data, "--triplets", "4", "--keep", "all",
              "--shard-size", "1", "--steps", "40", "--device", "cpu"]
    thread, killed = _killer("JobWorker.run")
    _cli("neurons", *common, "--out", tmp_path / "ray", "--ray", "auto", "--workers", "2")
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    assert not psutil.pid_exists(killed[0]) or \
        psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    _cli("neurons", *common, "--out", tmp_path / "plain")
    a = pd.read_parquet(tmp_path / "plain" / data.name / "scores.parquet")
    b = pd.read_parquet(tmp_path / "ray" / data.name / "scores.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-6)
    jobs = tmp_path / "ray" / data.name / "jobs"
    assert sorted(p.name for p in jobs.iterdir()) == ["shard-00000", "shard-00001",
                                                      "shard-00002", "shard-00003", "triplets"]
