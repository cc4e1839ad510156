"""``irlens evaluate``: retrieve with a model on a test collection and report IR metrics."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor, ray_option, workers_option


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Dtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"


@app.command("evaluate")
@friendly_errors
def evaluate_command(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="The retriever: 'bm25' (lexical baseline), 'default' (all-MiniLM-L6-v2, "
        "offline), a local model folder or a Hugging Face id. Bi-encoders search the "
        "whole corpus; cross-encoders rerank BM25's top --k.",
    ),
    data: str = typer.Option(
        ...,
        "--data",
        "-d",
        help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or an "
        "ir_datasets id such as beir/scifact/test.",
    ),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to evaluate on."),
    rerank_from: str = typer.Option(
        None,
        "--rerank-from",
        help="Rerank a first stage's top --k instead of searching the corpus: 'bm25' or a "
        "TREC run file.",
    ),
    metrics: str = typer.Option(
        "nDCG@10,RR@10,R@100,AP",
        help="Comma-separated ir_measures names. For graded qrels (TREC DL) the usual "
        "binary cut is rel=2, e.g. nDCG@10,RR(rel=2)@10,AP(rel=2).",
    ),
    k: int = typer.Option(100, help="Documents retrieved (or reranked) per query."),
    batch_size: int = typer.Option(64, help="Texts per model forward pass."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    dtype: Dtype = typer.Option(Dtype.float32, help="Model weights' precision."),
    max_docs: int = typer.Option(
        None, help="Quick runs: keep every judged document plus distractors up to N."
    ),
    max_queries: int = typer.Option(None, help="Quick runs: keep the first N judged queries."),
    cache_dir: Path = typer.Option(
        None,
        help="Where corpus embeddings are cached [default: $IRLENS_CACHE_DIR or ~/.cache/irlens].",
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the JSON here."),
    out: Path = typer.Option(
        None, "--out", help="Save the evaluation here (a folder: manifest.json with the "
        "config and fingerprints, table.parquet with each query's values)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail when the qrels judge documents missing from the corpus "
        "(by default: one warning with their count)."
    ),
    run_file: Path = typer.Option(None, help="Write the ranking here (TREC run format)."),
    per_query: bool = typer.Option(False, help="Include each query's metric values."),
    json_out: bool = typer.Option(  # JSON is evaluate's only output; accepted like elsewhere
        False, "--json", help="Print the metrics as JSON on stdout (evaluate always does)."
    ),
    ray: str = ray_option(),
    workers: int = workers_option(),
) -> None:
    """Evaluate a retriever on a test collection and print the metrics as JSON.

    Example: irlens evaluate --model default --data ../shared/data/scifact
    """
    from irlens._io import write_json
    from irlens.data import load_dataset
    from irlens.evaluation import evaluate, parse_metrics
    from irlens.models import CrossEncoder, load_model
    from irlens.retrieval import load_run, save_run, search
    from irlens.training.provenance import warn_if_trained_on

    parse_metrics(metrics)  # fail on a typo before any encoding
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
        retriever = load_model(model, device=device.value, dtype=dtype.value)
        about = {
            "retriever": type(retriever).__name__,
            "model_fingerprint": retriever.fingerprint,
            "device": str(retriever.device),
            "dtype": dtype.value,
        }
    if rerank_from is None and isinstance(retriever, CrossEncoder):
        rerank_from = "bm25"  # what search() does for a cross-encoder; recorded below
    with ray_executor(None if model == "bm25" else ray, model, workers,  # chunks on Ray
                      device=device.value, dtype=dtype.value) as executor:
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
        result.save(out)
    echo_json(payload)
