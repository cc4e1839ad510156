"""``irlens study``: config errors naming the line, plan, resume (also after kill -9),
exactly the edited jobs rerun, results equal the plain API, and the report in Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_helpers import write_study
from typer.testing import CliRunner

from irlens.cli import app
from irlens.errors import IrlensError
from irlens.study import EXAMPLE, StudyResult, load_spec, parse_spec, plan_study, run_study

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished tiny study (every section) and its config."""
    root = tmp_path_factory.mktemp("study")
    path = write_study(root, title="tiny <script>alert(1)</script> & co")
    run = run_study(path, root / "out", progress=False)
    return path, root / "out", run


def _error(text: str, tmp_path: Path) -> str:
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(IrlensError) as err:
        load_spec(tmp_path / "s.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def _base(tmp_path: Path) -> str:
    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True, exist_ok=True)
    return f"model: default\ndatasets:\n  tiny:\n    path: {data}\n"


def test_unknown_section_names_its_line(tmp_path):
    msg = _error(_base(tmp_path) + "sections:\n  evaluate: {}\n  probes: {}\n", tmp_path)
    assert msg.startswith("s.yaml line 7: unknown section 'probes'")
    assert "evaluate, faithfulness, neurons, prune" in msg


def test_missing_dataset_names_its_line(tmp_path):
    text = "model: default\ndatasets:\n  scifact:\n    path: nowhere/scifact\n" \
           "sections:\n  evaluate: {}\n"
    msg = _error(text, tmp_path)
    assert msg.startswith("s.yaml line 4: dataset 'scifact': no BEIR folder at")
    undeclared = _base(tmp_path) + "sections:\n  evaluate:\n    datasets: [tiny, nfcorpus]\n"
    msg = _error(undeclared, tmp_path)
    assert msg.startswith("s.yaml line 7: section 'evaluate' names dataset 'nfcorpus'")


def test_wrong_type_names_its_line(tmp_path):
    text = _base(tmp_path) + "sections:\n  neurons:\n    triplets: thirty\n"
    msg = _error(text, tmp_path)
    assert msg == ("s.yaml line 7: sections.neurons.triplets must be an integer, "
                   "got 'thirty'")
    msg = _error(_base(tmp_path) + "sections:\n  prune:\n    p: [1, x]\n", tmp_path)
    assert msg.startswith("s.yaml line 7: sections.prune.p item 'x' ")
    msg = _error(_base(tmp_path) + "seed: -1\nsections:\n  evaluate: {}\n", tmp_path)
    assert msg == "s.yaml line 5: seed must be >= 0, got -1; pass a value of 0 or more"
    msg = _error(_base(tmp_path) + "device: gpu\nsections:\n  evaluate: {}\n", tmp_path)
    assert msg == "s.yaml line 5: device must be auto, cpu or cuda, got 'gpu'"  # as the CLI's


def test_the_study_and_the_cli_share_their_option_checks():
    """One check per option: the study's top-level and dataset fields run the check the
    CLI options of the same name run (irlens.options.common)."""
    from irlens.options import common
    from irlens.study.config import DATASET_FIELDS, TOP_FIELDS

    for field, option in ((TOP_FIELDS["seed"], common.SEED),
                          (TOP_FIELDS["device"], common.DEVICE),
                          (TOP_FIELDS["batch_size"], common.BATCH_SIZE),
                          (DATASET_FIELDS["max_docs"], common.MAX_DOCS),
                          (DATASET_FIELDS["max_queries"], common.MAX_QUERIES)):
        assert field.rule is option.check and field.default == option.default


def test_bad_yaml_and_unknown_fields_name_their_line(tmp_path):
    assert _error(_base(tmp_path) + "sections: [\n", tmp_path).startswith("s.yaml line ")
    msg = _error(_base(tmp_path) + "sections:\n  evaluate:\n    metric: [nDCG@10]\n",
                 tmp_path)
    assert msg.startswith("s.yaml line 7: unknown field 'metric' in section 'evaluate'")
    msg = _error(_base(tmp_path) + "sections:\n  evaluate:\n    metrics: [nDCG@x]\n",
                 tmp_path)
    assert msg.startswith("s.yaml line 7: unknown metric 'nDCG@x'")


def test_cross_encoder_section_on_a_bi_encoder_names_its_line(tmp_path):
    from irlens.study import check_model

    path = write_study(tmp_path, sections="sections:\n  neurons:\n    keep: classified\n")
    spec = load_spec(path)
    with pytest.raises(IrlensError) as err:
        check_model(spec)
    assert str(err.value).startswith("tiny.yaml line 11: sections.neurons.keep 'classified' "
                                     "needs a cross-encoder, but model")


def test_cli_errors_are_one_line(tmp_path):
    path = write_study(tmp_path)
    text = path.read_text().replace("seeds: 2", "seeds: two")
    path.write_text(text)
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny.yaml line 26:")


def test_unreachable_ray_address_fails_fast_in_one_line(tmp_path):
    path = write_study(tmp_path)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["study", str(path), "--ray", "127.0.0.1:9"])
    assert time.perf_counter() - start < 30
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot reach a Ray cluster at 127.0.0.1:9")
    result = CliRunner().invoke(app, ["study", str(path), "--ray", "nohost"])
    assert "is not 'auto' or HOST:PORT" in result.output


def test_init_writes_the_commented_example(tmp_path):
    target = tmp_path / "study.yaml"
    result = CliRunner().invoke(app, ["study", str(target), "--init"])
    assert result.exit_code == 0 and target.read_text() == EXAMPLE
    spec = parse_spec(EXAMPLE, check_paths=False)
    assert list(spec.sections) == ["evaluate", "faithfulness", "neurons", "prune"]
    assert "# " in EXAMPLE
    again = CliRunner().invoke(app, ["study", str(target), "--init"])
    assert again.exit_code == 2 and "exists" in again.output
    shipped = load_spec(REPO / "examples" / "study.yaml", check_paths=False)
    assert shipped.model == "default" and set(shipped.datasets) == {"scifact", "nfcorpus"}
    assert shipped.sections["faithfulness"]["pairs"] == 20
    assert shipped.sections["neurons"]["triplets"] == 30
    assert shipped.sections["prune"]["p"] == [1.0] and shipped.sections["prune"]["seeds"] == 3


def test_dry_run_plans_then_reports_everything_done(study, tmp_path):
    path, out, run = study
    fresh = plan_study(path, tmp_path / "none").to_dict()
    assert fresh["done"] == 0 and fresh["later"] > 0
    assert fresh["sections"]["evaluate/tiny"]["jobs"] == 5  # 16 docs / 4 + bm25
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(out), "--dry-run",
                                      "--json"])
    plan = json.loads(result.stdout)
    assert plan["jobs"] == len(run.jobs) == plan["done"] and plan["later"] == 0
    assert plan["work_left"] == 0


def test_rerun_computes_nothing_and_edits_rerun_exactly_their_jobs(study, tmp_path):
    path, out, run = study
    assert sorted(run.computed) == sorted(run.jobs)
    again = run_study(path, out, progress=False, report=False)
    assert again.computed == [] and sorted(again.jobs) == sorted(run.jobs)
    # a copy of the finished folder, then an edit of one NIG parameter
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    edited = tmp_path / "edited.yaml"
    edited.write_text(path.read_text().replace("n_steps: 3", "n_steps: 4"))
    rerun = run_study(edited, copy, progress=False, report=False)
    kinds = sorted({k.split("-")[0] + "-" + k.split("-")[2] for k in rerun.computed})
    # NIG shards, their scores and every pruning job that uses them; not the triplets,
    # not the intact model, not the other sections
    assert {k.split("-")[0] for k in rerun.computed} == {"neurons", "prune"}
    assert not any("triplets" in k or "intact" in k for k in rerun.computed)
    assert len(rerun.computed) == 2 + 1 + 3, kinds


def test_evaluate_equals_the_plain_api(study):
    from irlens.evaluation import evaluate
    from irlens.models import load_model
    from irlens.retrieval import search

    path, out, run = study
    spec = load_spec(path)
    model = load_model(spec.model, device="cpu")
    dataset = spec.datasets["tiny"].load()
    reference = evaluate(search(model, dataset, k=100, progress=False,
                                cache_dir=out.parent / "cache"), dataset.qrels,
                         ["nDCG@10", "RR@10"])
    key = next(k for k in run.jobs if k.startswith("evaluate-tiny-search"))
    mine = StudyResult.load(out / "jobs" / key)
    for name, value in reference.aggregate.items():
        assert mine.values["aggregate"][name] == pytest.approx(value, abs=1e-6)


@pytest.mark.slow
def test_kill_9_loses_only_the_job_in_flight(tmp_path):
    path = write_study(tmp_path, chunk=1, group=1, steps=6)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "irlens", "study", str(path), "--out",
                             str(out)], env=env, stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    jobs = out / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if jobs.is_dir() and sum((p / "manifest.json").is_file() for p in jobs.iterdir()) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in jobs.iterdir()
                if (p / "manifest.json").is_file()}
    rerun = run_study(path, out, progress=False)
    assert not set(rerun.computed) & set(finished)
    assert len(rerun.computed) == len(rerun.jobs) - len(finished)
    assert all((jobs / k / "manifest.json").stat().st_mtime_ns == t for k, t in finished.items())
    for key in rerun.jobs:  # every job folder is complete and loads
        StudyResult.load(jobs / key)
    assert not [p for p in jobs.iterdir() if p.name.startswith(".") and ".tmp-" not in p.name]


def test_report_in_chromium_shows_every_plot_and_the_saved_numbers(study, tmp_path):
    from playwright.sync_api import sync_playwright

    path, out, run = study
    page_path = out / "report.html"
    html = page_path.read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth])")
        toc = page.eval_on_selector_all("#toc a", "els => els.map(e => e.getAttribute('href'))")
        cells = page.eval_on_selector_all(
            "section[data-section] td[data-value]",
            "els => els.map(e => [e.closest('section').dataset.section, "
            "e.closest('tr').rowIndex - 1, e.dataset.col, parseFloat(e.dataset.value)])")
        title = page.title()
        browser.close()
    assert errors == []
    assert len(images) == 4 and all(ok and width > 0 for ok, width in images)
    assert toc == ["#section-evaluate", "#section-faithfulness", "#section-neurons",
                   "#section-prune", "#provenance"]
    assert "<script>" in title
    # every number in the page, against values recomputed from the saved job tables
    jobs = out / "jobs"

    def table(prefix: str) -> pd.DataFrame:
        [key] = [k for k in run.jobs if k.startswith(prefix)]
        return pd.read_parquet(jobs / key / "table.parquet")

    def saved(prefix: str) -> dict:
        [key] = [k for k in run.jobs if k.startswith(prefix)]
        return json.loads((jobs / key / "manifest.json").read_text())["extra"]["fields"]

    expected = {}
    for row, part in enumerate(("evaluate-tiny-search", "evaluate-tiny-bm25")):
        for metric in ("nDCG@10", "RR@10"):
            expected[("evaluate", row, metric)] = table(part)[metric].mean()
    faith = pd.concat([table(k.rsplit("-", 1)[0]) for k in run.jobs
                       if k.startswith("faithfulness-")])
    for row, method in enumerate(["ig-mask", "gxi", "random"]):
        for metric in ("comprehensiveness", "sufficiency", "log_odds"):
            expected[("faithfulness", row, metric)] = \
                faith.loc[faith["method"] == method, metric].mean()
    intact = saved("prune-tiny-intact")["values"]["aggregate"]
    top = saved("prune-tiny-top10")["values"]["aggregate"]
    rnd = [saved(f"prune-tiny-random10-s{s}")["values"]["aggregate"] for s in (0, 1)]
    for metric in ("nDCG@10", "RR@10"):
        expected[("prune", 0, f"{metric} intact")] = intact[metric]
        expected[("prune", 0, f"{metric} top-p")] = top[metric]
        expected[("prune", 0, f"{metric} random")] = np.mean([r[metric] for r in rnd])
    shown = {(s, r, c): v for s, r, c, v in cells}
    for key, value in expected.items():
        assert shown[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert {k[0] for k in shown} == {"evaluate", "faithfulness", "neurons", "prune"}


@pytest.mark.slow
def test_without_ray_option_ray_is_never_imported(tmp_path):
    path = write_study(tmp_path, sections="sections:\n  evaluate:\n    chunk_size: 8\n")
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom irlens.cli import app\n"
            f"r = CliRunner().invoke(app, ['study', {str(path)!r}, '--out', "
            f"{str(tmp_path / 'o')!r}])\nassert r.exit_code == 0, r.output\n"
            "print('ray' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_second_run_on_the_same_folder_is_refused(study):
    from filelock import FileLock

    path, out, _ = study
    with FileLock(str(out / ".lock"), timeout=0):
        with pytest.raises(IrlensError, match="another irlens study .* is running in"):
            run_study(path, out, progress=False, report=False)
    assert run_study(path, out, progress=False, report=False).computed == []


def test_the_lock_is_held_until_the_report_is_written(study, monkeypatch):
    """While the report is being written, a second run (another lock on the folder) is
    refused; after the run the folder is free again."""
    from filelock import FileLock, Timeout

    import irlens.study.report as report_module

    path, out, _ = study
    held = []
    real = report_module.write_report

    def write_report(*args, **kwargs):
        try:
            FileLock(str(out / ".lock")).acquire(timeout=0).lock.release()
            held.append(False)
        except Timeout:
            held.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(report_module, "write_report", write_report)
    run = run_study(path, out, progress=False)
    assert held == [True] and run.report is not None and run.report.is_file()
    with FileLock(str(out / ".lock"), timeout=0):  # released after the report
        pass


@pytest.mark.slow
def test_a_cross_encoder_study_reranks_bm25_like_the_plain_api(tmp_path):
    from tiny import tiny_model_dir

    from irlens.evaluation import evaluate
    from irlens.models import load_model
    from irlens.retrieval import search
    from irlens.study import check_model

    path = write_study(tmp_path, sections="sections:\n  evaluate:\n    metrics: [nDCG@10]\n"
                       "  neurons:\n    triplets: 2\n    n_steps: 2\n    keep: classified\n")
    cross = tiny_model_dir(tmp_path / "models", "bert", "cross")
    text = path.read_text()
    path.write_text(text.replace(text.splitlines()[1], f"model: {cross}"))
    assert check_model(load_spec(path)) == "cross-encoder"
    path.write_text(path.read_text().replace("keep: classified", "keep: all"))
    run = run_study(path, tmp_path / "out", progress=False)
    spec = load_spec(path)
    data = spec.datasets["tiny"].load()
    reference = evaluate(search(load_model(str(cross), device="cpu"), data, k=100,
                                progress=False), data.qrels, ["nDCG@10"]).aggregate
    [key] = [k for k in run.jobs if k.startswith("evaluate-tiny-rerank")]
    assert StudyResult.load(tmp_path / "out" / "jobs" / key).values["aggregate"]["nDCG@10"] \
        == pytest.approx(reference["nDCG@10"], abs=1e-6)
