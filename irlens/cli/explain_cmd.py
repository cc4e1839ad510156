"""``irlens explain`` (token attribution of one pair) and ``irlens faithfulness`` (a study)."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path

import typer

from irlens.cli._app import app, echo_json, friendly_errors
from irlens.cli._ray import check_ray, ray_executor
from irlens.errors import IrlensError
from irlens.options import checked
from irlens.options.attribution import EXPLAIN, FAITHFULNESS


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
@checked(EXPLAIN)
def explain_command(
    query: str = EXPLAIN.cli("query"),
    doc: str = EXPLAIN.cli("doc"),
    model: str = EXPLAIN.cli("model"),
    method: str = EXPLAIN.cli("method"),
    baseline: str = EXPLAIN.cli("baseline"),
    steps: int = EXPLAIN.cli("steps"),
    rule: str = EXPLAIN.cli("rule"),
    target: str = EXPLAIN.cli("target"),
    score: str = EXPLAIN.cli("score"),
    max_doc_tokens: int = EXPLAIN.cli("max_doc_tokens"),
    memory_budget: str = EXPLAIN.cli("memory_budget"),
    corpus: Path = EXPLAIN.cli("corpus"),
    corpus_sample: int = EXPLAIN.cli("corpus_sample"),
    device: str = EXPLAIN.cli("device"),
    html: Path = EXPLAIN.cli("html"),
    out: Path = EXPLAIN.cli("out"),
    as_json: bool = EXPLAIN.cli("as_json"),
    top: int = EXPLAIN.cli("top"),
    pairs: bool = EXPLAIN.cli("pairs"),
) -> None:
    """Attribute a (QUERY, DOC) score to tokens and show the words that matter most.

    Example: irlens explain "what do cats eat" @doc.txt --method occlusion-mask --html out.html
    """
    if pairs:
        from irlens.cli._pairs import explain_pairs

        return explain_pairs(query, doc, model, steps, rule, baseline or "mask", max_doc_tokens,
                             memory_budget, device, html, out, as_json, top)
    from irlens.attribution import make_method
    from irlens.attribution.html import save_html
    from irlens.models import load_model

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
    retriever = load_model(model, device=device)
    target = default_target(retriever, target)
    explainer = make_method(method, retriever, n_steps=steps, rule=rule, baseline=baseline,
                            target=target, output=score,
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
                                  score, max_doc_tokens)
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
@checked(FAITHFULNESS)
def faithfulness_command(
    model: str = FAITHFULNESS.cli("model"),
    data: str = FAITHFULNESS.cli("data"),
    split: str = FAITHFULNESS.cli("split"),
    pairs: int = FAITHFULNESS.cli("pairs"),
    methods: str = FAITHFULNESS.cli("methods"),
    n_steps: int = FAITHFULNESS.cli("n_steps"),
    rule: str = FAITHFULNESS.cli("rule"),
    target: str = FAITHFULNESS.cli("target"),
    max_doc_tokens: int = FAITHFULNESS.cli("max_doc_tokens"),
    top_k: float = FAITHFULNESS.cli("top_k"),
    candidates: int = FAITHFULNESS.cli("candidates"),
    scale: float = FAITHFULNESS.cli("scale"),
    min_relevance: int = FAITHFULNESS.cli("min_relevance"),
    seed: int = FAITHFULNESS.cli("seed"),
    memory_budget: str = FAITHFULNESS.cli("memory_budget"),
    device: str = FAITHFULNESS.cli("device"),
    out: Path = FAITHFULNESS.cli("out"),
    as_json: bool = FAITHFULNESS.cli("as_json"),
    ray: str = FAITHFULNESS.cli("ray"),
    workers: int = FAITHFULNESS.cli("workers"),
) -> None:
    """Compare attribution methods' faithfulness on sampled relevant pairs; save the table.

    Resumable: every finished pair is saved in the --out folder; rerun the same command
    after an interruption. The table is saved in <out>/table.
    """
    from irlens.attribution.study import faithfulness_study
    from irlens.data import load_dataset
    from irlens.models import load_model

    names = [m.strip() for m in methods.split(",") if m.strip()]
    check_ray(ray)
    dataset = load_dataset(data, split)
    out = out or Path("results") / f"faithfulness-{dataset.name.replace('/', '_')}"
    retriever = load_model(model, device=device)
    with ray_executor(ray, model, workers, device=device) as executor:  # pairs on Ray
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
