"""The explain page, opened in headless Chromium, and the ``irlens explain`` command."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
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


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


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


def test_page_in_chromium_shows_words_numbers_and_colours(result, tmp_path):
    path = save_html([result], tmp_path / "explain.html")
    dom = chromium("--dump-dom", path.as_uri()).stdout
    text = re.sub(r"<[^>]+>", "", dom)
    text = re.sub(r"\s+", " ", text)
    assert "Query what do carnivores eat" in text
    assert "Document Cats eat <b>mice</b> & birds; dogs sleep." in text.replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&amp;", "&")
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))  # table cells apart
    assert f"score (dot) {result.score:.4f}" in cells
    assert f"baseline score {result.baseline_score:.4f}" in cells
    assert re.search(r"completeness gap \d\.\d\de[-+]\d\d \(\d+\.\d\d% of", cells)
    mice = re.search(r'<span class="w" data-score="1"[^>]*style="([^"]+)"[^>]*>mice</span>', dom)
    sleep = re.search(r'data-score="-1"[^>]*style="([^"]+)"[^>]*>sleep</span>', dom)
    assert mice and "rgb(178, 24, 43)" in mice.group(1)
    assert sleep and "rgb(33, 102, 172)" in sleep.group(1)

    shot = tmp_path / "shot.png"
    chromium("--window-size=1000,700", f"--screenshot={shot}", path.as_uri())
    pixels = list(Image.open(shot).convert("RGB").getdata())

    def near(colour):
        return sum(all(abs(p[i] - colour[i]) <= 6 for i in range(3)) for p in pixels)

    assert near(RED) > 200 and near(BLUE) > 200  # the two words' backgrounds are painted


def test_explain_cli_writes_html_and_json(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    html, out = tmp_path / "page.html", tmp_path / "result.json"
    res = CliRunner().invoke(app, ["explain", QUERY, DOC, "--model", str(folder), "--method",
                                   "sig", "--steps", "4", "--device", "cpu", "--html",
                                   str(html), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert re.match(r"score \(logit\): -?\d\.\d{4}\s+baseline score: -?\d\.\d{4}", res.stdout)
    r = TokenAttribution.from_json(out.read_text())
    assert r.method == "sig" and r.parameters["n_steps"] == 4 and r.output == "logit"
    dom = chromium("--dump-dom", html.as_uri()).stdout
    assert ">sig<" in dom and f"{r.score:.4f}" in dom and json.loads(out.read_text())["doc"] == DOC


@pytest.mark.parametrize("args, message", [
    (["", "doc"], "error: empty query (pair 0); attribution needs text on both sides"),
    (["q", "d", "--method", "shap"], "error: unknown attribution method 'shap'; use ig, sig, "
                                     "occlusion, gxi, random (ig, sig and occlusion take a "
                                     "baseline suffix, e.g. ig-pad, sig-mask)"),
    (["q", "d", "--baseline", "unk"], "error: unknown baseline 'unk'; use pad, mask, zero, "
                                      "text:<words>"),
    (["q", "d", "--rule", "riemann_trapezoid", "--steps", "1"],
     "error: n_steps must be an integer >= 2 for riemann_trapezoid, got 1"),
])
def test_explain_cli_errors_are_one_line(tiny_root, args, message):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    res = CliRunner().invoke(app, ["explain", *args, "--model", str(folder), "--device", "cpu"])
    assert res.exit_code == 2
    assert res.stderr.strip() == message


def test_explain_cli_says_when_the_document_was_cut(tiny_root, tmp_path):
    folder = tiny_model_dir(tiny_root, "bert", "cross")
    res = CliRunner().invoke(app, ["explain", "cats", "cats eat mice " * 60, "--model",
                                   str(folder), "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "warning: 1 of 1 query-document pairs were longer than the model's 128 tokens" \
        in res.stderr
    assert Path(tmp_path).exists()
