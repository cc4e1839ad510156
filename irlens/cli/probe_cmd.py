"""``irlens probe``: a thin command over :func:`irlens.probing.run_probes`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.errors import IrlensError
from irlens.options import checked
from irlens.options.analysis import PROBE

MODEL_HELP = ("A bi-encoder: 'default', a model folder, a HF id, or DOC+QUERY for a two-tower "
              "(DPR) pair. Give it twice: base, then trained.")


def names(text: str, what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise IrlensError(f"{what} is empty; give comma-separated names")
    return values


@app.command("probe")
@friendly_errors
@checked(PROBE)
def probe_command(
    model: list[str] = PROBE.cli("model"),
    data: Path = PROBE.cli("data"),
    out: Path = PROBE.cli("out"),
    split: str = PROBE.cli("split"),
    candidates: int = PROBE.cli("candidates"),
    queries: int = PROBE.cli("queries"),
    folds: int = PROBE.cli("folds"),
    depth: int = PROBE.cli("depth"),
    min_relevance: int = PROBE.cli("min_relevance"),
    pooling: str = PROBE.cli("pooling"),
    task: str = PROBE.cli("task"),
    listwise: str = PROBE.cli("listwise"),
    c: float = PROBE.cli("c"),
    seed: int = PROBE.cli("seed"),
    max_length: int = PROBE.cli("max_length"),
    batch_size: int = PROBE.cli("batch_size"),
    device: str = PROBE.cli("device"),
    json_out: bool = PROBE.cli("json_out"),
) -> None:
    """Layer-wise linear probes of relevance for two (or more) encoders.

    Example: irlens probe --model default --model /work/models/bi-nfcorpus
    --data ../shared/data/nfcorpus --queries 200 --out results/probe-nfcorpus
    """
    from irlens.probing import ProbeConfig, run_probes

    config = ProbeConfig(n_candidates=candidates, folds=folds, max_queries=queries or None,
                         split=split, seed=seed, depth=depth, min_relevance=min_relevance,
                         poolings=names(pooling, "--pooling"), tasks=names(task, "--task"),
                         listwise=listwise, c=c, max_length=max_length, batch_size=batch_size)
    result = run_probes(model, data, out, config, device=device, progress=True)
    summary = result.summary_frame()
    typer.echo(f"wrote {out / 'probe.html'} and {out / 'probes'}", err=True)
    if json_out:
        echo_json(summary.to_dict(orient="records"))
    else:
        typer.echo(summary.round(3).to_string(index=False))
