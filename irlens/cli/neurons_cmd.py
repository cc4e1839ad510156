"""``irlens neurons``, ``irlens prune`` and ``irlens train cross-encoder``: thin commands
over :mod:`irlens.neurons` and :mod:`irlens.training`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.errors import IrlensError

train_app = typer.Typer(help="Train models (a cross-encoder from the default model's weights).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")


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
    p: float = typer.Option(1.0, help="Top p%% of units for selections and overlaps."),
    kind: str = typer.Option("ffn", help="Units to select: ffn or attn (heads)."),
    score: str = typer.Option("relevant", help="relevant, contrast or nonrelevant."),
    segment: str = typer.Option("all", help="Aggregate to select on: all or a segment."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    memory_budget: str = typer.Option("1GB", help="Activation memory per NIG chunk."),
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
    retriever = load_model(model, device=device.value)
    summary = run_neurons(retriever, data, out, ood=list(ood or []), config=config, p=p,
                          kind=kind, score=score, segment=segment)
    summary["report"] = str(render_report(out / "report.html", neurons_dir=out))
    echo_json(summary)


@app.command("prune")
@friendly_errors
def prune_command(
    neurons: Path = typer.Option(..., "--neurons", "-n", help="A study folder (or its "
                                 "scores.parquet) from `irlens neurons`, e.g. OUT/msmarco-dl19 "
                                 "or OUT/fusion."),
    data: list[Path] = typer.Option(..., "--data", "-d", help="BEIR folder(s) to evaluate on; "
                                    "repeat the option."),
    model: str = typer.Option(None, "--model", "-m", help="The model [default: the one the "
                              "neuron file was made with]."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder [default: "
                             "NEURONS/pruning]; a rerun resumes it."),
    p: str = typer.Option("0.1,0.5,1,2,5", "--p", help="Percentages of units to prune."),
    seeds: int = typer.Option(5, help="Random-unit controls per p."),
    layer_p: float = typer.Option(1.0, help="Per-layer pruning: top p%% of each layer "
                                  "alone (0 to skip)."),
    kind: str = typer.Option("ffn", help="ffn units or attn heads."),
    score: str = typer.Option("relevant", help="relevant, contrast or nonrelevant."),
    segment: str = typer.Option("all", help="Aggregate the units are ranked by."),
    scope: str = typer.Option("global", help="Top p%% over all layers, or of each layer."),
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
    batch_size: int = typer.Option(128, help="Texts per forward pass (as large as fits)."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
) -> None:
    """Prune relevance neurons and compare retrieval with the intact model and random units.

    Example: irlens prune --neurons results/neurons/msmarco-dl19 --data
    ../shared/data/scifact --p 1 --seeds 5 --max-length 128
    """
    from irlens.models import load_model
    from irlens.neurons.pruning import PruningConfig, evaluate_pruning
    from irlens.neurons.study import Study

    study = Study(neurons)
    config = PruningConfig(
        ps=_floats(p, "--p"), seeds=seeds, kind=kind, score=score, segment=segment,
        scope=scope, positions=None if positions == "all" else positions, how=how,
        random_match=random_match, layer_p=layer_p or None,
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()), split=split,
        depth=depth, pool=pool, max_length=max_length, max_queries=max_queries,
        batch_size=batch_size)
    retriever = load_model(model or study.manifest["model_id"], device=device.value)
    out = out or study.folder / "pruning"
    results = [evaluate_pruning(retriever, d, study, config, out_dir=out) for d in data]
    neurons_root = study.folder.parent if (study.folder.parent / "summary.json").is_file() \
        else study.folder
    _write_pruning_outputs(results, out, neurons_root)


@app.command("report")
@friendly_errors
def report_command(
    pruning: list[Path] = typer.Option(..., "--pruning", "-p", help="Folders of `irlens "
                                       "prune` (their pruning-*.parquet) or parquet files; "
                                       "repeat the option."),
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
        found = sorted(path.glob("pruning-*.parquet")) if path.is_dir() else [path]
        if not found:
            raise IrlensError(f"no pruning-*.parquet in {path}; run `irlens prune` first")
        files += found
    _write_pruning_outputs([PruningResult.from_parquet(f) for f in files], out, neurons)


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
            r.rows = r.rows.assign(dataset=name)
        seen.add(name)
    combined = PruningResult(pd.concat([r.rows for r in results], ignore_index=True),
                             {**results[0].parameters, "dataset": "all"})
    plot_pruning(combined, out / "curve.png")
    if (combined.rows["experiment"] == "layer").any():
        plot_layer_pruning(combined, out / "layers.png")
    report = render_report(out / "report.html", neurons_dir=neurons_root, pruning=results)
    summary = combined.summary()
    write_json(out / "summary.json", {"parameters": [r.parameters for r in results],
                                      "summary": summary.to_dict("records")})
    cols = ["dataset", "experiment", "layer", "p", "n_units"] + [
        c for c in summary.columns if c.endswith(("intact", "relevance", "random", "ratio"))]
    typer.echo(summary[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    typer.echo(f"report: {report}")


@train_app.command("cross-encoder")
@friendly_errors
def train_cross_encoder_command(
    data: list[Path] = typer.Option(..., "--data", "-d", help="BEIR folder(s) (their --split "
                                    "qrels, BM25 negatives) or MS MARCO triples TSV files."),
    out: Path = typer.Option(Path("results/cross-encoder"), "--out", "-o",
                             help="Where the model folder goes."),
    split: str = typer.Option("train", help="Qrels split of BEIR folders to train on."),
    base: str = typer.Option("default", help="Weights to start from."),
    negatives: int = typer.Option(3, help="BM25 negatives per relevant pair (BEIR folders)."),
    random_negatives: int = typer.Option(0, help="Extra random negatives per relevant pair."),
    max_positives: int = typer.Option(None, help="Use at most N relevant pairs per source."),
    epochs: int = typer.Option(1, help="Training epochs."),
    batch_size: int = typer.Option(16, help="Pairs per step."),
    lr: float = typer.Option(2e-5, help="Learning rate (10%% linear warm-up)."),
    max_length: int = typer.Option(256, help="Token limit of a (query, document) pair."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    eval_data: Path = typer.Option(None, help="BEIR folder to rerank on [default: the first "
                                   "--data folder that has --eval-split]."),
    eval_split: str = typer.Option("test", help="Split to evaluate on."),
    eval_depth: int = typer.Option(100, help="BM25 candidates reranked."),
    eval_queries: int = typer.Option(None, help="Evaluate on the first N queries only."),
    device: Device = typer.Option(Device.auto, help="Where training runs."),
) -> None:
    """Fine-tune a cross-encoder from the default model's weights with BM25 negatives.

    Example: irlens train cross-encoder --data ../shared/data/scifact --split train
    """
    from irlens.training import train_cross_encoder

    result = train_cross_encoder(
        list(data), out, split=split, base=base, negatives=negatives,
        random_negatives=random_negatives,
        max_positives=max_positives, epochs=epochs, batch_size=batch_size, learning_rate=lr,
        max_length=max_length, seed=seed, device=device.value, eval_data=eval_data,
        eval_split=eval_split, eval_depth=eval_depth, eval_queries=eval_queries)
    echo_json({"model_dir": result.model_dir, "n_pairs": result.n_pairs,
               "seconds": result.seconds, "evaluation": result.evaluation})
