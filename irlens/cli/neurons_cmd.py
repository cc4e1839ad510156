"""``irlens neurons`` and ``irlens prune``: thin commands over :mod:`irlens.neurons`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor, ray_option, workers_option
from irlens.errors import IrlensError


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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
def neurons_command(
    model: str = typer.Option("default", "--model", "-m", help="'default', a model folder "
                              "(e.g. a cross-encoder from `irlens train`) or a HF id."),
    data: Path = typer.Option(..., "--data", "-d", help="In-domain BEIR folder."),
    ood: list[Path] = typer.Option(None, "--ood", help="Other (out-of-domain) BEIR folders; "
                                   "repeat the option."),
    out: Path = typer.Option(Path("results/neurons"), "--out", "-o", help="Output folder; "
                             "a rerun with the same options resumes it."),
    split: str = typer.Option("test", help="Qrels split to sample triplets from."),
    triplets: int = typer.Option(100, help="(query, relevant, BM25 negative) triplets sampled."),
    seed: int = typer.Option(0, help="Sampling seed."),
    min_relevance: int = typer.Option(None, help="Grade that counts as relevant [default: 2 "
                                      "on a 0-3 scale (TREC DL), else 1]."),
    keep: str = typer.Option("ordered", help="ordered (relevant above negative), classified "
                             "(cross-encoders: p>0.5 and p<0.5, the paper's) or all."),
    shard_size: int = typer.Option(10, help="Triplets per saved shard."),
    max_length: int = typer.Option(None, help="Token limit of attributed inputs."),
    steps: int = typer.Option(21, help="Points on each path (gradient evaluations)."),
    ffn: str = typer.Option("post", help="FFN units after (post) or before (pre) activation."),
    attention: bool = typer.Option(True, help="Also attribute attention heads."),
    output: str = typer.Option(None, help="prob or logit (cross-encoders); similarity (bi)."),
    target: str = typer.Option(None, help="Segments that move: both, query, doc [default: "
                               "both for cross-encoders, doc for bi-encoders]."),
    baseline: str = typer.Option("pad", help="pad, mask or zero."),
    rule: str = typer.Option("riemann_right", help="riemann_right (paper), riemann_left "
                             "(Captum) or riemann_trapezoid."),
    p: float = typer.Option(1.0, help="Top p% of units for selections and overlaps."),
    kind: str = typer.Option("ffn", help="Units to select: ffn or attn (heads)."),
    score: str = typer.Option("relevant", help="relevant, contrast or nonrelevant."),
    segment: str = typer.Option("all", help="Aggregate to select on: all or a segment."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    memory_budget: str = typer.Option("1GB", help="Activation memory per NIG chunk."),
    ray: str = ray_option(),
    workers: int = workers_option(),
) -> None:
    """Find relevance neurons with NIG on DATA (and OOD sets); compare and combine them.

    Example: irlens neurons --model default --data ../shared/data/msmarco-dl19
    --min-relevance 2 --ood ../shared/data/scifact --triplets 50
    """
    from irlens.models import load_model
    from irlens.neurons.nig import check_nig_options
    from irlens.neurons.report import render_report
    from irlens.neurons.selection import check_options
    from irlens.neurons.study import KEEP, StudyConfig, run_neurons

    check_options(p, score, "global", kind)  # before the model loads
    if keep not in KEEP:
        raise IrlensError(f"unknown keep '{keep}'; use {', '.join(KEEP)}")
    if triplets < 1 or shard_size < 1:
        raise IrlensError("triplets and shard-size must be >= 1")
    check_nig_options(n_steps=steps, ffn=ffn, target=target, baseline=baseline, rule=rule,
                      memory_budget=memory_budget)

    config = StudyConfig(n_triplets=triplets, seed=seed, split=split,
                         min_relevance=min_relevance, keep=keep, shard_size=shard_size,
                         max_length=max_length, n_steps=steps, ffn=ffn, attention=attention,
                         output=output, target=target, baseline=baseline, rule=rule,
                         memory_budget=memory_budget)
    check_ray(ray)
    retriever = load_model(model, device=device.value)
    with ray_executor(ray, model, workers, device=device.value) as executor:  # NIG on Ray
        summary = run_neurons(retriever, data, out, ood=list(ood or []), config=config, p=p,
                              kind=kind, score=score, segment=segment, executor=executor)
    summary["report"] = str(render_report(out / "report.html", neurons_dir=out))
    echo_json(summary)


@app.command("prune")
@friendly_errors
def prune_command(
    neurons: Path = typer.Option(..., "--neurons", "-n", help="The folder `irlens neurons "
                                 "--out` wrote (its in-domain study is used), or one study in "
                                 "it, e.g. OUT/msmarco-dl19 or OUT/fusion."),
    which: str = typer.Option(None, "--which", help="Which study of a `irlens neurons` "
                              "folder to use [default: the in-domain one]."),
    data: list[Path] = typer.Option(..., "--data", "-d", help="BEIR folder(s) to evaluate on; "
                                    "repeat the option."),
    model: str = typer.Option(None, "--model", "-m", help="The model [default: the one the "
                              "neuron file was made with]."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder [default: "
                             "NEURONS/pruning]; a rerun resumes it."),
    p: str = typer.Option("0.1,0.5,1,2,5", "--p", help="Percentages of units to prune."),
    seeds: int = typer.Option(5, help="Random-unit controls per p."),
    layer_p: float = typer.Option(1.0, help="Per-layer pruning: top p% of each layer "
                                  "alone (0 to skip)."),
    kind: str = typer.Option("ffn", help="ffn units or attn heads."),
    score: str = typer.Option("relevant", help="relevant, contrast or nonrelevant."),
    segment: str = typer.Option("all", help="Aggregate the units are ranked by."),
    scope: str = typer.Option("global", help="Top p% over all layers, or of each layer."),
    positions: str = typer.Option("all", help="Where to ablate: all, query, doc, cls, sep, end."),
    how: str = typer.Option("zero", help="zero or mean ablation."),
    random_match: str = typer.Option("global", "--random", help="Random units drawn "
                                     "globally, or as many per layer as the selection."),
    metrics: str = typer.Option("nDCG@10,RR@10", help="ir_measures names."),
    split: str = typer.Option("test", help="Qrels split to evaluate on."),
    depth: int = typer.Option(100, help="BM25 candidates (cross-encoders; bi-encoder pools)."),
    pool: str = typer.Option("auto", help="Bi-encoders: full corpus search, judged+bm25 "
                             "(each query's judged docs plus BM25 top --depth), bm25 (BM25 "
                             "top --depth only, as a cross-encoder reranks) or auto (full up "
                             "to 20,000 docs, else judged+bm25)."),
    max_length: int = typer.Option(None, help="Cap documents at N tokens (cheaper)."),
    max_queries: int = typer.Option(None, help="Evaluate on the first N judged queries."),
    held_out: bool = typer.Option(False, "--held-out", help="Leave out the queries of the "
                                  "neuron study's triplets (the units were chosen on them)."),
    batch_size: int = typer.Option(128, help="Texts per forward pass (as large as fits)."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    ray: str = ray_option(),
    workers: int = workers_option(),
) -> None:
    """Prune relevance neurons and compare retrieval with the intact model and random units.

    Example: irlens prune --neurons results/neurons/msmarco-dl19 --data
    ../shared/data/scifact --p 1 --seeds 5 --max-length 128
    """
    from irlens.models import load_model
    from irlens.neurons.pruning import PruningConfig, evaluate_pruning
    from irlens.neurons.selection import check_options
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
    for value in [*config.ps, *([config.layer_p] if config.layer_p else [])]:
        check_options(value, config.score, config.scope, config.kind)
    name = model or study.manifest.model_id
    retriever = load_model(name, device=device.value)
    out = out or study.folder / "pruning"
    with ray_executor(ray, name, workers, device=device.value) as executor:  # on Ray workers
        results = [evaluate_pruning(retriever, d, study, config, out_dir=out,
                                    executor=executor) for d in data]
    neurons_root = study.folder.parent if (study.folder.parent / "summary.json").is_file() \
        else study.folder
    _write_pruning_outputs(results, out, neurons_root)


@app.command("report")
@friendly_errors
def report_command(
    pruning: list[Path] = typer.Option(..., "--pruning", "-p", help="Output folders of "
                                       "`irlens prune` (their pruning-* runs) or single "
                                       "pruning-* folders; repeat the option."),
    neurons: Path = typer.Option(None, "--neurons", "-n", help="The `irlens neurons` output "
                                 "folder to show beside them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.html, the plots "
                             "and summary.json."),
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
