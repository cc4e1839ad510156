"""``irlens patch``: activation patching with an IR axiom over a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens._io import write_table
from irlens.cli._app import app, echo_json, friendly_errors
from irlens.options import checked
from irlens.options.analysis import PATCH


@app.command("patch")
@friendly_errors
@checked(PATCH)
def patch_command(
    model: str = PATCH.cli("model"),
    data: str = PATCH.cli("data"),
    axiom: str = PATCH.cli("axiom"),
    pairs: int = PATCH.cli("pairs"),
    out: Path = PATCH.cli("out"),
    split: str = PATCH.cli("split"),
    min_relevance: int = PATCH.cli("min_relevance"),
    max_doc_words: int = PATCH.cli("max_doc_words"),
    min_delta: float = PATCH.cli("min_delta"),
    ablate_top: int = PATCH.cli("ablate_top"),
    ablate_pairs: int = PATCH.cli("ablate_pairs"),
    resid: str = PATCH.cli("resid"),
    seed: int = PATCH.cli("seed"),
    json_out: bool = PATCH.cli("json_out"),
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
            ci = "n/a" if c["ci"] != c["ci"] else f"{c['ci']:.3f}"  # NaN: one pair
            typer.echo(f"  {c['effect']:+.3f} ± {ci}  {c['component']}")
        if ablate_top:
            typer.echo(table.to_string(index=False))
    typer.echo(f"wrote {out}", err=True)
