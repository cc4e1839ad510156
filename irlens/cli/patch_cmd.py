"""``irlens patch``: activation patching with an IR axiom over a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens._io import write_table
from irlens.cli._app import app, echo_json, friendly_errors


@app.command("patch")
@friendly_errors
def patch_command(
    model: str = typer.Option("default", "--model", "-m",
                              help="'default', a model folder or a Hugging Face id."),
    data: str = typer.Option(..., "--data", "-d", help="A BEIR folder."),
    axiom: str = typer.Option("tfc1", help="tfc1, tdc, lnc1 or removal."),
    pairs: int = typer.Option(100, help="Relevant pairs to sample (skips are counted)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable)."),
    split: str = typer.Option("test", help="Which qrels split to sample from."),
    min_relevance: int = typer.Option(1, help="Grade a sampled document needs (DL19: 2)."),
    max_doc_words: int = typer.Option(60, help="Cut documents to N words first."),
    min_delta: float = typer.Option(1e-3, help="Skip pairs whose clean and corrupted "
                                    "scores differ by less."),
    ablate_top: int = typer.Option(0, "--ablate-top", help="Ablate the top K components "
                                   "and measure rankings against random ones (0: no)."),
    ablate_pairs: int = typer.Option(50, help="Held-out pairs for --ablate-top, from queries "
                                     "not among the --pairs (fewer when they run out)."),
    resid: str = typer.Option("positions", help="Residual patching: each 'positions' or "
                              "each token 'roles' at once (cheaper)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Where does an axiom live? Patch heads, FFN outputs and residual positions.

    Example: irlens patch --data scifact --axiom tfc1 --pairs 100 --out runs/tfc1
    """
    from irlens.data import load_dataset
    from irlens.models import load_model
    from irlens.patching.study import heatmap_figure, patching_study
    from irlens.report import figure_png

    dataset = load_dataset(data, split)
    retriever = load_model(model, device="cpu")
    study = patching_study(retriever, dataset, axiom, pairs, out / "jobs", seed=seed,
                           min_relevance=min_relevance, max_doc_words=max_doc_words,
                           min_delta=min_delta, resid=resid)
    study.save(out / "study")
    for direction in ("denoise", "noise"):
        figure_png(heatmap_figure(study, direction), out / f"heatmap-{direction}.png",
                   tight=False)
    summary = {"axiom": axiom, "pairs": study.n_pairs, "skipped": study.skipped,
               "axiom_holds": study.axiom_holds, "mean_delta": study.mean_delta,
               "top": study.top_components(5)}
    if ablate_top:
        from irlens.patching.ablate_top import ablate_top as run_ablation
        from irlens.patching.study import study_pairs

        chosen, _ = study_pairs(dataset, axiom, pairs, seed, min_relevance, max_doc_words)
        table = run_ablation(retriever, dataset, study, ablate_top, ablate_pairs, seed=seed + 1,
                             min_relevance=min_relevance, max_doc_words=max_doc_words,
                             chosen_on={q for q, _, _ in chosen})
        write_table(out / "ablate-top.csv", table)
        summary["ablate_top"] = table.to_dict("records")
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"{axiom}: {study.n_pairs} pairs, axiom holds in {study.axiom_holds:.0%}, "
                   f"skipped {study.skipped}")
        for c in summary["top"]:
            typer.echo(f"  {c['effect']:+.3f} ± {c['ci']:.3f}  {c['component']}")
        if ablate_top:
            typer.echo(table.to_string(index=False))
    typer.echo(f"wrote {out}", err=True)
