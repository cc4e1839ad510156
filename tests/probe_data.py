"""A small BEIR folder where every query has one relevant passage and five BM25 negatives
(each negative shares a query word), for the probe and activation studies."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "engine", "garden", "silver",
         "winter", "castle", "forest", "ocean", "paper", "rocket", "violin"]


def write_probe_beir(folder: Path, n_queries: int = 12, split: str = "test") -> Path:
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, queries, qrels = [], [], []
    for i in range(n_queries):
        w, v = WORDS[i % len(WORDS)], WORDS[(i + 3) % len(WORDS)]
        queries.append({"_id": f"q{i}", "text": f"what about {w} and {v} {i}"})
        docs.append({"_id": f"r{i}", "title": "", "text": f"{w} {v} facts: the {w} is near "
                     f"the {v}"})
        for j in range(5):
            other = WORDS[(i + j + 5) % len(WORDS)]
            docs.append({"_id": f"n{i}_{j}", "title": "", "text": f"{w} story number {j} "
                         f"with {other}"})
        qrels.append((f"q{i}", f"r{i}", 1))
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines)
    return folder


def open_in_chromium(page: Path) -> dict:
    """Open ``page`` in headless Chromium (playwright); return console errors and images.
    A missing browser fails: the test never skips silently."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(page.resolve().as_uri())
            images = tab.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth])")
            text = tab.inner_text("body")
        finally:
            browser.close()
    return {"errors": errors, "images": images, "text": text}
