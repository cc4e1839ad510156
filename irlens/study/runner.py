"""Plan and run a study: sections in order, waves of jobs, each result saved as it lands.

Finished jobs (their artefact folder under ``OUT/jobs/``) are loaded, never recomputed;
the rest run in this process or on the ``executor`` passed in (e.g. Ray workers,
:class:`irlens.distributed.WorkerPool`). Every result is written by this process only, through
:class:`irlens.artifacts.Store` (temporary name, then rename), so a crash loses at most
the jobs in flight, and a Ray run resumes without Ray and the reverse.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from irlens.artifacts import Store, make_manifest
from irlens.errors import IrlensError
from irlens.executors import StudyExecutor
from irlens.study.config import StudySpec, load_spec
from irlens.study.jobs import Context, Job, StudyResult
from irlens.study.sections import SECTIONS

__all__ = ["Plan", "StudyRun", "check_model", "plan_study", "run_study"]


@dataclasses.dataclass
class Plan:
    """Jobs known so far (done or not), and estimates for waves not yet plannable."""

    jobs: list[Job]
    done: set[str]
    pending: dict[str, tuple[int, float]]  # "section/dataset" -> (more jobs, work)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # done job -> s

    def to_dict(self) -> dict[str, Any]:
        sections: dict[str, dict[str, Any]] = {}
        for job in self.jobs:
            row = sections.setdefault(f"{job.section}/{job.dataset}",
                                      {"jobs": 0, "done": 0, "work_left": 0.0})
            row["jobs"] += 1
            row["done"] += job.key in self.done
            row["work_left"] += 0 if job.key in self.done else job.work
        for name, (n, work) in self.pending.items():
            row = sections.setdefault(name, {"jobs": 0, "done": 0, "work_left": 0.0})
            row["later"] = n
            row["work_left"] += work
        for name, row in sections.items():  # seconds per unit of work, from finished jobs
            mine = [j for j in self.jobs if f"{j.section}/{j.dataset}" == name
                    and j.key in self.seconds and j.work > 0]
            work = sum(j.work for j in mine)
            row["seconds_left"] = (sum(self.seconds[j.key] for j in mine) / work
                                   * row["work_left"]) if work else None
        return {"jobs": len(self.jobs), "done": len(self.done & {j.key for j in self.jobs}),
                "later": sum(n for n, _ in self.pending.values()), "sections": sections,
                "work_left": sum(r["work_left"] for r in sections.values()),
                "work_unit": "forward passes (texts or path points)"}


@dataclasses.dataclass
class StudyRun:
    """What a run did: every job key, the ones it computed, the report path."""

    out: Path
    jobs: list[str]
    computed: list[str]
    report: Path | None
    seconds: float


def check_model(spec: StudySpec) -> str:
    """Check the model exists and suits every section, before loading its weights;
    returns ``"cross-encoder"`` or ``"bi-encoder"``."""
    from transformers import AutoConfig

    from irlens.models import resolve_model_path

    try:
        path = resolve_model_path(spec.model)
        config = AutoConfig.from_pretrained(path)
    except (IrlensError, OSError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise spec.error(("model",), f"model '{spec.model}': {message}") from None
    cross = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    kind = "cross-encoder" if cross else "bi-encoder"
    for name, params in spec.sections.items():
        if SECTIONS[name].needs_bi_encoder and cross:
            raise spec.error(("sections", name), f"section '{name}' needs a bi-encoder, but "
                             f"model '{spec.model}' is a cross-encoder; remove the section "
                             "or change the model")
        field = SECTIONS[name].cross_encoder_field(params)
        if field and not cross:
            raise spec.error(("sections", name, field), f"sections.{name}.{field} "
                             f"'{params[field]}' needs a cross-encoder, but model "
                             f"'{spec.model}' is a bi-encoder; change {field} or the model")
    return kind


def _spec(study: StudySpec | str | Path) -> StudySpec:
    return study if isinstance(study, StudySpec) else load_spec(study)


def _store(out: Path) -> Store:
    return Store(out, make_manifest("irlens.study", {"format": 1}))


def _lock(out: Path):
    """Hold an exclusive lock on ``out`` (``filelock``: any OS; released by the OS even on
    kill -9) from the first job to the written report, so two runs never compute the same
    jobs into one folder or write its report at once. The owner's pid is in ``.lock.pid``."""
    import os

    from filelock import FileLock, Timeout

    from irlens._io import atomic_path

    lock = FileLock(str(out / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid = out / ".lock.pid"
        owner = (pid.read_text().strip() if pid.is_file() else "") or "?"
        raise IrlensError(f"another irlens study (pid {owner}) is running in {out}; wait for "
                          "it to finish or use another --out") from None
    with atomic_path(out / ".lock.pid") as tmp:
        tmp.write_text(str(os.getpid()))
    return lock


def _waves(ctx: Context, store: Store, on_wave: Callable[[list[Job]], bool]
           ) -> Iterator[tuple[str, str]]:
    """Drive every section's plan; ``on_wave`` makes a wave's results available (or
    returns False to stop that plan). Yields (section, dataset) pairs that stopped early."""
    stopped: set[tuple[str, str]] = set()
    for name, section in SECTIONS.items():
        if name not in ctx.spec.sections:
            continue
        params = ctx.spec.sections[name]
        blocked = [ds for ds in params["datasets"]
                   if any((need, ds) in stopped for need in section.needs)]
        for ds in blocked:
            stopped.add((name, ds))
            yield name, ds
        plans = {ds: section.plan(ctx, ds, params) for ds in params["datasets"]
                 if ds not in blocked}
        while plans:
            wave: list[Job] = []
            for ds, gen in list(plans.items()):
                try:
                    jobs = next(gen)
                except StopIteration:
                    del plans[ds]
                    continue
                ctx.planned.setdefault((name, ds), []).extend(jobs)
                wave += jobs
            if not wave:
                continue
            if not on_wave(wave):
                for ds in plans:
                    stopped.add((name, ds))
                    yield name, ds
                plans = {}


def _load_done(ctx: Context, store: Store, jobs: list[Job]) -> list[Job]:
    """Load finished jobs' results; return the rest."""
    todo = []
    for job in jobs:
        if store.done(job.key):
            if job.key not in ctx.results:
                ctx.results[job.key] = store.load(job.key, StudyResult)
        else:
            todo.append(job)
    return todo


def plan_study(study: StudySpec | str | Path, out: str | Path, model=None) -> Plan:
    """The jobs a run would do, which are done, and an estimate of the rest."""
    spec = _spec(study)
    check_model(spec)
    ctx = Context(spec, model)
    store_path = Path(out)
    store = _store(store_path) if store_path.exists() else None
    all_jobs: list[Job] = []
    done: set[str] = set()
    seconds: dict[str, float] = {}

    def on_wave(wave: list[Job]) -> bool:
        all_jobs.extend(wave)
        if store is None:
            return False
        todo = _load_done(ctx, store, wave)
        done.update(j.key for j in wave if j not in todo)
        seconds.update({j.key: ctx.results[j.key].seconds for j in wave if j not in todo})
        return not todo

    pending = {}
    for name, ds in _waves(ctx, store, on_wave):
        n, work = SECTIONS[name].estimate(ctx, ds, spec.sections[name],
                                          ctx.planned.get((name, ds), []))
        if n:
            pending[f"{name}/{ds}"] = (n, work)
    return Plan(all_jobs, done, pending, seconds)


def run_study(study: StudySpec | str | Path, out: str | Path, *,
              executor: StudyExecutor | None = None, model=None, progress: bool = True,
              report: bool = True) -> StudyRun:
    """Run (or resume) a study into ``out`` and write ``out/report.html``.

    ``executor``: where the jobs run (:mod:`irlens.executors`; ``None``: in this process),
    e.g. ``irlens.distributed.WorkerPool(spec, workers)`` for Ray actors (one model each);
    cheap jobs always run here. ``model``: an already loaded retriever (must be the
    config's).
    """
    from tqdm.auto import tqdm

    spec = _spec(study)
    check_model(spec)
    started = time.perf_counter()
    out = Path(out)
    store = _store(out)
    lock = _lock(out)
    ctx = Context(spec, model)
    computed: list[str] = []
    every: list[str] = []

    def save(job: Job, result: StudyResult) -> None:
        store.save(job.key, result)
        ctx.results[job.key] = result
        computed.append(job.key)

    def on_wave(wave: list[Job]) -> bool:
        every.extend(j.key for j in wave)
        todo = _load_done(ctx, store, wave)
        if not todo:
            return True
        section = wave[0].section
        bar = tqdm(total=len(wave), initial=len(wave) - len(todo), desc=section,
                   unit="job", disable=not progress, file=sys.stderr)
        remote = [j for j in todo if not j.local] if executor is not None else []
        for job in todo:
            if job in remote:
                continue
            save(job, SECTIONS[job.section].run(ctx, job))
            bar.update(1)
        if remote:
            for job, result in executor.run(remote):
                save(job, result)
                bar.update(1)
        bar.close()
        return True

    page = None
    try:
        if spec.text:
            from irlens._io import atomic_path

            with atomic_path(out / "study.yaml") as tmp:
                tmp.write_text(spec.text)
        for _ in _waves(ctx, store, on_wave):
            pass
        if report:  # still under the lock: a second run cannot write the same report
            from irlens.study.report import write_report

            page = write_report(ctx, out, time.perf_counter() - started)
    finally:
        (out / ".lock.pid").unlink(missing_ok=True)
        lock.release()
    return StudyRun(out, every, computed, page, time.perf_counter() - started)
