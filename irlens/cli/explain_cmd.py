"""``irlens explain`` (token attribution of one pair) and ``irlens faithfulness`` (a study)."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor, ray_option, workers_option
from irlens.errors import IrlensError


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Score(str, Enum):
    logit = "logit"
    prob = "prob"


def read_text(value: str, what: str) -> str:
    """``value`` itself, ``@path`` (the file's text) or ``-`` (standard input)."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@") and len(value) > 1:
        path = Path(value[1:])
        if not path.is_file():
            raise IrlensError(f"no such file for the {what}: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise IrlensError(f"{path} is not UTF-8 text ({err.reason} at byte "
                              f"{err.start})") from None
    return value


def check_explain_options(method: str, baseline: str | None, steps: int, rule: str,
                          target: str | None, max_doc_tokens: int | None,
                          memory_budget: str) -> None:
    """Refuse bad options before the model loads (one line each)."""
    from irlens.attribution.methods import check_method

    check_method(method, n_steps=steps, rule=rule, baseline=baseline, target=target or "doc",
                 memory_budget=memory_budget)
    if max_doc_tokens is not None and max_doc_tokens < 1:
        raise IrlensError(f"max-doc-tokens must be >= 1, got {max_doc_tokens}")


def default_target(model, target: str | None) -> str:
    """Bi-encoders: the document side with the query fixed (the question a ranking asks:
    why does this document score high for this query?); cross-encoders: both sides."""
    from irlens.models import BiEncoder

    return target or ("doc" if isinstance(model, BiEncoder) else "both")


def expected_passes(model, method: str, query: str, doc: str, target: str, steps: int,
                    max_doc_tokens: int | None) -> int:
    """Forward+backward rows a path method runs for one pair: n_steps for IG, explained
    tokens x n_steps for SIG; one forward per explained token for occlusion."""
    from irlens.attribution.methods import parse_spec
    from irlens.paths import cut_text

    if max_doc_tokens:
        doc = cut_text(model.tokenizer, doc, max_doc_tokens)
    n = {side: len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
         for side, text in (("query", query), ("doc", doc))}
    tokens = n["doc"] if target == "doc" else n["query"] if target == "query" else sum(n.values())
    base, params = parse_spec(method)
    steps = params.get("n_steps", steps)
    return {"ig": steps, "sig": tokens * steps, "occlusion": tokens, "gxi": 1}.get(base, 0)


def _gap_text(result) -> str:
    if math.isnan(result.completeness_gap):
        return "n/a (no path)"
    return f"{result.completeness_gap:.2e} ({result.relative_gap:.2%})"


@app.command("explain")
@friendly_errors
def explain_command(
    query: str = typer.Argument(..., help="The query text, @FILE or - (standard input)."),
    doc: str = typer.Argument(..., help="The document text, @FILE or - (standard input)."),
    model: str = typer.Option("default", "--model", "-m",
                              help="'default', a model folder or a Hugging Face id."),
    method: str = typer.Option("ig", help="ig, sig, occlusion, gxi or random (ig-pad, "
                               "sig-mask... set the baseline), or a spec such as "
                               "'ig(baseline=pad, n_steps=20)'. sig costs tokens x steps "
                               "forward+backward passes; occlusion-mask is its exact limit "
                               "and about 20x cheaper."),
    baseline: str = typer.Option(None, help="pad, mask, zero or text:<words> [default: "
                                 "mask]."),
    steps: int = typer.Option(50, "--steps", "--n-steps", help="Quadrature points per path."),
    rule: str = typer.Option("gausslegendre", help="Quadrature: gausslegendre or riemann_left|"
                             "right|middle|trapezoid."),
    target: str = typer.Option(None, help="Tokens to explain: query, doc or both [default: "
                               "doc for bi-encoders (the query stays fixed), both for "
                               "cross-encoders]."),
    score: Score = typer.Option(None, "--score", help="Cross-encoders: explain the logit or "
                                "the prob [default: the model's]."),
    max_doc_tokens: int = typer.Option(None, help="Cut the document to N word pieces."),
    memory_budget: str = typer.Option("1GB", help="Activation memory per forward+backward."),
    corpus: Path = typer.Option(None, "--corpus", help="A BEIR folder: place the baseline's "
                                "score among the query's scores against a sample of its "
                                "documents (a percentile)."),
    corpus_sample: int = typer.Option(200, help="Documents sampled from --corpus."),
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    html: Path = typer.Option(None, "--html", help="Write the heatmap page to this file."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for explain.html and "
                             "attribution.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    top: int = typer.Option(8, help="How many top words to print."),
    pairs: bool = typer.Option(False, "--pairs", help="Bi-encoders: which query word met "
                               "which document word (integrated Jacobians)."),
) -> None:
    """Attribute a (QUERY, DOC) score to tokens and show the words that matter most.

    Example: irlens explain "what do cats eat" @doc.txt --method occlusion-mask --html out.html
    """
    if pairs:
        from irlens.cli._pairs import explain_pairs

        return explain_pairs(query, doc, model, steps, rule, baseline or "mask", max_doc_tokens,
                             memory_budget, device.value, html, out, as_json, top)
    from irlens.attribution import make_method
    from irlens.attribution.html import save_html
    from irlens.models import load_model

    check_explain_options(method, baseline, steps, rule, target, max_doc_tokens, memory_budget)
    if query == "-" and doc == "-":
        raise IrlensError("only one of QUERY and DOC can come from standard input")
    query, doc = read_text(query, "query"), read_text(doc, "document")
    for what, text in (("query", query), ("document", doc)):
        if not text.strip():
            raise IrlensError(f"empty {what} (pair 0); attribution needs text on both sides")
    dataset = None
    if corpus is not None:
        from irlens.data import load_dataset

        dataset = load_dataset(corpus)
    retriever = load_model(model, device=device.value)
    target = default_target(retriever, target)
    explainer = make_method(method, retriever, n_steps=steps, rule=rule, baseline=baseline,
                            target=target, output=None if score is None else score.value,
                            max_doc_tokens=max_doc_tokens, memory_budget=memory_budget)
    passes = expected_passes(retriever, method, query, doc, target, steps, max_doc_tokens)
    if passes > 1:
        kind = "forward passes" if method.startswith("occlusion") else \
            "forward+backward passes"
        typer.echo(f"{method}: about {passes} {kind} (rows) for this pair", err=True)
    [result] = explainer.attribute([query], [doc], progress=passes > 1)
    percentile = None
    if dataset is not None:
        from irlens.attribution import reference

        docs = reference.corpus_sample(dataset, corpus_sample)
        scores = reference.candidate_scores(retriever, result.query, docs,
                                  None if score is None else score.value, max_doc_tokens)
        percentile = {"baseline": reference.score_percentile(result.baseline_score, scores),
                      "score": reference.score_percentile(result.score, scores),
                      "n_docs": len(scores), "corpus": dataset.name}
    if out is not None:
        from irlens._io import atomic_path

        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "attribution.json") as tmp:
            tmp.write_text(result.to_json() + "\n")
        save_html([result], out / "explain.html", percentiles=[percentile])
    if html is not None:
        save_html([result], html, percentiles=[percentile])
    if as_json:
        import json

        payload = json.loads(result.to_json())
        payload["percentile"] = percentile
        echo_json(payload)
    else:
        base = "n/a" if math.isnan(result.baseline_score) else f"{result.baseline_score:.4f}"
        typer.echo(f"score ({result.output}): {result.score:.4f}   baseline score: {base}   "
                   f"completeness gap: {_gap_text(result)}")
        if percentile is not None:
            typer.echo(f"baseline at the {percentile['baseline']:.1f}th percentile of the "
                       f"query's scores against {percentile['n_docs']} {percentile['corpus']} "
                       f"documents (the pair: {percentile['score']:.1f}th)")
        words = sorted(result.words(), key=lambda w: -abs(w.score))[:top]
        for w in words:
            side = "query" if w.segment == 1 else "doc"
            typer.echo(f"  {w.score:+.4f}  {side:<5}  {w.text}")
    for path in (out, html):
        if path is not None:
            typer.echo(f"wrote {path}", err=True)


@app.command("faithfulness")
@friendly_errors
def faithfulness_command(
    model: str = typer.Option("default", "--model", "-m",
                              help="'default', a model folder or a Hugging Face id."),
    data: str = typer.Option(..., "--data", "-d", help="A BEIR folder."),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to sample pairs from."),
    pairs: int = typer.Option(50, help="Relevant (query, doc) pairs to explain (>= 1)."),
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
    device: Device = typer.Option(Device.auto, help="Where the model runs."),
    out: Path = typer.Option(None, "--out", "-o", help="The study folder [default: "
                             "results/faithfulness-<dataset>]; a rerun resumes it."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout "
                                 "instead of a Markdown table."),
    ray: str = ray_option(),
    workers: int = workers_option(),
) -> None:
    """Compare attribution methods' faithfulness on sampled relevant pairs; save the table.

    Resumable: every finished pair is saved in the --out folder; rerun the same command
    after an interruption. The table is saved in <out>/table.
    """
    from irlens.attribution.study import check_study_options, faithfulness_study
    from irlens.data import load_dataset
    from irlens.models import load_model

    names = [m.strip() for m in methods.split(",") if m.strip()]
    check_study_options(pairs, names, n_steps=n_steps, rule=rule, target=target, top_k=top_k,
                        n_candidates=candidates, memory_budget=memory_budget)
    check_ray(ray)
    dataset = load_dataset(data, split)
    out = out or Path("results") / f"faithfulness-{dataset.name.replace('/', '_')}"
    retriever = load_model(model, device=device.value)
    with ray_executor(ray, model, workers, device=device.value) as executor:  # pairs on Ray
        table = faithfulness_study(
            retriever, dataset, pairs, names, n_steps=n_steps, rule=rule,
            target=target, max_doc_tokens=max_doc_tokens, top_k=top_k,
            n_candidates=candidates, scale=scale, seed=seed, min_relevance=min_relevance,
            memory_budget=memory_budget, out_dir=out, progress=True, executor=executor)
    if as_json:
        payload = table.to_dict()
        payload.pop("records")
        echo_json({**payload, "out": str(out)})
    else:
        typer.echo(table.to_markdown())
    typer.echo(f"wrote {out}", err=True)
