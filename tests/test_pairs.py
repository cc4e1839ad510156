"""Token-pair attribution (integrated Jacobians) against closed forms and a slow loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irlens.attribution._pairs_naive import naive_pair_matrix
from irlens.attribution.pairs import IntegratedJacobians, TokenPairAttribution, integrated_jacobian
from irlens.errors import IrlensError
from tests.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

QUERY, DOC = "where do salmon spawn", "salmon swim upstream to spawn by photosynthesis in rivers"


@pytest.fixture(scope="module")
def bi_dot(tiny_root):
    return tiny_model(tiny_root, pooling="mean", similarity="dot")


@pytest.fixture(scope="module")
def bi_cos(tiny_root):
    return tiny_model(tiny_root, "roberta", pooling="mean", similarity="cosine")


@pytest.mark.parametrize("which", ["bi_dot", "bi_cos"])
def test_matrix_sums_to_the_four_term_identity(which, request):
    model = request.getfixturevalue(which)
    [r] = IntegratedJacobians(model, n_steps=48).attribute(QUERY, DOC)
    q, d = model.embed([QUERY], "query")[0].detach(), model.embed([DOC], "doc")[0].detach()
    if which == "bi_cos":
        q, d = q / q.norm(), d / d.norm()
    assert r.score == pytest.approx(float(q @ d), abs=1e-5)
    assert abs(r.expected) > 1e-3  # a real, non-vanishing interaction to account for
    four = r.score - r.score_query_baseline - r.score_doc_baseline + r.score_both_baseline
    assert float(r.matrix.sum()) == pytest.approx(four, abs=1e-5)
    assert r.completeness_gap < 1e-5
    # special tokens never move, so their rows and columns are zero
    assert np.all(r.matrix[0] == 0) and np.all(r.matrix[:, -1] == 0)


def test_linear_encoder_equals_closed_form():
    torch.manual_seed(0)
    t, h, dim = 5, 6, 4
    w = torch.randn(dim, h, dtype=torch.float64)
    x, x0 = torch.randn(t, h, dtype=torch.float64), torch.randn(t, h, dtype=torch.float64)
    fn = lambda e: e.mean(1) @ w.T  # noqa: E731 - a linear encoder with mean pooling
    g = integrated_jacobian(fn, x, x0, n_steps=3, memory_budget=None)
    closed = ((x - x0) @ w.T).T / t  # G[d, i] = W (x_i - x0_i) / T
    torch.testing.assert_close(g.double(), closed, atol=1e-6, rtol=0)
    y, y0 = torch.randn(7, h, dtype=torch.float64), torch.randn(7, h, dtype=torch.float64)
    gy = integrated_jacobian(fn, y, y0, n_steps=3, memory_budget=None)
    a = g.T @ gy
    want = ((x - x0) @ w.T) @ ((y - y0) @ w.T).T / (t * 7)
    torch.testing.assert_close(a.double(), want, atol=1e-6, rtol=0)


def test_each_side_accounts_for_its_own_change_in_the_vector():
    torch.manual_seed(1)
    w = torch.randn(3, 4)
    fn = lambda e: torch.tanh(e @ w.T).sum(1)  # noqa: E731 - nonlinear, known values
    x, x0 = torch.randn(6, 4), torch.zeros(6, 4)
    g = integrated_jacobian(fn, x, x0, n_steps=40, memory_budget=None)
    torch.testing.assert_close(g.sum(1), (fn(x[None]) - fn(x0[None]))[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["auto", "jvp", "vjp"])
def test_agrees_with_one_backward_per_dimension_and_step(bi_dot, mode):
    [r] = IntegratedJacobians(bi_dot, n_steps=4, mode=mode).attribute(QUERY, DOC)
    ref = naive_pair_matrix(bi_dot, QUERY, DOC, n_steps=4)
    np.testing.assert_allclose(r.matrix, ref, atol=1e-6)


def test_tiny_memory_budget_chunks_without_changing_numbers(bi_dot):
    [free] = IntegratedJacobians(bi_dot, n_steps=6, memory_budget=None).attribute(QUERY, DOC)
    for mode in ("auto", "jvp", "vjp"):
        [tight] = IntegratedJacobians(bi_dot, n_steps=6, memory_budget=4096,
                                      mode=mode).attribute(QUERY, DOC)
        np.testing.assert_allclose(tight.matrix, free.matrix, atol=1e-7)


def test_words_merge_pieces_and_marginals(bi_dot):
    [r] = IntegratedJacobians(bi_dot, n_steps=8).attribute(QUERY, DOC)
    q_words, d_words, m = r.words()
    assert q_words == QUERY.split() and d_words == DOC.split()
    assert len(r.doc_tokens) > len(d_words) + 2  # some word was split into pieces
    assert m.sum() == pytest.approx(r.matrix.sum(), abs=1e-9)
    np.testing.assert_allclose(r.query_marginals().sum(), r.doc_marginals().sum(), atol=1e-9)
    top = r.top_pairs(3)
    assert abs(top[0][2]) == pytest.approx(np.abs(m).max())


def test_save_load_round_trip(bi_dot, tmp_path):
    [r] = IntegratedJacobians(bi_dot, n_steps=4).attribute(QUERY, DOC)
    back = TokenPairAttribution.load(r.save(tmp_path / "pairs"))
    np.testing.assert_array_equal(back.matrix, r.matrix)
    assert back.doc_tokens == r.doc_tokens and back.expected == r.expected
    assert back.manifest.model_fingerprint == bi_dot.fingerprint
    assert "query_token" in back.to_frame().columns


def test_cross_encoder_is_refused_as_a_bi_encoder_method(tiny_root):
    cross = tiny_model(tiny_root, kind="cross")
    with pytest.raises(IrlensError, match="bi-encoder method") as err:
        IntegratedJacobians(cross)
    assert "\n" not in str(err.value)


def test_bad_arguments_fail_before_work(bi_dot):
    with pytest.raises(IrlensError, match="n_steps"):
        IntegratedJacobians(bi_dot, n_steps=0)
    with pytest.raises(IrlensError, match="memory budget"):
        IntegratedJacobians(bi_dot, memory_budget="lots")
    with pytest.raises(IrlensError, match="unknown mode"):
        IntegratedJacobians(bi_dot, mode="fast")
    with pytest.raises(IrlensError, match="empty"):
        IntegratedJacobians(bi_dot).attribute("", DOC)


@pytest.mark.real
def test_default_model_real_pair_is_complete(default_model, data_dir):
    from irlens.data import load_dataset

    ds = load_dataset(data_dir / "scifact")
    qid = ds.query_ids[0]
    doc_id = next(iter(ds.relevant(qid)))
    [r] = IntegratedJacobians(default_model, n_steps=16, max_doc_tokens=32).attribute(
        ds.queries[qid], ds.corpus[doc_id].contents)
    assert r.relative_gap < 0.01
    assert r.matrix.shape[1] <= 32 + 2


def test_forward_and_backward_modes_agree(bi_cos):
    [fwd] = IntegratedJacobians(bi_cos, n_steps=3, mode="jvp").attribute(QUERY, DOC)
    [bwd] = IntegratedJacobians(bi_cos, n_steps=3, mode="vjp").attribute(QUERY, DOC)
    np.testing.assert_allclose(fwd.matrix, bwd.matrix, atol=1e-6)
    # auto fuses the contraction into the longer side; with a document shorter than the
    # query it integrates the document first
    for q, d in ((QUERY, DOC), (DOC, QUERY)):
        [auto] = IntegratedJacobians(bi_cos, n_steps=3).attribute(q, d)
        [full] = IntegratedJacobians(bi_cos, n_steps=3, mode="vjp").attribute(q, d)
        np.testing.assert_allclose(auto.matrix, full.matrix, atol=1e-6)


def test_explain_pairs_page_in_headless_chromium(tiny_root, tmp_path):
    from playwright.sync_api import sync_playwright
    from typer.testing import CliRunner

    from irlens.cli import app
    from tests.tiny import tiny_model_dir

    folder = tiny_model_dir(tiny_root)
    page_path, json_path = tmp_path / "out" / "pairs.html", tmp_path / "out" / "pairs.json"
    doc = DOC + " <b>bold</b>"
    res = CliRunner().invoke(app, ["explain", QUERY, doc, "--pairs", "--model", str(folder),
                                   "--device", "cpu", "--steps", "6", "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert " x " in res.stdout
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        rows = page.locator("table.m tbody tr").count()
        cells = page.locator("td.cell").count()
        titles = page.locator("td.cell").first.get_attribute("title")
        colours = {page.locator("td.cell").nth(k).evaluate(
            "e => getComputedStyle(e).backgroundColor") for k in range(cells)}
        loaded = page.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
        bold_tags = page.locator("section b").all_inner_texts()
        browser.close()
    assert not errors
    payload = __import__("json").loads(json_path.read_text())
    assert payload["query_words"] == QUERY.split() and "<" in payload["doc_words"]
    assert rows == len(QUERY.split()) and cells == rows * len(payload["doc_words"])
    assert " x " in titles and loaded and len(colours) > 3
    assert "bold" not in bold_tags  # the document's markup is shown as text, not rendered


def test_explain_pairs_refuses_a_cross_encoder_in_one_line(tiny_root):
    from typer.testing import CliRunner

    from irlens.cli import app
    from tests.tiny import tiny_model_dir

    folder = tiny_model_dir(tiny_root, kind="cross")
    res = CliRunner().invoke(app, ["explain", QUERY, DOC, "--pairs", "--model", str(folder)])
    assert res.exit_code == 2
    assert "bi-encoder method" in res.stderr and res.stderr.count("\n") == 1


def test_deletion_table_drops_the_chosen_words(bi_dot):
    from irlens.attribution.pairs_faithfulness import pair_deletion_table

    table = pair_deletion_table(bi_dot, [QUERY], [DOC], n_steps=4, max_doc_tokens=None)
    assert len(table) == 3 * len(QUERY.split())
    assert set(table["choice"]) == {"pairs", "ig", "random"}
    [r] = IntegratedJacobians(bi_dot, n_steps=4).attribute(QUERY, DOC)
    q_words, d_words, m = r.words()
    row = table[(table["choice"] == "pairs") & (table["query_word"] == "salmon")].iloc[0]
    word = d_words[int(np.argmax(m[q_words.index("salmon")]))]
    assert row["word"] == word
    kept = " ".join(w for w in DOC.split() if w != word)  # each word occurs once in DOC
    want = r.score - float(bi_dot.score([QUERY], [kept])[0])
    assert row["drop"] == pytest.approx(want, abs=1e-5)


def test_deletion_table_one_pair_at_a_time_equals_all_at_once(bi_dot):
    """The resumable real run scores one pair per call; its rows (words, random picks,
    drops) must be those of the table over all pairs."""
    from irlens.attribution.pairs_faithfulness import pair_deletion_table

    queries = [QUERY, "why do rivers flood", "salmon upstream"]
    docs = [DOC, "rivers flood after heavy rain upstream in spring", DOC]
    res = IntegratedJacobians(bi_dot, n_steps=4).attribute(queries, docs)
    whole = pair_deletion_table(bi_dot, queries, docs, n_steps=4, pairs=res, seed=3)
    parts = [pair_deletion_table(bi_dot, [q], [d], n_steps=4, pairs=[r], seed=3, first_pair=k)
             for k, (q, d, r) in enumerate(zip(queries, docs, res, strict=True))]
    import pandas as pd

    joined = pd.concat(parts, ignore_index=True)
    assert list(joined["pair"]) == list(whole["pair"]) and set(whole["pair"]) == {0, 1, 2}
    assert list(joined["word"]) == list(whole["word"])
    np.testing.assert_allclose(joined["drop"], whole["drop"], atol=1e-5)
    # the offset numbers the rows
    shifted = pair_deletion_table(bi_dot, [queries[0]], [docs[0]], n_steps=4, pairs=[res[0]],
                                  seed=3, first_pair=7)
    assert set(shifted["pair"]) == {7}


def test_deletion_with_prompt_prefixes_adds_each_prefix_once(tiny_root):
    """A model with query:/passage: prompts: every drop is the prompted score minus the
    score of the same prompted pair without the word (model.score adds each prefix once),
    the pair's own score equals model.score, and no prefix word is ever deleted."""
    from irlens.attribution.pairs_faithfulness import pair_deletion_table

    model = tiny_model(tiny_root, pooling="mean", similarity="dot")
    model.query_prefix, model.doc_prefix = "query: ", "passage: "
    table = pair_deletion_table(model, [QUERY], [DOC], n_steps=4, max_doc_tokens=None,
                                seed=1)
    [r] = IntegratedJacobians(model, n_steps=4).attribute(QUERY, DOC)
    assert r.score == pytest.approx(float(model.score([QUERY], [DOC])[0]), abs=1e-5)
    words = DOC.split()
    assert set(table["word"]) <= set(words)
    for _, row in table.iterrows():
        kept = " ".join(w for w in words if w != row["word"])
        want = r.score - float(model.score([QUERY], [kept])[0])
        assert row["drop"] == pytest.approx(want, abs=1e-5), row["word"]
