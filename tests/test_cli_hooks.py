"""``irlens hooks``: lists every hook point; bad model names give one line, exit 2."""

from __future__ import annotations

import json

from tiny import tiny_model_dir
from typer.testing import CliRunner

from irlens.cli import app

runner = CliRunner()


def test_hooks_lists_points_with_unit_counts(tiny_root):
    folder = tiny_model_dir(tiny_root, "distilbert", "cross")
    result = runner.invoke(app, ["hooks", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert len(rows) == 13  # embeddings + 6 points x 2 layers
    assert rows["layer.1.ffn.pre"]["units"] == 48 and rows["layer.0.attn.probs"]["units"] == 4
    assert rows["layer.1.ffn.out"]["module"] == "transformer.layer.1.ffn.lin2"


def test_hooks_on_a_missing_model_is_one_line():
    result = runner.invoke(app, ["hooks", "./missing-model"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: model path ./missing-model does not exist; pass an existing folder or 'default'"
    )


def test_warnings_print_once_as_one_line_naming_what_happened(capsys):
    """Python's default form points at a file and line inside typer; a warning raised in
    every evaluation of a loop used to repeat inside the progress bar."""
    import warnings

    from irlens.cli._app import friendly_errors

    @friendly_errors
    def command() -> None:
        for _ in range(3):
            warnings.warn("8 of 8 documents were longer than 128 tokens\nand were cut",
                          UserWarning, stacklevel=1)
        warnings.warn("another thing happened", UserWarning, stacklevel=1)

    command()
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: 8 of 8 documents were longer than 128 tokens and "
                                "were cut", "warning: another thing happened"]
