"""``irlens evaluate``: retrieve with a model on a test collection and report IR metrics."""

from __future__ import annotations

import time
from pathlib import Path

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor
from irlens.options import check_out, checked
from irlens.options.retrieval import EVALUATE


@app.command("evaluate")
@friendly_errors
@checked(EVALUATE)
def evaluate_command(
    model: str = EVALUATE.cli("model"),
    data: str = EVALUATE.cli("data"),
    split: str = EVALUATE.cli("split"),
    rerank_from: str = EVALUATE.cli("rerank_from"),
    metrics: str = EVALUATE.cli("metrics"),
    k: int = EVALUATE.cli("k"),
    batch_size: int = EVALUATE.cli("batch_size"),
    device: str = EVALUATE.cli("device"),
    dtype: str = EVALUATE.cli("dtype"),
    max_docs: int = EVALUATE.cli("max_docs"),
    max_queries: int = EVALUATE.cli("max_queries"),
    cache_dir: Path = EVALUATE.cli("cache_dir"),
    output: Path = EVALUATE.cli("output"),
    out: Path = EVALUATE.cli("out"),
    strict: bool = EVALUATE.cli("strict"),
    run_file: Path = EVALUATE.cli("run_file"),
    per_query: bool = EVALUATE.cli("per_query"),
    json_out: bool = EVALUATE.cli("json_out"),
    ray: str = EVALUATE.cli("ray"),
    workers: int = EVALUATE.cli("workers"),
) -> None:
    """Evaluate a retriever on a test collection and print the metrics as JSON.

    Example: irlens evaluate --model default --data ../shared/data/scifact
    """
    from irlens._io import write_json
    from irlens.data import load_dataset
    from irlens.evaluation import evaluate
    from irlens.models import CrossEncoder, load_model
    from irlens.retrieval import load_run, save_run, search
    from irlens.training.provenance import warn_if_trained_on

    options = EVALUATE.results(locals())
    if out is not None:
        check_out(out, "evaluate", options)  # another dataset or model: refused before work
    check_ray(ray)  # fail fast on an unreachable cluster, before any loading
    started = time.perf_counter()
    dataset = load_dataset(data, split=split, max_docs=max_docs, max_queries=max_queries,
                           strict=strict)
    warn_if_trained_on(model, data, split)
    if rerank_from in (None, "bm25"):
        first_stage = rerank_from
    else:
        first_stage = load_run(rerank_from)
    if model == "bm25":
        retriever = "bm25"
        about = {"retriever": "bm25", "model_fingerprint": None, "device": "cpu", "dtype": None}
    else:
        retriever = load_model(model, device=device, dtype=dtype)
        about = {
            "retriever": type(retriever).__name__,
            "model_fingerprint": retriever.fingerprint,
            "device": str(retriever.device),
            "dtype": dtype,
        }
    if rerank_from is None and isinstance(retriever, CrossEncoder):
        rerank_from = "bm25"  # what search() does for a cross-encoder; recorded below
    with ray_executor(None if model == "bm25" else ray, model, workers,  # chunks on Ray
                      device=device, dtype=dtype) as executor:
        run = search(
            retriever,
            dataset,
            k=k,
            first_stage=first_stage,
            batch_size=batch_size,
            cache_dir=cache_dir,
            executor=executor,
        )
    result = evaluate(run, dataset.qrels, metrics, data=dataset,
                      model=None if retriever == "bm25" else retriever)
    payload = {
        "model": model,
        **about,
        "rerank_from": rerank_from,
        "data": data,
        "dataset": dataset.name,
        "split": split,
        "n_docs": len(dataset.corpus),
        "k": k,
        "seconds": round(time.perf_counter() - started, 2),
        **result.to_dict(per_query=per_query),
    }
    if run_file is not None:
        save_run(run, run_file, tag=model.replace(" ", "_"))
    if output is not None:
        write_json(output, payload)
    if out is not None:
        result.manifest.extra["options"] = options
        result.save(out)
    echo_json(payload)
