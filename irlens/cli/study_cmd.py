"""``irlens study``: run a whole study from one config file and write one report."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import study_executor
from irlens.errors import IrlensError
from irlens.options import checked
from irlens.options.analysis import STUDY


@app.command("study")
@friendly_errors
@checked(STUDY)
def study_command(
    config: Path = STUDY.cli("config"),
    out: Path = STUDY.cli("out"),
    init: bool = STUDY.cli("init"),
    dry_run: bool = STUDY.cli("dry_run"),
    ray: str = STUDY.cli("ray"),
    workers: int = STUDY.cli("workers"),
    json_out: bool = STUDY.cli("json_out"),
) -> None:
    """Run every section of a study (evaluate, faithfulness, neurons, prune), resumably,
    and write OUT/report.html.

    Example: irlens study --init study.yaml && irlens study study.yaml --dry-run
    """
    from irlens.study import EXAMPLE, check_model, load_spec, plan_study, run_study

    if init:
        if config.exists():
            raise IrlensError(f"{config} exists; pass a new file name to --init")
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(EXAMPLE)
        typer.echo(f"wrote {config}; edit the dataset paths, then: irlens study {config} "
                   "--dry-run", err=True)
        return
    spec = load_spec(config)
    out = out or Path("results") / config.stem
    if dry_run:
        plan = plan_study(spec, out).to_dict()
        if json_out:
            echo_json(plan)
            return
        typer.echo(f"{'section/dataset':28} {'jobs':>5} {'done':>5} {'later':>6} "
                   f"{'work left':>12} {'time left':>10}")
        for name, row in plan["sections"].items():
            left = "?" if row.get("seconds_left") is None else f"{row['seconds_left']:.0f} s"
            typer.echo(f"{name:28} {row['jobs']:>5} {row['done']:>5} "
                       f"{row.get('later', 0):>6} {row['work_left']:>12,.0f} {left:>10}")
        typer.echo(f"{'total':28} {plan['jobs']:>5} {plan['done']:>5} {plan['later']:>6} "
                   f"{plan['work_left']:>12,.0f}")
        typer.echo(f"work: {plan['work_unit']}; 'later' jobs are planned once the jobs "
                   "they build on have run; time left is extrapolated from finished jobs")
        return
    check_model(spec)  # the model suits every section, before Ray starts
    with study_executor(ray, spec, workers) as executor:
        run = run_study(spec, out, executor=executor)
    payload = {"out": str(run.out), "jobs": len(run.jobs), "computed": len(run.computed),
               "reused": len(run.jobs) - len(run.computed), "seconds": round(run.seconds, 1),
               "report": str(run.report)}
    if json_out:
        echo_json(payload)
    else:
        typer.echo(f"{payload['jobs']} jobs ({payload['computed']} computed, "
                   f"{payload['reused']} reused) in {payload['seconds']} s; report: "
                   f"{payload['report']}")
