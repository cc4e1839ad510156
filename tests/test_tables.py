"""docs/tables.py: README and docs tables are rendered from docs/results/*.json."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _tables()


def _copy(tmp_path: Path) -> Path:
    """The pages, results files and the scripts they name, in a temporary repository."""
    for name in ("README.md",):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs",
                    ignore=shutil.ignore_patterns("*.png", "img", "pairs", "__pycache__"))
    for folder in ("examples", "benchmarks"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def _small_repo(tmp_path: Path, page: str, results: dict[str, dict]) -> Path:
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "reproduce").mkdir()
    (tmp_path / "docs" / "reproduce" / "run.sh").write_text("echo\n")
    (tmp_path / "README.md").write_text(page)
    for name, data in results.items():
        (tmp_path / "docs" / "results" / f"{name}.json").write_text(json.dumps(data))
    return tmp_path


def _results(rows, command="docs/reproduce/run.sh", notes="", **extra):
    return {"title": "t", "command": command, "runtime": "about 2 min on 2 CPU cores",
            "columns": ["data", "nDCG@10"], "rows": rows, "notes": notes, **extra}


def test_the_repository_tables_match_their_results_files():
    assert tables.check(ROOT) == []


def test_a_changed_results_file_is_detected_and_rewritten(tmp_path, capsys):
    root = _copy(tmp_path)
    assert tables.main(["--check", "--root", str(root)]) == 0
    path = root / "docs" / "results" / "retrieval.json"
    data = json.loads(path.read_text())
    assert data["rows"][0][2] == "0.6451"
    data["rows"][0][2] = "0.9999"
    path.write_text(json.dumps(data))
    capsys.readouterr()

    assert tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "README.md: table retrieval + cross_encoder_retrieval" in err
    assert "0.9999" not in (root / "README.md").read_text()  # --check writes nothing

    assert tables.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    assert "| scifact | default (all-MiniLM-L6-v2) | 0.9999 | MTEB 64.51 |" in readme
    assert tables.main(["--check", "--root", str(root)]) == 0


def test_rendering_is_a_markdown_table_and_the_line_naming_its_script(tmp_path):
    page = "intro\n\n<!-- table: a + b -->\nold text\n<!-- /table -->\n\nafter\n"
    root = _small_repo(tmp_path, page, {
        "a": _results([["scifact", "0.6451"], ["", 0.5]], align=["l", "r"]),
        "b": _results([["nfcorpus", "0.3159"]], notes="pending rerun: another helper"),
    })
    assert tables.main(["--root", str(root)]) == 0
    assert (root / "README.md").read_text() == (
        "intro\n\n<!-- table: a + b -->\n"
        "| data | nDCG@10 |\n|---|---:|\n| scifact | 0.6451 |\n| | 0.5 |\n| nfcorpus | 0.3159 |\n"
        "\nMade by `docs/reproduce/run.sh` (about 2 min on 2 CPU cores) and "
        "`docs/reproduce/run.sh` (about 2 min on 2 CPU cores; pending rerun).\n"
        "<!-- /table -->\n\nafter\n")


@pytest.mark.parametrize("problem, data, message", [
    ("missing script", _results([["x", "1"]], command="docs/reproduce/gone.sh"),
     "its command docs/reproduce/gone.sh is not in the repository"),
    ("ragged row", _results([["x"]]), "row 0 has 1 cells, the columns 2"),
    ("missing key", {"title": "t", "rows": []}, "lacks command, runtime, columns, notes"),
])
def test_bad_results_files_are_named(tmp_path, capsys, problem, data, message):
    page = "<!-- table: a -->\n<!-- /table -->\n"
    root = _small_repo(tmp_path, page, {"a": data})
    assert tables.main(["--check", "--root", str(root)]) == 1, problem
    assert message in capsys.readouterr().err


def test_a_pending_results_file_may_name_a_script_not_yet_written(tmp_path, capsys):
    data = _results([["x", "1"]], command="docs/reproduce/later.sh",
                    notes="pending rerun: the owner replaces it")
    root = _small_repo(tmp_path, "<!-- table: a -->\n<!-- /table -->\n", {"a": data})
    tables.main(["--root", str(root)])
    assert tables.main(["--check", "--root", str(root)]) == 0
    assert "later.sh is not in the repository (pending rerun)" in capsys.readouterr().err


def test_a_table_without_markers_or_a_static_declaration_is_named(tmp_path, capsys):
    page = ("text\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            "<!-- static table -->\n| name | what |\n|---|---|\n| x | y |\n\n"
            "```\n| in | code |\n|---|---|\n```\n")
    root = _small_repo(tmp_path, page, {})
    assert tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "README.md:3: a table without" in err
    assert err.count("a table without") == 1


def test_a_missing_results_file_is_named(tmp_path, capsys):
    root = _small_repo(tmp_path, "<!-- table: nothing -->\n<!-- /table -->\n", {})
    assert tables.main(["--check", "--root", str(root)]) == 1
    assert "no results file docs/results/nothing.json" in capsys.readouterr().err
