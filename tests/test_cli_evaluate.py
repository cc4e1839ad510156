"""``irlens evaluate`` end to end: JSON on stdout and in --output, run files, errors."""

from __future__ import annotations

import json
import re
import sys

import pytest
from tiny import tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens.cli import app
from irlens.retrieval import load_run

runner = CliRunner()


def evaluate_cli(*args: str):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def test_help_explains_the_options():
    result = evaluate_cli("--help")
    assert result.exit_code == 0
    for words in ("--model", "'bm25'", "--rerank-from", "ir_measures", "--per-query"):
        assert words in result.stdout


@pytest.mark.real
def test_bm25_on_scifact_subset_writes_json_and_run(data_dir, tmp_path):
    out, run_file = tmp_path / "out" / "results.json", tmp_path / "run.trec"
    result = evaluate_cli(
        "--model",
        "bm25",
        "--data",
        data_dir / "scifact",
        "--max-queries",
        "20",
        "--max-docs",
        "300",
        "--metrics",
        "nDCG@10,MAP",
        "--k",
        "50",
        "--output",
        out,
        "--run-file",
        run_file,
        "--per-query",
    )
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text()) == printed
    assert printed["metrics"] == ["nDCG@10", "AP"]
    assert printed["n_queries"] == 20 and printed["n_docs"] == 300
    assert 0.5 < printed["aggregate"]["nDCG@10"] <= 1.0
    assert len(printed["per_query"]) == 20
    run = load_run(run_file)
    assert len(run) == 20 and all(len(docs) <= 50 for docs in run.values())


def test_tiny_bi_encoder_and_cross_encoder(tiny_root, tmp_path):
    data = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    bi = evaluate_cli(
        "--model",
        tiny_model_dir(tiny_root, "bert", "bi"),
        "--data",
        data,
        "--cache-dir",
        cache,
        "--device",
        "cpu",
        "--k",
        "5",
    )
    assert bi.exit_code == 0, bi.stderr
    assert json.loads(bi.stdout)["retriever"] == "BiEncoder"
    assert list((cache / "embeddings").glob("*/embeddings.npy"))

    save = tmp_path / "first.trec"
    evaluate_cli("--model", "bm25", "--data", data, "--run-file", save)
    cross = evaluate_cli(
        "--model",
        tiny_model_dir(tiny_root, "bert", "cross"),
        "--data",
        data,
        "--rerank-from",
        save,
        "--k",
        "2",
        "--run-file",
        tmp_path / "re.trec",
    )
    assert cross.exit_code == 0, cross.stderr
    payload = json.loads(cross.stdout)
    assert payload["retriever"] == "CrossEncoder" and payload["rerank_from"] == str(save)
    first, reranked = load_run(save), load_run(tmp_path / "re.trec")
    for qid, docs in reranked.items():
        assert set(docs) <= set(first[qid]) and len(docs) <= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "bm25", "--data", "{tmp}/missing"], r"no dataset folder .*missing"),
        (["--model", "bm25", "--data", "{data}", "--split", "dev"], r"available splits: test"),
        (["--model", "bm25", "--data", "{data}", "--metrics", "nDCG@ten"], r"unknown metric"),
        (
            ["--model", "bm25", "--data", "{data}", "--rerank-from", "{tmp}/none.trec"],
            r"no such run file",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr(tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # as when it is not installed
    data = write_beir(tmp_path / "tiny")
    args = [a.format(tmp=tmp_path, data=data) for a in args]
    result = evaluate_cli(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def test_strict_and_out_folder(tmp_path):
    from irlens.evaluation import Evaluation

    data = write_beir(tmp_path / "tiny")
    qrels = data / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q1\tgone\t1\n")
    lenient = evaluate_cli("--model", "bm25", "--data", data, "--out", tmp_path / "ev")
    assert lenient.exit_code == 0, lenient.stderr
    # the CLI prints warnings as one line on stderr
    assert re.search(r"^warning: .*: 1 of 6 judgements name documents missing",
                     lenient.stderr, re.MULTILINE)
    saved = Evaluation.load(tmp_path / "ev")
    assert saved.aggregate == json.loads(lenient.stdout)["aggregate"]
    assert saved.to_frame()["query_id"].tolist() == ["q1", "q2", "q3"]
    strict = evaluate_cli("--model", "bm25", "--data", data, "--strict")
    assert strict.exit_code == 2 and strict.stdout == ""
    assert re.match(r"error: .*1 of 6 judgements name documents missing", strict.stderr)


@pytest.mark.real
def test_default_model_on_a_scifact_subset(data_dir, tmp_path):
    result = evaluate_cli(
        "--model",
        "default",
        "--data",
        data_dir / "scifact",
        "--max-docs",
        "40",
        "--max-queries",
        "15",
        "--cache-dir",
        tmp_path,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["retriever"] == "BiEncoder" and payload["dtype"] == "float32"
    assert payload["aggregate"]["nDCG@10"] > 0.8
