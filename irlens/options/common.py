"""Options many commands share, declared once (commands change a default or help with
:meth:`~irlens.options.Option.but`; the check stays the one written here)."""

from __future__ import annotations

from typing import Any

from irlens.errors import IrlensError
from irlens.options.core import Option, at_least, library, one_of

__all__ = ["BATCH_SIZE", "DATA", "DEVICE", "DTYPE", "JSON", "MAX_DOCS", "MAX_LENGTH", "MAX_QUERIES",
           "MEMORY_BUDGET", "MIN_RELEVANCE", "MODEL", "MODELS", "OUT", "RAY", "SEED", "SPLIT",
           "WORKERS", "check_model"]


def check_model(name: str) -> None:
    """Refuse a model that cannot exist before anything loads: a missing folder, a folder
    without config.json, an id missing offline. ``DOC+QUERY`` names a two-tower pair."""
    from irlens.models import resolve_model_path

    for part in str(name).split("+"):
        resolve_model_path(part.strip())


def _device(value: str) -> str | None:
    if value in ("auto", "cpu") or str(value).startswith("cuda"):
        return None
    return f"must be auto, cpu or cuda, got {value!r}"


def _memory(value: str) -> None:
    from irlens.paths.engine import parse_memory

    parse_memory(value)


def _no_such_folder(value: Any) -> None:
    from pathlib import Path

    if not Path(value).exists():
        raise IrlensError(f"{value} does not exist; pass a BEIR folder (corpus.jsonl, "
                          "queries.jsonl, qrels/)")


MODEL = Option("model", "str", "default", "'default', a model folder or a Hugging Face id.",
               library(check_model), flags=("--model", "-m"), last=True)
MODELS = MODEL.but(kind="list", default=...)
DATA = Option("data", "path", ..., "A BEIR folder.", library(_no_such_folder),
              flags=("--data", "-d"), last=True)
OUT = Option("out", "path", ..., "Output folder (resumable).", results=False,
             flags=("--out", "-o"))
SPLIT = Option("split", "str", "test", "Which qrels/<split>.tsv to use.")
SEED = Option("seed", "int", 0, "Sampling seed.", at_least(0))
DEVICE = Option("device", "str", "auto", "Where the model runs: auto, cpu or cuda.", _device,
                results=False)
BATCH_SIZE = Option("batch_size", "int", 64, "Texts per model forward pass.", at_least(1),
                    results=False)
MAX_DOCS = Option("max_docs", "int", None, "Quick runs: keep every judged document plus "
                  "distractors up to N.", at_least(1, "pass a positive count, or leave it out "
                                                      "for the whole corpus"))
MAX_QUERIES = Option("max_queries", "int", None, "Quick runs: keep the first N judged queries.",
                     at_least(1, "pass a positive count, or leave it out for every query"))
MAX_LENGTH = Option("max_length", "int", None, "Token limit of queries and documents.",
                    at_least(8, "pass a token limit of 8 or more"))
MEMORY_BUDGET = Option("memory_budget", "str", "1GB", "Activation memory per "
                       "forward+backward chunk.", library(_memory), results=False)
MIN_RELEVANCE = Option("min_relevance", "int", 1, "Grade that counts as relevant.",
                       at_least(0))
JSON = Option("json_out", "bool", False, "Print the summary as JSON on stdout.",
              results=False, flags=("--json",))
RAY = Option("ray", "str", None, "Run the work on Ray: 'auto' (this machine's cluster, or "
             "a new local one) or a cluster address (HOST:PORT, ray://HOST:10001). Needs pip "
             "install irlens\\[ray]. Without it Ray is not imported.", results=False,
             metavar="auto|ADDRESS")
WORKERS = Option("workers", "int", None, "Ray workers, one model each (default: one per "
                 "CPU, or per GPU).", at_least(1), results=False)
DTYPE = Option("dtype", "str", "float32", "Model weights' precision: float32 or bfloat16.",
               one_of("float32", "bfloat16"))
