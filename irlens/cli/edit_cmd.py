"""``irlens edit``: edit what a retriever finds and measure it by retrieval."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors


@app.command("edit")
@friendly_errors
def edit_command(
    model: str = typer.Option("default", "--model", "-m",
                              help="A bi-encoder: 'default', a folder or a Hugging Face id."),
    data: str = typer.Option(..., "--data", "-d", help="A BEIR folder."),
    editor: str = typer.Option("rome", help="rome (rank-one FFN edit), kn (knowledge "
                               "neurons) or ft (fine-tuning baseline)."),
    kind: str = typer.Option("insert", help="insert a document into a query's top 10, or "
                             "remove one from it."),
    n: int = typer.Option(50, "--n", help="Edit requests, drawn from the split's queries."),
    layer: int = typer.Option(None, help="The FFN layer edited. Unset: rome edits the last layer, "
                              "ft trains every weight, kn looks at every layer."),
    steps: int = typer.Option(60, help="Optimisation steps per edit at most."),
    seed: int = typer.Option(0, help="Seed of the insert targets and paraphrases."),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv the requests use."),
    max_length: int = typer.Option(None, help="Cut texts to this many tokens (faster)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    max_docs: int = typer.Option(None, help="Quick runs: keep every judged document plus "
                                 "distractors up to N (the corpus is re-encoded per edit)."),
    max_queries: int = typer.Option(None, help="Quick runs: the first N judged queries."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable)."),
    save: Path = typer.Option(None, "--save", help="Also write the model with every "
                              "request edited (one after another) to this folder."),
    then_train: bool = typer.Option(False, "--then-train", help="Reichman & Heck's "
                                    "pipeline: save the edited model, retrieval-train it "
                                    "and an unedited control on --train-split, and report "
                                    "which edits survive."),
    train_split: str = typer.Option("train", help="With --then-train: the training split."),
    train_max_queries: int = typer.Option(None, help="With --then-train: cap the training "
                                          "queries (quick runs)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
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
