"""docs/reproduce: ``irlens evaluate --json`` output becomes the README's retrieval rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import ir_measures
from tiny_data import QRELS, write_beir
from typer.testing import CliRunner

from irlens.cli import app
from irlens.retrieval import load_run

ROOT = Path(__file__).resolve().parent.parent


def _convert():
    spec = importlib.util.spec_from_file_location("convert", ROOT / "docs/reproduce/convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_json_files_become_the_retrieval_rows(tmp_path, monkeypatch):
    convert = _convert()
    out = tmp_path / "out"
    out.mkdir()
    expected = {}
    for name in ("scifact", "nfcorpus", "msmarco-dl19"):
        data = write_beir(tmp_path / "data" / name)
        run_file = tmp_path / f"{name}.trec"
        result = CliRunner().invoke(app, ["evaluate", "--model", "bm25", "--data", str(data),
                                          "--k", "5", "--run-file", str(run_file), "--json"])
        assert result.exit_code == 0, result.stderr
        (out / f"bm25-{name}.json").write_text(result.stdout)
        qrels = [ir_measures.Qrel(q, d, s) for q, d, s in QRELS["test"]]
        run = [ir_measures.ScoredDoc(q, d, s)
               for q, docs in load_run(run_file).items() for d, s in docs.items()]
        expected[name] = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)
    # only BM25 here (no model to load): every row reads the bm25 files
    monkeypatch.setattr(convert, "RETRIEVAL", [(d, "BM25", "bm25", "ref") for d in expected])
    rows = convert.retrieval_rows(out)
    assert [r[0] for r in rows] == ["scifact", "nfcorpus", "msmarco-dl19 (6-passage pool)"]
    for row, value in zip(rows, expected.values(), strict=True):
        assert row[1:] == ["BM25", f"{value[ir_measures.nDCG @ 10]:.4f}", "ref"]


def test_a_results_file_of_another_model_is_refused(tmp_path, monkeypatch):
    convert = _convert()
    (tmp_path / "bm25-scifact.json").write_text(json.dumps(
        {"model": "default", "dataset": "scifact", "split": "test", "n_docs": 1,
         "aggregate": {"nDCG@10": 0.5}}))
    monkeypatch.setattr(convert, "RETRIEVAL", [("scifact", "BM25", "bm25", "")])
    try:
        convert.retrieval_rows(tmp_path)
    except SystemExit as exit_:
        assert "holds default on scifact" in str(exit_)
    else:
        raise AssertionError("a file of another model was read as BM25's")


def test_a_partial_rerun_keeps_the_old_rows_and_says_which(tmp_path, monkeypatch):
    convert = _convert()
    results, out = tmp_path / "results", tmp_path / "out"
    results.mkdir()
    out.mkdir()
    old = [["scifact", "BM25", "0.1111", ""], ["nfcorpus", "BM25", "0.2222", ""]]
    (results / "retrieval.json").write_text(json.dumps(
        {"title": "t", "command": "c", "runtime": "r", "columns": ["a", "b", "c", "d"],
         "rows": old, "notes": ""}))
    (out / "bm25-scifact.json").write_text(json.dumps(
        {"model": "bm25", "dataset": "scifact", "split": "test", "n_docs": 3,
         "aggregate": {"nDCG@10": 0.67619}}))
    monkeypatch.setattr(convert, "RESULTS", results)
    monkeypatch.setattr(convert, "RETRIEVAL", [("scifact", "BM25", "bm25", ""),
                                               ("nfcorpus", "BM25", "bm25", "")])
    convert.retrieval(out, partial=True)
    written = json.loads((results / "retrieval.json").read_text())
    assert written["rows"] == [["scifact", "BM25", "0.6762", ""], old[1]]
    assert written["notes"] == ("Rows not rerun in the last run, kept from the run before: "
                                "bm25 on nfcorpus.")
    assert written["title"] == "t" and written["command"] == "c"
