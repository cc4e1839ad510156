"""``irlens explain`` (token attribution of one pair) and ``irlens faithfulness`` (a study)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, friendly_errors


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print warnings raised inside as one 'warning: ...' line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    typer.echo(f"warning: {w.message}", err=True)


@app.command("explain")
@friendly_errors
def explain_command(
    query: str = typer.Argument(..., help="The query text."),
    doc: str = typer.Argument(..., help="The document text."),
    model: str = typer.Option("default", "--model", "-m",
                              help="'default', a model folder or a Hugging Face id."),
    method: str = typer.Option("ig", help="ig, sig, occlusion, gxi or random (ig-pad, "
                                          "sig-mask... set the baseline)."),
    baseline: str = typer.Option("mask", help="pad, mask, zero or text:<words>."),
    steps: int = typer.Option(50, "--steps", "--n-steps", help="Quadrature points per path."),
    rule: str = typer.Option("gausslegendre", help="Quadrature: gausslegendre or riemann_left|"
                             "right|middle|trapezoid."),
    target: str = typer.Option("both", help="Tokens to explain: query, doc or both."),
    scalar: str = typer.Option(None, help="Cross-encoders: explain the 'logit' or the 'prob' "
                                          "[default: the model's]."),
    max_doc_tokens: int = typer.Option(None, help="Cut the document to N word pieces."),
    memory_budget: str = typer.Option("1GB", help="Activation memory per forward+backward."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    html: Path = typer.Option(None, "--html", help="Write the heatmap page here."),
    json_path: Path = typer.Option(None, "--json", help="Write the result as JSON here."),
    top: int = typer.Option(8, help="How many top words to print."),
    pairs: bool = typer.Option(False, "--pairs", help="Bi-encoders: which query word met "
                               "which document word (integrated Jacobians)."),
) -> None:
    """Attribute a (QUERY, DOC) score to tokens and show the words that matter most.

    Example: irlens explain "what do cats eat" "Cats eat mice." --method sig --html out.html
    """
    if pairs:
        from irlens.cli._pairs import explain_pairs

        return explain_pairs(query, doc, model, steps, rule, baseline, max_doc_tokens,
                             memory_budget, device.value, html, json_path, top)
    from irlens.attribution import make_method
    from irlens.attribution.html import save_html
    from irlens.models import load_model

    retriever = load_model(model, device=device.value)
    explainer = make_method(method, retriever, n_steps=steps, rule=rule, baseline=baseline,
                            target=target, output=scalar, max_doc_tokens=max_doc_tokens,
                            memory_budget=memory_budget)
    with _warnings_as_lines():
        [result] = explainer.attribute([query], [doc])
    if json_path is not None:
        from irlens._io import atomic_path

        with atomic_path(json_path) as tmp:
            tmp.write_text(result.to_json() + "\n")
    if html is not None:
        save_html([result], html)
    typer.echo(f"score ({result.output}): {result.score:.4f}   baseline score: "
               f"{result.baseline_score:.4f}   completeness gap: {result.completeness_gap:.2e} "
               f"({result.relative_gap:.2%})")
    words = sorted(result.words(), key=lambda w: -abs(w.score))[:top]
    for w in words:
        side = "query" if w.segment == 1 else "doc"
        typer.echo(f"  {w.score:+.4f}  {side:<5}  {w.text}")
    for path in (json_path, html):
        if path is not None:
            typer.echo(f"wrote {path}")


@app.command("faithfulness")
@friendly_errors
def faithfulness_command(
    model: str = typer.Option("default", "--model", "-m",
                              help="'default', a model folder or a Hugging Face id."),
    data: str = typer.Option(..., "--data", "-d", help="A BEIR folder."),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to sample pairs from."),
    pairs: int = typer.Option(50, help="Relevant (query, doc) pairs to explain."),
    methods: str = typer.Option("ig-pad,ig-mask,sig-mask,gxi,random",
                                help="Comma-separated methods (occlusion-mask is "
                                "SIG-mask's exact limit, far cheaper)."),
    n_steps: int = typer.Option(10, "--n-steps", "--steps", help="Quadrature points per path."),
    rule: str = typer.Option("gausslegendre", help="Quadrature rule."),
    target: str = typer.Option("doc", help="Tokens to explain: doc, query or both."),
    max_doc_tokens: int = typer.Option(128, help="Cut documents to N word pieces."),
    top_k: float = typer.Option(0.2, help="Share of explained tokens removed or kept."),
    candidates: int = typer.Option(50, help="BM25 candidates per query for rank changes."),
    scale: float = typer.Option(20.0, help="Bi-encoders: softmax scale for probabilities."),
    min_relevance: int = typer.Option(1, help="Grade a sampled document needs (DL19: 2)."),
    seed: int = typer.Option(0, help="Seed for sampling pairs and random scores."),
    memory_budget: str = typer.Option("1GB", help="Activation memory per forward+backward."),
    group_size: int = typer.Option(4, help="Pairs explained together (checkpoint unit)."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    output: Path = typer.Option(None, "--output", "-o", help="Where the JSON table goes "
                                "[default: results/faithfulness-<dataset>.json]."),
) -> None:
    """Compare attribution methods' faithfulness on sampled relevant pairs; save the table.

    Resumable: finished groups go to <output>.partial.jsonl; rerun the same command after
    an interruption.
    """
    from irlens.attribution.study import faithfulness_study
    from irlens.data import load_dataset
    from irlens.models import load_model

    dataset = load_dataset(data, split)
    output = output or Path("results") / f"faithfulness-{dataset.name}.json"
    checkpoint = output.with_name(output.name + ".partial.jsonl")
    retriever = load_model(model, device=device.value)
    with _warnings_as_lines():
        table = faithfulness_study(
            retriever, dataset, pairs, [m.strip() for m in methods.split(",") if m.strip()],
            n_steps=n_steps, rule=rule, target=target,
            max_doc_tokens=max_doc_tokens, top_k=top_k, n_candidates=candidates, scale=scale,
            seed=seed, min_relevance=min_relevance, memory_budget=memory_budget,
            group_size=group_size, checkpoint=checkpoint, progress=True)
    table.save(output)
    checkpoint.unlink(missing_ok=True)
    typer.echo(table.to_markdown())
    typer.echo(f"wrote {output}")
