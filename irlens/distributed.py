"""Scale-out with Ray: executors whose actors each hold one model.

``connect("auto")`` joins the Ray cluster this machine belongs to (``RAY_ADDRESS``, or
one started with ``ray start --head``), else starts a local one; ``connect("HOST:PORT")``
joins that cluster and fails within seconds when it cannot be reached.

Two executors (:mod:`irlens.executors`), both started on first use and closed by
``with`` (or :meth:`close`):

- :class:`WorkerPool`, for a study: one actor per worker (one CPU, or one GPU where the
  cluster has them), each loading the study's model once; study jobs (corpus-encoding
  chunks, attributed pair groups, NIG triplet shards, pruning evaluations) are sent to the
  actors and their results come back to the driver, which alone writes them
  (:func:`irlens.study.run_study` ``executor=``).
- :class:`RayExecutor`, for the plain commands: the jobs of
  :func:`irlens.artifacts.resume` (NIG triplet shards of ``irlens neurons``, pruning
  evaluations of ``irlens prune``, attributed pairs of ``irlens faithfulness``) and the
  corpus-encoding chunks of :func:`irlens.retrieval.encode_corpus` (``irlens evaluate``).
  A job is pickled with its model replaced by a reference, which the actor resolves to
  its own copy (fingerprint checked).

A worker killed mid-job is restarted by Ray and the job retried (``max_restarts``,
``max_task_retries``), so no result is lost or written twice. Only the driver writes
results.

Ray is optional: ``pip install irlens[ray]``; nothing here imports it until an executor
is built (or :func:`connect` called).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from irlens.errors import IrlensError

__all__ = ["RayExecutor", "WorkerPool", "connect", "dispatch", "require_ray"]

RETRIES = 3


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise IrlensError("--ray needs Ray: pip install irlens[ray]") from None
    return ray


def _reachable(address: str, timeout: float) -> None:
    """Raise a one-line error unless a TCP connection to ``address`` opens in time."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise IrlensError(f"--ray '{address}' is not 'auto' or HOST:PORT (e.g. "
                          "10.0.0.5:6379 or ray://10.0.0.5:10001)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise IrlensError(f"cannot reach a Ray cluster at {address} ({reason}); start one "
                          "there with `ray start --head`, or use --ray auto") from None


def connect(address: str = "auto", *, timeout: float = 5.0, num_cpus: int | None = None
            ) -> dict[str, float]:
    """Join (or start) a Ray cluster; returns its resources (CPU, GPU counts)."""
    ray = require_ray()
    if address != "auto":  # an explicit address must answer, even in a running session
        _reachable(address, timeout)
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
        if address == "auto":
            target = os.environ.get("RAY_ADDRESS")
            if target:
                _reachable(target, timeout)
                ray.init(address=target, **options)
            else:
                try:
                    ray.init(address="auto", **options)
                except (ConnectionError, RuntimeError):
                    ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    return dict(ray.cluster_resources())


_ACTORS: dict[str, Any] = {}  # the Ray actor classes, made once on first use


def _actor_class(name: str):
    """The Ray actor class ``name`` (``StudyWorker`` or ``JobWorker``)."""
    if name not in _ACTORS:
        ray = require_ray()

        @ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)
        class StudyWorker:
            """Holds one study context (model loaded once); runs study jobs sent to it."""

            def __init__(self, spec, threads: int):
                import torch

                from irlens.study.jobs import Context

                torch.set_num_threads(threads)
                self.ctx = Context(spec)

            def pid(self) -> int:
                return os.getpid()

            def peak_rss(self) -> int:
                """Peak resident memory of this worker, in bytes (Linux)."""
                import resource

                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

            def run(self, job):
                from irlens.study.sections import SECTIONS

                want = job.inputs.get("model")
                if want is not None and want != self.ctx.fingerprint:
                    raise IrlensError(f"the worker's model ({self.ctx.fingerprint}) is not "
                                      f"the driver's ({want}); install the same model on "
                                      "every node")
                return SECTIONS[job.section].run(self.ctx, job)

        @ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)
        class JobWorker:
            """Holds one model (loaded once); runs pickled jobs and encodes corpus chunks."""

            def __init__(self, model_name: str, load: dict[str, Any]):
                from irlens.distributed import _load_worker_model

                _load_worker_model(model_name, load)

            def run(self, blob: bytes):
                from ray import cloudpickle

                return cloudpickle.loads(blob)()

            def encode(self, fingerprint: str, texts: list[str], batch_size: int):
                from irlens.distributed import _encode_texts

                return _encode_texts(fingerprint, texts, batch_size)

        _ACTORS.update(StudyWorker=StudyWorker, JobWorker=JobWorker)
    return _ACTORS[name]


def dispatch(actors: list, items: list, submit: Callable[[Any, Any], Any],
             name: Callable[[Any], str]) -> Iterator[tuple[Any, Any]]:
    """Run ``items`` on ``actors``, one at a time per actor (``submit(actor, item)`` returns
    the Ray reference); yield ``(item, result)`` as each finishes. A job's IrlensError is
    re-raised as one line; a job whose worker died more than :data:`RETRIES` times stops
    the run (finished results are already saved: rerun to resume)."""
    ray = require_ray()
    queue, idle = list(items), list(actors)
    running: dict[Any, tuple[Any, Any]] = {}
    while queue or running:
        while queue and idle:
            actor, item = idle.pop(0), queue.pop(0)
            running[submit(actor, item)] = (item, actor)
        [ready], _ = ray.wait(list(running), num_returns=1)
        item, actor = running.pop(ready)
        idle.append(actor)
        try:
            result = ray.get(ready)
        except ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause()
            if isinstance(cause, IrlensError):
                raise IrlensError(str(cause).splitlines()[-1]) from None
            raise
        except ray.exceptions.RayActorError as err:
            raise IrlensError(f"job {name(item)} failed {RETRIES + 1} times on Ray workers "
                              f"({type(err).__name__}); rerun to resume") from None
        yield item, result


class _Pool:
    """``workers`` Ray actors (default: one per CPU, or per GPU when ``device`` may use
    the cluster's GPUs), started on first use; ``with`` closes them."""

    def __init__(self, address: str, workers: int | None, device: str, threads: int = 1):
        resources = connect(address)  # fails fast (one line) on an unreachable cluster
        self.gpus = int(resources.get("GPU", 0)) if device in ("auto", "cuda") else 0
        if workers is None:
            workers = self.gpus or max(1, int(resources.get("CPU", 1)) // threads)
        if workers < 1:
            raise IrlensError(f"workers must be >= 1, got {workers}")
        self.workers, self.threads = workers, threads
        self.actors: list = []

    def _new_actor(self):
        raise NotImplementedError

    def _started(self) -> list:
        if not self.actors:
            self.actors = [self._new_actor() for _ in range(self.workers)]
        return self.actors

    def close(self) -> None:
        """Kill the actors (a later job starts new ones)."""
        if self.actors:
            ray = require_ray()
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
        self.actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkerPool(_Pool):
    """The study executor: actors each holding ``spec``'s context (model loaded once);
    :meth:`run` yields ``(job, result)`` as each study job finishes."""

    def __init__(self, spec, workers: int | None = None, threads: int = 1, *,
                 address: str = "auto"):
        super().__init__(address, workers, spec.device, threads)
        self.spec = spec

    def _new_actor(self):
        return _actor_class("StudyWorker").options(
            num_cpus=self.threads, num_gpus=1 if self.gpus else 0).remote(self.spec,
                                                                         self.threads)

    def run(self, jobs: list) -> Iterator[tuple[Any, Any]]:
        return dispatch(self._started(), jobs, lambda actor, job: actor.run.remote(job),
                        lambda job: job.key)


class RayExecutor(_Pool):
    """The executor of the plain commands: actors each holding
    ``load_model(model_name, **load)``. A worker killed mid-job is restarted and its job
    retried; one that fails :data:`RETRIES` + 1 times stops the run (rerun to resume)."""

    def __init__(self, address: str, model_name: str, *, workers: int | None = None,
                 **load: Any):
        super().__init__(address, workers, load.get("device", "auto"))
        self.model_name, self.load = model_name, load

    def _new_actor(self):
        return _actor_class("JobWorker").options(
            num_cpus=1, num_gpus=1 if self.gpus else 0).remote(self.model_name, self.load)

    def run(self, jobs: Mapping[str, Callable[[], Any]]) -> Iterator[tuple[str, Any]]:
        """Yield (key, result) for each job as it finishes."""
        return dispatch(self._started(), list(jobs),
                        lambda actor, key: actor.run.remote(_dumps_by_reference(jobs[key])),
                        str)

    def encode(self, model, chunks: list[tuple[int, list[str]]], batch_size: int
               ) -> Iterator[tuple[int, Any]]:
        """Yield (start, (vectors, n_truncated)) for each (start, texts) chunk as it
        finishes; every worker's model is checked against ``model``'s fingerprint."""
        for (start, _), result in dispatch(
                self._started(), chunks,
                lambda actor, chunk: actor.encode.remote(model.fingerprint, chunk[1],
                                                         batch_size),
                lambda chunk: f"chunk at row {chunk[0]}"):
            yield start, result


# -- in a JobWorker process --------------------------------------------------------------
_WORKER_MODEL: Any = None  # the model of this Ray worker process (set by its actor)


def _load_worker_model(model_name: str, load: dict[str, Any]) -> str:
    """Load this worker's model once (in the actor's constructor); returns its fingerprint."""
    global _WORKER_MODEL
    import torch

    from irlens.models import load_model

    torch.set_num_threads(1)
    _WORKER_MODEL = load_model(model_name, **load)
    return _WORKER_MODEL.fingerprint


def _worker_model(fingerprint: str, max_length: int | None = None):
    """This worker's model, checked against the driver's fingerprint (and unpickling a
    job's model reference: set to the driver's ``max_length``)."""
    model = _WORKER_MODEL
    if model is None:
        raise IrlensError("a job that uses a model reached a process without one; run it "
                          "through irlens.distributed.RayExecutor")
    if model.fingerprint != fingerprint:
        raise IrlensError(f"the worker's model ({model.fingerprint}) is not the driver's "
                          f"({fingerprint}); install the same model on every node")
    if max_length is not None:
        model.max_length = max_length
    return model


def _encode_texts(fingerprint: str, texts: list[str], batch_size: int):
    """Encode ``texts`` as documents with this worker's model, in the same batches as the
    single-process encoder; returns (vectors, n_truncated)."""
    import numpy as np

    model = _worker_model(fingerprint)
    vectors, truncated = [], 0
    for start in range(0, len(texts), batch_size):
        batch, cut = model.encode_batch(texts[start : start + batch_size], "doc")
        vectors.append(batch.numpy())
        truncated += cut
    return np.concatenate(vectors), truncated


def _dumps_by_reference(job: Callable) -> bytes:
    """Pickle ``job`` with every retriever in it replaced by a reference to the worker's."""
    import io

    import torch
    from ray import cloudpickle

    from irlens.models import Retriever

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, Retriever):
                return _worker_model, (obj.fingerprint, obj.max_length)
            if isinstance(obj, torch.nn.Module):  # a copy would miss the worker's hooks
                raise IrlensError(f"a job holds a {type(obj).__name__} that is not a whole "
                                  "irlens model; it cannot run on Ray workers")
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    Pickler(buffer).dump(job)
    return buffer.getvalue()
