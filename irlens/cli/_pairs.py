"""``irlens explain --pairs``: token-pair attribution of one bi-encoder pair."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens.errors import IrlensError


def _refuse_cross_encoder(model: str) -> None:
    """Fail before loading weights when the model folder is a cross-encoder."""
    from transformers import AutoConfig

    from irlens.models import resolve_model_path
    from irlens.models.loading import is_cross_encoder

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError):
        return  # load_model reports unreadable models itself
    if is_cross_encoder(config):
        raise IrlensError(f"--pairs is a bi-encoder method (it factorises s(a, b) = "
                          f"e(a) . e(b)); {model} is a cross-encoder: drop --pairs for token "
                          "attribution")


def explain_pairs(query: str, doc: str, model: str, steps: int, rule: str, baseline: str,
                  max_doc_tokens: int | None, memory_budget: str, device: str,
                  html: Path | None, out: Path | None, as_json: bool, top: int) -> None:
    """Compute, print the top pairs (or JSON with ``as_json``), and write the page and
    ``pairs.json`` when asked (``out`` is a folder: ``pairs.html`` and ``pairs.json``)."""
    from irlens.attribution.pairs import IntegratedJacobians
    from irlens.cli._app import warnings_as_lines
    from irlens.models import load_model

    _refuse_cross_encoder(model)
    retriever = load_model(model, device=device)
    method = IntegratedJacobians(retriever, baseline=baseline, n_steps=steps, rule=rule,
                                 memory_budget=memory_budget, max_doc_tokens=max_doc_tokens)
    with warnings_as_lines():
        [result] = method.attribute([query], [doc])
    import json

    from irlens._io import atomic_path
    from irlens.attribution.pairs_view import save_pairs_html

    q, d, m = result.words()
    payload = {"query_words": q, "doc_words": d, "matrix": m.tolist(),
               "score": result.score, "expected": result.expected,
               "completeness_gap": result.completeness_gap,
               "top_pairs": result.top_pairs(top), "parameters": result.parameters}
    written = []
    if out is not None:
        html = html or out / "pairs.html"
        with atomic_path(out / "pairs.json") as tmp:
            tmp.write_text(json.dumps(payload) + "\n")
        written.append(out / "pairs.json")
    if html is not None:
        save_pairs_html([result], html, top)
        written.append(html)
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    if as_json:
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"score: {result.score:.4f}   four-term sum: {result.expected:.4f}   "
               f"completeness gap: {result.completeness_gap:.2e} ({result.relative_gap:.2%})")
    for q, d, v in result.top_pairs(top):
        typer.echo(f"  {v:+.4f}  {q} x {d}")
