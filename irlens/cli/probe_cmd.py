"""``irlens probe``: a thin command over :func:`irlens.probing.run_probes`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.errors import IrlensError

MODEL_HELP = ("A bi-encoder: 'default', a model folder, a HF id, or DOC+QUERY for a two-tower "
              "(DPR) pair. Give it twice: base, then trained.")


def names(text: str, what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise IrlensError(f"{what} is empty; give comma-separated names")
    return values


@app.command("probe")
@friendly_errors
def probe_command(
    model: list[str] = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    data: Path = typer.Option(..., "--data", "-d", help="BEIR folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; a rerun with the same "
                             "options resumes it."),
    split: str = typer.Option("test", help="Qrels split."),
    candidates: int = typer.Option(5, "--candidates", "-n", help="N: one relevant passage "
                                   "and N-1 BM25 hard negatives (2-5 in the paper)."),
    queries: int = typer.Option(200, help="Queries probed (0 = all)."),
    folds: int = typer.Option(5, help="Grouped cross-validation folds."),
    depth: int = typer.Option(100, help="BM25 depth the hard negatives come from."),
    min_relevance: int = typer.Option(1, help="Grade that counts as relevant."),
    pooling: str = typer.Option("cls,mean", help="Poolings: cls and/or mean."),
    task: str = typer.Option("listwise,pairwise", help="Tasks: listwise (pick the relevant "
                             "one of N) and/or pairwise (relevant or not)."),
    listwise: str = typer.Option("concat", help="Listwise probe: concat (one multinomial "
                                 "layer over [q; p1..pN], the reproduction's) or shared "
                                 "(one scorer over [p, q*p] for every candidate)."),
    c: float = typer.Option(1.0, help="Inverse L2 strength of the logistic regressions."),
    seed: int = typer.Option(0, help="Sampling and control-label seed."),
    max_length: int = typer.Option(256, help="Token limit of queries and passages."),
    batch_size: int = typer.Option(32, help="Texts per forward pass."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary table as JSON."),
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
