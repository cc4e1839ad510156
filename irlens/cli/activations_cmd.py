"""``irlens activations``: a thin command over :func:`irlens.activations.run_activations`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli.probe_cmd import MODEL_HELP, names


@app.command("activations")
@friendly_errors
def activations_command(
    model: list[str] = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    data: Path = typer.Option(..., "--data", "-d", help="BEIR folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; a rerun with the same "
                             "options resumes it."),
    split: str = typer.Option("test", help="Qrels split."),
    examples: int = typer.Option(100, help="(query, relevant passage) pairs, one per query."),
    steps: int = typer.Option(20, help="Points on the scaling path (Dai et al.: 20)."),
    rule: str = typer.Option("riemann_right", help="riemann_right (Dai et al.) or "
                             "gausslegendre."),
    keys: str = typer.Option("post", help="FFN intermediate after (post) or before (pre) "
                             "the activation."),
    sublayers: str = typer.Option("keys,values", help="keys and/or values."),
    sides: str = typer.Option("query,doc", help="Towers: query and/or doc."),
    target: str = typer.Option("relevance", help="relevance (similarity with the relevant "
                               "partner) or norm (L2 norm of the embedding)."),
    threshold: float = typer.Option(0.1, help="Active: attribution > threshold x the "
                                    "example's largest."),
    min_relevance: int = typer.Option(1, help="Grade that counts as relevant."),
    seed: int = typer.Option(0, help="Sampling seed."),
    max_length: int = typer.Option(128, help="Token limit of queries and passages."),
    shard_size: int = typer.Option(20, help="Examples per saved (resumable) job."),
    memory_budget: str = typer.Option("2GB", help="Activation memory per forward+backward "
                                      "chunk."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts table as JSON."),
) -> None:
    """Knowledge-neuron activation counts per layer for two encoders (base, trained).

    Example: irlens activations --model default --model /work/models/bi-nfcorpus
    --data ../shared/data/nfcorpus --examples 100 --out results/act-nfcorpus
    """
    from irlens.activations import ActivationConfig, run_activations

    config = ActivationConfig(n_examples=examples, split=split, seed=seed,
                              min_relevance=min_relevance, n_steps=steps, rule=rule, keys=keys,
                              sublayers=names(sublayers, "--sublayers"),
                              sides=names(sides, "--sides"), target=target,
                              threshold=threshold, max_length=max_length,
                              shard_size=shard_size, memory_budget=memory_budget)
    counts = run_activations(model, data, out, config, device=device, progress=True)
    typer.echo(f"wrote {out / 'activations.html'} and {out / 'counts'}", err=True)
    if json_out:
        echo_json(counts.to_frame().to_dict(orient="records"))
    else:
        cols = ["model", "side", "sublayer", "layer", "active_per_example", "units_on_share",
                "gini", "participation_ratio"]
        typer.echo(counts.to_frame()[cols].round(3).to_string(index=False))
