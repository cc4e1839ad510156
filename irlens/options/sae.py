"""Options of ``irlens sae train``, ``eval``, ``explain`` and ``steer``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from irlens.options.common import (
    BATCH_SIZE,
    DATA,
    JSON,
    MAX_DOCS,
    MAX_LENGTH,
    MAX_QUERIES,
    MODEL,
    OUT,
    SEED,
    SPLIT,
)
from irlens.options.core import (
    Option,
    Table,
    at_least,
    comma_list,
    one_of,
    positive,
)

__all__ = ["SAE_EVAL", "SAE_EXPLAIN", "SAE_STEER", "SAE_TRAIN", "sae_width"]


def sae_width(path: str | Path) -> int | None:
    """The latents of the SAE in ``path`` (or ``path/sae``), from its cfg.json alone; None
    when there is none or it cannot be read (loading the SAE then reports it)."""
    for folder in (Path(path), Path(path) / "sae"):
        try:
            raw = json.loads((folder / "cfg.json").read_text())
        except (OSError, ValueError):
            continue
        own = raw.get("irlens") or {}
        if "d_in" in own and "expansion_factor" in own:
            return int(own["d_in"]) * int(own["expansion_factor"])
        for key in ("d_sae", "num_latents"):
            if isinstance(raw.get(key), int) and raw[key] > 0:
                return raw[key]
        if isinstance(raw.get("expansion_factor"), int) and isinstance(raw.get("d_in"), int):
            return raw["expansion_factor"] * raw["d_in"]
    return None


def _latents_fit(values: dict[str, Any]) -> str | None:
    """--latents and --alpha within the SAE's width (read from its cfg.json)."""
    width = sae_width(values["sae"])
    if width is None:
        return None
    chosen = [int(x) for x in str(values.get("latents") or "").split(",") if x.strip()]
    bad = [i for i in chosen if i >= width]
    if bad:
        return (f"--latents {bad[0]} is out of range: the SAE has {width} latents "
                f"(0-{width - 1}); pass latent indices below {width}")
    if values["alpha"] > width:
        return (f"--alpha {values['alpha']} is more than the SAE's {width} latents; pass "
                f"at most {width}")
    return None


def _k_fits(values: dict[str, Any]) -> str | None:
    """Every --k within the SAE width, from the model's config alone (no weights)."""
    from transformers import AutoConfig

    from irlens.models import resolve_model_path

    hook = values.get("hook")
    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(values["model"]))
        ffn = hook is not None and ".ffn." in hook and hook.rsplit(".", 1)[-1] in ("pre", "post")
        dim = int(cfg.intermediate_size if ffn else cfg.hidden_size)  # an FFN hook's width
    except (OSError, ValueError, AttributeError):
        return None
    width = dim * values["expansion"]
    too_big = [k for k in (int(x) for x in values["k"].split(",") if x.strip()) if k > width]
    if too_big:
        return (f"--k {too_big[0]} is more than the SAE width {width} ({dim} dimensions x "
                f"--expansion {values['expansion']}); pass a smaller --k or a larger "
                "--expansion")
    return None


EMBEDDING_CACHE = Option("embedding_cache", "path", None, "encode_corpus cache folder "
                         "[default: $IRLENS_CACHE_DIR or ~/.cache/irlens].", results=False,
                         flags=("--embedding-cache",))


SAE_TRAIN = Table("sae train", [
    DATA.but(help="BEIR folder; repeat the option.", kind="list"),
    OUT.but(help="Output folder: cache/ and one run folder per k (k64/sae is the SAE); a rerun "
                 "resumes."),
    MODEL.but(help="'default', a folder or a HF id."),
    Option("queries", "str", "train,dev",
           "Qrels splits whose queries join the documents as training rows (comma list, "
           "skipped where a dataset lacks them; 'none': documents only). Test queries (and "
           "train queries with a test query's text) stay held out unless 'test' is named; the "
           "SAE's manifest records what it was trained on."),
    Option("k", "str", "64",
           "Active latents; comma list trains one SAE per k.",
           comma_list(at_least(1), int, "32,64")),
    Option("expansion", "int", 16, "Latents per input dimension.", at_least(1)),
    Option("batch_topk", "bool", False, "BatchTopK instead of TopK."),
    Option("auxk_alpha", "float", 1 / 32, "AuxK weight (0: off).", at_least(0)),
    Option("rank_kl", "float", 0.0, "Kang et al.'s ranking KL weight (0: off).", at_least(0)),
    Option("hook", "str", None, "A hook point (token rows) instead of pooled vectors."),
    Option("epochs", "int", 10, "Passes over the cached vectors.", at_least(1)),
    BATCH_SIZE.but(default=512, help="Vectors per training step.", results=True),
    Option("lr", "float", None, "Adam learning rate [default: sparsify's rule].", positive()),
    SEED,
    Option("balance", "bool", False,
           "Sample every dataset equally often, not in proportion to its size."),
    MAX_DOCS.but(help="Keep at most this many documents per dataset."),
    MAX_QUERIES.but(help="Keep at most this many queries per dataset."),
    MAX_LENGTH.but(help="Cut texts to this many tokens [default: the model's]."),
    EMBEDDING_CACHE,
    JSON.but(help="Print the summary as JSON on stdout."),
], rules=[_k_fits])


def _inputs(sae_help: str, out_help: str) -> list[Option]:
    """The options every command reading a trained SAE starts with."""
    return [Option("sae", "path", ..., sae_help, flags=("--sae",)),
            DATA.but(help="BEIR folder; repeat the option.", kind="list"),
            OUT.but(help=out_help),
            MODEL.but(help="'default', a folder or a HF id."),
            SPLIT.but(help="Qrels split (its queries are used).")]


_READ = [MAX_DOCS.but(help="Keep at most this many documents per dataset."),
         MAX_LENGTH.but(help="Cut texts to this many tokens [default: the model's]."),
         EMBEDDING_CACHE,
         JSON.but(help="Print the summary as JSON on stdout.")]


SAE_EVAL = Table("sae eval", [
    *_inputs("SAE folder or irlens sae train --out.", "Output folder."),
    *_READ,
])


SAE_EXPLAIN = Table("sae explain", [
    *_inputs("An SAE folder (e.g. out/k64/sae).",
             "Output folder (dictionary, scores, latents.html, llm-cache)."),
    Option("latents", "int", 100, "Latents to describe (spread over frequencies).", at_least(1)),
    Option("llm_url", "str", None, "OpenAI-compatible base URL (…/v1).", results=False),
    Option("llm_model", "str", "default", "Model name sent to --llm-url."),
    Option("local_llm", "bool", False, "Explain with the offline Gemma 3 270M GGUF."),
    Option("llm_latents", "int", 20, "Latents the LLM explains.", at_least(0)),
    *_READ,
])


SAE_STEER = Table("sae steer", [
    *_inputs("An SAE folder (e.g. out/k64/sae).", "Output folder."),
    Option("latents", "str", None,
           "Latents to steer towards (comma list); default: none (PRF only).",
           comma_list(at_least(0), int, "12,40")),
    Option("deltas", "str", "0.04,0.08,0.16,0.32", "Steering strengths.",
           comma_list(None, float, "0.04,0.08")),
    Option("alpha", "int", 5, "PRF: latents taken from the feedback documents.", at_least(1)),
    Option("n_feedback", "int", 10, "PRF: feedback documents per query.", at_least(1)),
    Option("weighting", "str", "mass,idf",
           "PRF: how feedback latents are chosen: mass (summed activation, Kang et al.) and/or "
           "idf (times log(N/df)).",
           comma_list(one_of("irlens.sae.steering:WEIGHTINGS"), example="mass,idf")),
    SEED,
    *_READ,
], rules=[_latents_fit])
