"""``irlens edit``: edit what a retriever finds and measure it by retrieval."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.options import checked
from irlens.options.analysis import EDIT


@app.command("edit")
@friendly_errors
@checked(EDIT)
def edit_command(
    model: str = EDIT.cli("model"),
    data: str = EDIT.cli("data"),
    editor: str = EDIT.cli("editor"),
    kind: str = EDIT.cli("kind"),
    n: int = EDIT.cli("n"),
    layer: int = EDIT.cli("layer"),
    steps: int = EDIT.cli("steps"),
    seed: int = EDIT.cli("seed"),
    split: str = EDIT.cli("split"),
    max_length: int = EDIT.cli("max_length"),
    device: str = EDIT.cli("device"),
    max_docs: int = EDIT.cli("max_docs"),
    max_queries: int = EDIT.cli("max_queries"),
    out: Path = EDIT.cli("out"),
    save: Path = EDIT.cli("save"),
    then_train: bool = EDIT.cli("then_train"),
    train_split: str = EDIT.cli("train_split"),
    train_max_queries: int = EDIT.cli("train_max_queries"),
    json_out: bool = EDIT.cli("json_out"),
) -> None:
    """Edit a bi-encoder so queries find (or lose) documents; measure efficacy,
    generalisation and locality by retrieval, and write edit.html."""
    from irlens.editing.study import EditConfig
    from irlens.models.loading import pick_device

    pick_device(device)
    config = EditConfig(editor=editor, kind=kind, n=n, seed=seed,
                        layer=layer, steps=steps, split=split,
                        max_docs=max_docs, max_queries=max_queries)
    from irlens._io import atomic_path
    from irlens.editing import EditBench, make_requests, run_edits, summarise
    from irlens.editing.report import render_edit_report
    from irlens.editing.study import _editor, edit_data
    from irlens.models import load_model

    if then_train:
        from irlens.editing.pipeline import edit_then_train

        train = {"split": train_split, "max_queries": train_max_queries}
        frame = edit_then_train(model, data, out, config, train, max_length=max_length,
                                device=device)
        table = frame.pivot_table(index="stage", values=["holds", "ndcg10"], aggfunc="mean")
        if json_out:
            echo_json(table.to_dict(orient="index"))
        else:
            typer.echo(table.to_string())
        return
    retriever = load_model(model, device=device, max_length=max_length)
    frame = run_edits(retriever, data, out, config)
    with atomic_path(out / "edits.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    page = render_edit_report(frame, out / "edit.html", vars(config))
    summary = summarise(frame)
    if save is not None:
        dataset = edit_data(data, config)
        bench = EditBench(retriever, dataset)
        requests = make_requests(retriever, dataset, kind, n, seed=seed, ranking=bench.before)
        _editor(config, retriever, dataset, bench).fit(retriever, requests).save_model(
            retriever, save)
        typer.echo(f"edited model: {save}", err=True)
    typer.echo(f"page: {page}", err=True)
    if json_out:
        echo_json(summary.to_dict(orient="records"))
    else:
        typer.echo(summary.to_string(index=False))
