"""``irlens activations``: a thin command over :func:`irlens.activations.run_activations`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli.probe_cmd import names
from irlens.options import checked
from irlens.options.analysis import ACTIVATIONS


@app.command("activations")
@friendly_errors
@checked(ACTIVATIONS)
def activations_command(
    model: list[str] = ACTIVATIONS.cli("model"),
    data: Path = ACTIVATIONS.cli("data"),
    out: Path = ACTIVATIONS.cli("out"),
    split: str = ACTIVATIONS.cli("split"),
    examples: int = ACTIVATIONS.cli("examples"),
    steps: int = ACTIVATIONS.cli("steps"),
    rule: str = ACTIVATIONS.cli("rule"),
    keys: str = ACTIVATIONS.cli("keys"),
    sublayers: str = ACTIVATIONS.cli("sublayers"),
    sides: str = ACTIVATIONS.cli("sides"),
    target: str = ACTIVATIONS.cli("target"),
    threshold: float = ACTIVATIONS.cli("threshold"),
    min_relevance: int = ACTIVATIONS.cli("min_relevance"),
    seed: int = ACTIVATIONS.cli("seed"),
    max_length: int = ACTIVATIONS.cli("max_length"),
    shard_size: int = ACTIVATIONS.cli("shard_size"),
    memory_budget: str = ACTIVATIONS.cli("memory_budget"),
    device: str = ACTIVATIONS.cli("device"),
    json_out: bool = ACTIVATIONS.cli("json_out"),
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
