"""``irlens neurons`` and ``irlens prune``: thin commands over :mod:`irlens.neurons`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor
from irlens.errors import IrlensError
from irlens.options import checked
from irlens.options.neurons import NEURONS, PRUNE, REPORT


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise IrlensError(f"{what} must be comma-separated numbers, got '{text}'") from None
    if not values:
        raise IrlensError(f"{what} is empty; give numbers such as 0.1,0.5,1")
    return values


@app.command("neurons")
@friendly_errors
@checked(NEURONS)
def neurons_command(
    model: str = NEURONS.cli("model"),
    data: Path = NEURONS.cli("data"),
    ood: list[Path] = NEURONS.cli("ood"),
    out: Path = NEURONS.cli("out"),
    split: str = NEURONS.cli("split"),
    triplets: int = NEURONS.cli("triplets"),
    seed: int = NEURONS.cli("seed"),
    min_relevance: int = NEURONS.cli("min_relevance"),
    keep: str = NEURONS.cli("keep"),
    shard_size: int = NEURONS.cli("shard_size"),
    max_length: int = NEURONS.cli("max_length"),
    steps: int = NEURONS.cli("steps"),
    ffn: str = NEURONS.cli("ffn"),
    attention: bool = NEURONS.cli("attention"),
    output: str = NEURONS.cli("output"),
    target: str = NEURONS.cli("target"),
    baseline: str = NEURONS.cli("baseline"),
    rule: str = NEURONS.cli("rule"),
    p: float = NEURONS.cli("p"),
    kind: str = NEURONS.cli("kind"),
    score: str = NEURONS.cli("score"),
    segment: str = NEURONS.cli("segment"),
    device: str = NEURONS.cli("device"),
    memory_budget: str = NEURONS.cli("memory_budget"),
    ray: str = NEURONS.cli("ray"),
    workers: int = NEURONS.cli("workers"),
) -> None:
    """Find relevance neurons with NIG on DATA (and OOD sets); compare and combine them.

    Example: irlens neurons --model default --data ../shared/data/msmarco-dl19
    --min-relevance 2 --ood ../shared/data/scifact --triplets 50
    """
    from irlens.models import load_model
    from irlens.neurons.report import render_report
    from irlens.neurons.study import StudyConfig, run_neurons

    config = StudyConfig(n_triplets=triplets, seed=seed, split=split,
                         min_relevance=min_relevance, keep=keep, shard_size=shard_size,
                         max_length=max_length, n_steps=steps, ffn=ffn, attention=attention,
                         output=output, target=target, baseline=baseline, rule=rule,
                         memory_budget=memory_budget)
    check_ray(ray)
    retriever = load_model(model, device=device)
    with ray_executor(ray, model, workers, device=device) as executor:  # NIG on Ray
        summary = run_neurons(retriever, data, out, ood=list(ood or []), config=config, p=p,
                              kind=kind, score=score, segment=segment, executor=executor)
    summary["report"] = str(render_report(out / "report.html", neurons_dir=out))
    echo_json(summary)


@app.command("prune")
@friendly_errors
@checked(PRUNE)
def prune_command(
    neurons: Path = PRUNE.cli("neurons"),
    which: str = PRUNE.cli("which"),
    data: list[Path] = PRUNE.cli("data"),
    model: str = PRUNE.cli("model"),
    out: Path = PRUNE.cli("out"),
    p: str = PRUNE.cli("p"),
    seeds: int = PRUNE.cli("seeds"),
    layer_p: float = PRUNE.cli("layer_p"),
    kind: str = PRUNE.cli("kind"),
    score: str = PRUNE.cli("score"),
    segment: str = PRUNE.cli("segment"),
    scope: str = PRUNE.cli("scope"),
    positions: str = PRUNE.cli("positions"),
    how: str = PRUNE.cli("how"),
    random_match: str = PRUNE.cli("random_match"),
    metrics: str = PRUNE.cli("metrics"),
    split: str = PRUNE.cli("split"),
    depth: int = PRUNE.cli("depth"),
    pool: str = PRUNE.cli("pool"),
    max_length: int = PRUNE.cli("max_length"),
    max_queries: int = PRUNE.cli("max_queries"),
    held_out: bool = PRUNE.cli("held_out"),
    batch_size: int = PRUNE.cli("batch_size"),
    device: str = PRUNE.cli("device"),
    ray: str = PRUNE.cli("ray"),
    workers: int = PRUNE.cli("workers"),
) -> None:
    """Prune relevance neurons and compare retrieval with the intact model and random units.

    Example: irlens prune --neurons results/neurons/msmarco-dl19 --data
    ../shared/data/scifact --p 1 --seeds 5 --max-length 128
    """
    from irlens.models import load_model
    from irlens.neurons.pruning import PruningConfig, evaluate_pruning
    from irlens.neurons.study import resolve_neurons

    check_ray(ray)
    study, note = resolve_neurons(neurons, which)
    if note:
        typer.echo(f"note: {note}", err=True)
    config = PruningConfig(
        ps=_floats(p, "--p"), seeds=seeds, kind=kind, score=score, segment=segment,
        scope=scope, positions=None if positions == "all" else positions, how=how,
        random_match=random_match, layer_p=layer_p or None,
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()), split=split,
        depth=depth, pool=pool, max_length=max_length, max_queries=max_queries,
        batch_size=batch_size, held_out=held_out)
    name = model or study.manifest.model_id
    retriever = load_model(name, device=device)
    out = out or study.folder / "pruning"
    with ray_executor(ray, name, workers, device=device) as executor:  # on Ray workers
        results = [evaluate_pruning(retriever, d, study, config, out_dir=out,
                                    executor=executor) for d in data]
    neurons_root = study.folder.parent if (study.folder.parent / "summary.json").is_file() \
        else study.folder
    _write_pruning_outputs(results, out, neurons_root)


@app.command("report")
@friendly_errors
@checked(REPORT)
def report_command(
    pruning: list[Path] = REPORT.cli("pruning"),
    neurons: Path = REPORT.cli("neurons"),
    out: Path = REPORT.cli("out"),
) -> None:
    """Combine finished pruning runs (several datasets or folders) into one report.

    Example: irlens report --pruning results/prune/scifact --pruning results/prune/nfcorpus
    --neurons results/neurons -o results/prune/all
    """
    from irlens.neurons.pruning import PruningResult

    files = []
    for path in pruning:
        found = [path] if (path / "result" / "manifest.json").is_file() else sorted(
            p for p in path.glob("pruning-*") if (p / "result" / "manifest.json").is_file())
        if not found:
            raise IrlensError(f"no finished pruning run (pruning-*/result) in {path}; run "
                              "`irlens prune` first")
        files += found
    _write_pruning_outputs([PruningResult.load(f) for f in files], out, neurons)


def _write_pruning_outputs(results: list, out: Path, neurons_root: Path | None) -> None:
    """Curve and per-layer plots, the HTML report and summary.json; the table to stdout."""
    import pandas as pd

    from irlens._io import write_json
    from irlens.neurons.pruning import PruningResult
    from irlens.neurons.report import plot_layer_pruning, plot_pruning, render_report

    seen: set[str] = set()
    for r in results:  # two runs on one dataset (e.g. another --score) get distinct labels
        name = str(r.rows["dataset"].iloc[0]) if len(r.rows) else ""
        if name in seen:
            name = f"{name} ({r.parameters.get('score')}, {r.parameters.get('kind')})"
            r.records = r.rows.assign(dataset=name).to_dict("records")
        seen.add(name)
    combined = PruningResult.of(pd.concat([r.rows for r in results], ignore_index=True),
                                {**results[0].parameters, "dataset": "all"})
    plot_pruning(combined, out / "curve.png")
    if (combined.rows["experiment"] == "layer").any():
        plot_layer_pruning(combined, out / "layers.png")
    report = render_report(out / "report.html", neurons_dir=neurons_root, pruning=results)
    summary = combined.summary()
    write_json(out / "summary.json", {"parameters": [r.parameters for r in results],
                                      "summary": summary.to_dict("records")})
    typer.echo(pruning_table(summary, list(results[0].parameters.get("metrics", []))))
    typer.echo(f"report: {report}", err=True)


def pruning_table(summary, metrics: list[str]) -> str:
    """The printed table: ``all`` for the whole-model curve; per metric the intact score,
    both drops and the excess drop over random units with its 95% CI; then what it means."""
    import pandas as pd

    from irlens.neurons.pruning import VERDICTS

    def num(x: float) -> str:
        return "n/a" if pd.isna(x) else f"{x:.4f}"

    rows = []
    for _, r in summary.iterrows():
        row = {"dataset": r["dataset"], "experiment": r["experiment"],
               "layer": "all" if r["layer"] < 0 else str(r["layer"]), "p%": f"{r['p']:g}",
               "units": r["n_units"], "seeds": r["seeds"]}
        for m in metrics:
            ci = "n/a" if pd.isna(r[f"{m} excess lo"]) else \
                f"[{r[f'{m} excess lo']:+.4f}, {r[f'{m} excess hi']:+.4f}]"
            row |= {f"{m} intact": num(r[f"{m} intact"]),
                    f"{m} drop rel": num(r[f"{m} drop relevance"]),
                    f"{m} drop rand": num(r[f"{m} drop random"]),
                    f"{m} excess": num(r[f"{m} excess"]), f"{m} 95% CI": ci,
                    f"{m} vs random": r[f"{m} verdict"]}
        rows.append(row)
    used = dict.fromkeys(v for r in rows for m in metrics for v in [r[f"{m} vs random"]])
    notes = ["drop = intact minus pruned score; excess = relevance drop minus the mean "
             "random drop, 95% CI over the random seeds (t interval)"]
    notes += [f"{v}: {VERDICTS[v]}" for v in used]
    return pd.DataFrame(rows).to_string(index=False) + "\n" + "\n".join(notes)
