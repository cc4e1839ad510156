"""The training-data guard: a trained model records the files it read, and evaluating it
on any of them warns in one line (a leak), on another collection not at all."""

from __future__ import annotations

import pytest
from test_training import write_train_beir
from tiny import tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens.cli import app
from irlens.training import train_cross_encoder
from irlens.training.provenance import file_sha1, leak_warning, read_provenance

pytestmark = pytest.mark.usefixtures("one_thread")


def _evaluate(model, data):
    return CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(data),
                                    "--device", "cpu", "--metrics", "nDCG@10", "--k", "5"])


def test_evaluating_on_training_data_warns_in_one_line(tiny_root, tmp_path, capsys):
    train = write_train_beir(tmp_path / "train")
    other = write_beir(tmp_path / "other")
    out = tmp_path / "ce"
    train_cross_encoder(train, out, base=str(tiny_model_dir(tiny_root, "bert", "bi")),
                        negatives=1, batch_size=4, max_length=32, device="cpu",
                        eval_split="test", eval_depth=5, progress=False)
    read = {r["role"]: r for r in read_provenance(out)}
    assert set(read) == {"corpus", "queries", "qrels:train"}
    assert read["qrels:train"]["sha1"] == file_sha1(train / "qrels" / "train.tsv")
    same = _evaluate(out, train)
    assert same.exit_code == 0, same.stderr
    warnings = [ln for ln in same.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "corpus, queries" in warnings[0]
    assert "not held out" in warnings[0]
    clean = _evaluate(out, other)
    assert clean.exit_code == 0, clean.stderr
    assert "warning:" not in clean.stderr
    # files are compared by content: the training corpus copied beside other queries is caught
    copy = write_beir(tmp_path / "copy")
    (copy / "corpus.jsonl").write_bytes((train / "corpus.jsonl").read_bytes())
    assert "trained on corpus of" in leak_warning(out, copy, "test")
    assert leak_warning(out, other, "test") is None
    assert "qrels:train" in leak_warning(out, train, "train")
    assert leak_warning(tiny_model_dir(tiny_root, "bert", "bi"), train, "test") is None
    # a study's datasets get the same one-line warning, once
    from irlens.study import parse_spec
    from irlens.study.jobs import Context

    capsys.readouterr()
    spec = parse_spec(f"name: t\nmodel: {out}\ndevice: cpu\ndatasets:\n  a:\n"
                      f"    path: {train}\n  b:\n    path: {other}\n"
                      "sections:\n  evaluate:\n    metrics: [nDCG@10]\n")
    context = Context(spec)
    context.dataset("a"), context.dataset("a"), context.dataset("b")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "not held out" in err
