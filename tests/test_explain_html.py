"""The explain page, opened in headless Chromium (playwright), and ``irlens explain``."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from tiny import tiny_model, tiny_model_dir
from typer.testing import CliRunner

from irlens.attribution import IntegratedGradients, TokenAttribution
from irlens.attribution.html import render_html, save_html, word_colour
from irlens.cli import app
from irlens.errors import IrlensError

QUERY = "what do carnivores eat"
DOC = "Cats eat <b>mice</b> & birds; dogs sleep."
RED, BLUE = (178, 24, 43), (33, 102, 172)
CHROMIUM = "/usr/bin/chromium"


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def open_page(path: Path, screenshot: bool = False) -> dict:
    """Open ``path`` in headless Chromium (playwright, the system browser): its text, the
    spans' computed backgrounds, console errors, broken images and a screenshot. A missing
    browser fails the test."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"headless Chromium not found at {CHROMIUM}; apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            spans = page.eval_on_selector_all(
                "span.w", "els => els.map(e => [e.textContent, e.dataset.score, "
                "getComputedStyle(e).backgroundColor])")
            broken = page.eval_on_selector_all(
                "img", "els => els.filter(i => !(i.complete && i.naturalWidth > 0)).length")
            out = {"text": page.inner_text("body"), "html": page.content(), "spans": spans,
                   "errors": errors, "broken_images": broken}
            if screenshot:
                out["png"] = page.screenshot(full_page=True)
            return out
        finally:
            browser.close()


@pytest.fixture(scope="module")
def result(tiny_root) -> TokenAttribution:
    """A real result whose scores are set by hand: 'mice' +1, 'sleep' -1, the rest small."""
    bi = tiny_model(tiny_root, "bert", "bi", pooling="mean", similarity="dot")
    [r] = IntegratedGradients(bi, n_steps=4).attribute(QUERY, DOC)
    scores = [0.0 if w < 0 else 0.01 for w in r.word_ids]
    scores[r.tokens.index("mice")] = 1.0
    scores[r.tokens.index("sleep")] = -1.0
    return dataclasses.replace(r, scores=scores)


def test_words_are_merged_and_text_is_escaped(result):
    assert "##vor" in result.tokens or "##vores" in result.tokens
    page = render_html([result])
    assert "carnivores</span>" in page
    assert "&lt;</span>" in page and "<b>" not in page
    assert word_colour(1.0, 1.0)[0] == "rgb(178, 24, 43)"
    assert word_colour(-0.5, 1.0)[0] == "rgb(144, 178, 214)"
    assert word_colour(0.0, 1.0)[0] == "rgb(255, 255, 255)"
    with pytest.raises(IrlensError, match="no attribution results to render"):
        render_html([])
    with pytest.raises(IrlensError, match="1 percentiles for 2 results"):
        render_html([result, result], percentiles=[None])


def test_page_in_chromium_shows_words_numbers_and_colours(result, tmp_path):
    pct = {"baseline": 3.5, "score": 97.0, "n_docs": 200, "corpus": "scifact"}
    page = open_page(save_html([result], tmp_path / "explain.html", percentiles=[pct]),
                     screenshot=True)
    assert page["errors"] == [] and page["broken_images"] == 0
    text = re.sub(r"\s+", " ", page["text"])
    assert "Query what do carnivores eat" in text
    assert "Document Cats eat <b>mice</b> & birds; dogs sleep." in text
    assert f"score (dot) {result.score:.4f}" in text
    assert f"baseline score {result.baseline_score:.4f}" in text
    assert re.search(r"completeness gap \d\.\d\de[-+]\d\d \(\d+\.\d\d% of", text)
    assert "baseline percentile 3.5th percentile of the query's scores against 200 " \
        "scifact documents (the pair: 97.0th)" in text
    colours = {word: bg for word, score, bg in page["spans"]}
    assert colours["mice"] == "rgb(178, 24, 43)" and colours["sleep"] == "rgb(33, 102, 172)"
    pixels = list(Image.open(io.BytesIO(page["png"])).convert("RGB").getdata())

    def near(colour):
        return sum(all(abs(p[i] - colour[i]) <= 6 for i in range(3)) for p in pixels)

    assert near(RED) > 200 and near(BLUE) > 200  # the two words' backgrounds are painted


def test_page_flags_a_gap_above_one_percent_and_a_baseline_above_the_pair(result, tmp_path):
    fine = dataclasses.replace(result, completeness_gap=0.005, gap_scale=1.0,
                               baseline_score=result.score - 1.0)
    bad = dataclasses.replace(result, completeness_gap=0.02, gap_scale=1.0,
                              baseline_score=result.score + 1.0)
    page = open_page(save_html([fine, bad], tmp_path / "two.html"))
    assert page["errors"] == []
    assert page["text"].count("completeness gap above 1%") == 1
    assert page["text"].count("the map explains why the pair scores lower") == 1
    assert "gap-warning" in page["html"].split('id="pair-1"')[1]
    assert "gap-warning" not in page["html"].split('id="pair-1"')[0]


def test_explain_cli_writes_html_and_json(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    html, out = tmp_path / "page.html", tmp_path / "out"
    res = CliRunner().invoke(app, ["explain", QUERY, DOC, "--model", str(folder), "--method",
                                   "sig", "--steps", "4", "--device", "cpu", "--html",
                                   str(html), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert re.match(r"score \(logit\): -?\d\.\d{4}\s+baseline score: -?\d\.\d{4}", res.stdout)
    r = TokenAttribution.from_json((out / "attribution.json").read_text())
    assert r.method == "sig" and r.parameters["n_steps"] == 4 and r.output == "logit"
    n_tokens = sum(w >= 0 for w in r.word_ids)  # SIG runs explained tokens x steps rows
    assert f"sig: about {n_tokens * 4} forward+backward passes (rows)" in res.stderr
    assert f"{n_tokens * 4}/{n_tokens * 4}" in res.stderr  # the bar counted every row
    page = open_page(html)
    assert page["errors"] == [] and "sig" in page["text"] and f"{r.score:.4f}" in page["text"]
    assert (out / "explain.html").is_file() and r.doc == DOC
    printed = CliRunner().invoke(app, ["explain", QUERY, DOC, "--model", str(folder),
                                       "--method", "gxi", "--json", "--device", "cpu"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["method"] == "gxi"  # stdout is the JSON alone


def test_explain_reads_the_document_from_a_file_or_stdin(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    args = ["--model", str(folder), "--method", "gxi", "--json", "--device", "cpu"]
    from_file = CliRunner().invoke(app, ["explain", QUERY, f"@{doc}", *args])
    from_stdin = CliRunner().invoke(app, ["explain", QUERY, "-", *args], input=DOC)
    for res in (from_file, from_stdin):
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["doc"] == DOC
    missing = CliRunner().invoke(app, ["explain", QUERY, f"@{tmp_path / 'no.txt'}", *args])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == f"error: no such file for the document: {tmp_path}/no.txt"


def test_explain_says_n_a_for_methods_without_a_path(tiny_root):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    for method in ("occlusion", "gxi"):
        res = CliRunner().invoke(app, ["explain", QUERY, DOC, "--model", str(folder),
                                       "--method", method, "--device", "cpu"])
        assert res.exit_code == 0, res.output
        assert "completeness gap: n/a (no path)" in res.stdout and "nan" not in res.stdout


@pytest.mark.parametrize("args, message", [
    (["q", "d", "--method", "lime"], "error: unknown attribution method 'lime'; use ig, sig, "
                                     "occlusion, gxi, random (ig, sig and occlusion take a "
                                     "baseline suffix, e.g. ig-pad, sig-mask)"),
    (["q", "d", "--baseline", "unk"], "error: unknown baseline 'unk'; use pad, mask, zero, "
                                      "text:<words>"),
    (["q", "d", "--steps", "0"], "error: --steps must be >= 1, got 0; pass a value of 1 or more"),
    (["q", "d", "--rule", "riemann_trapezoid", "--steps", "1"],
     "error: n_steps must be an integer >= 2 for riemann_trapezoid, got 1"),
    (["q", "d", "--target", "title"], "error: --target must be one of query, doc, both, got "
                                      "'title'"),
    (["q", "d", "--method", "sig(n_steps=0)"], "error: n_steps must be an integer >= 1 for "
                                               "gausslegendre, got 0"),
    (["q", "d", "--method", "ig(window=3)"], "error: 'ig' takes no window; it takes baseline, "
                                             "gap_tolerance, max_doc_tokens, memory_budget, "
                                             "n_steps, output, rule, target"),
    (["q", "d", "--method", "gxi-pad"], "error: 'gxi' takes no baseline; drop '-pad'"),
    (["q", "d", "--memory-budget", "lots"], "error: memory budget 'lots' not understood; "
                                            "write e.g. 1GB or 512MB"),
])
def test_explain_options_are_refused_before_the_model_loads(args, message, monkeypatch):
    """Loading a model fails the test: the option error must come first (it used to take
    ~50 s of model loading to be refused)."""
    from test_cli_bad_options import guard

    guard(monkeypatch)
    res = CliRunner().invoke(app, ["explain", *args, "--model", "default"])
    assert res.exit_code == 2
    assert res.stderr.strip() == message


def test_explain_cli_empty_text_is_one_line(tiny_root):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    res = CliRunner().invoke(app, ["explain", "", "doc", "--model", str(folder), "--device",
                                   "cpu"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: empty query (pair 0); attribution needs text on both " \
        "sides"


def test_explain_cli_says_when_the_document_was_cut(tiny_root):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    res = CliRunner().invoke(app, ["explain", "cats", "cats eat mice " * 60, "--model",
                                   str(folder), "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: 1 of 1 query-document pairs were longer than the "
                                  "model's 128 tokens")
    assert "typer" not in res.stderr and ".py:" not in res.stderr


@pytest.mark.real
def test_default_bi_encoder_baseline_scores_below_the_real_pair(default_model, data_dir,
                                                                tmp_path):
    """The old default (both sides to [MASK]) scored 0.92 on such a pair, above the pair
    (0.29): the map explained why the pair scores lower than two blank texts."""
    from irlens.attribution import make_method, reference
    from irlens.cli.explain_cmd import default_target
    from irlens.data import load_dataset, sample_pairs

    dataset = load_dataset(data_dir / "scifact")
    [(qid, doc_id)] = sample_pairs(dataset, 1, seed=0)
    query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
    method = make_method("ig", default_model, n_steps=8, target=default_target(default_model,
                                                                                None),
                         max_doc_tokens=128)
    [r] = method.attribute(query, doc)
    assert r.parameters["target"] == "doc"
    assert r.baseline_score < r.score
    scores = reference.candidate_scores(default_model, query,
                                        reference.corpus_sample(dataset, 100), None, 128)
    pct = reference.score_percentile(r.baseline_score, scores)
    assert pct < 50 < reference.score_percentile(r.score, scores)
    res = CliRunner().invoke(app, ["explain", query, doc, "--steps", "8", "--max-doc-tokens",
                                   "128", "--corpus", str(data_dir / "scifact"),
                                   "--corpus-sample", "100", "--html",
                                   str(tmp_path / "p.html"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "baseline at the" in res.stdout and "th percentile" in res.stdout
    assert "baseline percentile" in open_page(tmp_path / "p.html")["text"]
