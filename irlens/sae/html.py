"""An offline HTML latent browser: one card per latent.

Each card shows the latent's explanations and scores, its firing frequency, an activation
histogram (inline base64 PNG, drawn with Matplotlib's Figure API) and its top documents
and queries with the dictionary terms highlighted. A search box filters cards and a menu
sorts them by score, frequency or interpretability. All text is escaped by Jinja2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from irlens._io import atomic_path
from irlens.errors import IrlensError
from irlens.report import figure_png, png_base64, render
from irlens.sae.dictionary import LatentDictionary

__all__ = ["highlight", "render_browser", "save_browser"]


def highlight(text: str, terms: list[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_term) parts, terms matched as whole words, any case."""
    if not terms:
        return [(text, False)]
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(terms, key=len,
                                                                         reverse=True))
                         + r")\b", re.IGNORECASE)
    parts, last = [], 0
    for m in pattern.finditer(text):
        if m.start() > last:
            parts.append((text[last:m.start()], False))
        parts.append((m.group(0), True))
        last = m.end()
    if last < len(text):
        parts.append((text[last:], False))
    return parts


def _histogram_png(counts, top: float) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2, 1.4), dpi=80)
    ax = fig.add_subplot()
    n = len(counts)
    width = (top or 1.0) / n
    ax.bar([width * (i + 0.5) for i in range(n)], counts, width=width * 0.9, color="#4c72b0")
    ax.set_yscale("symlog")
    ax.set_xlabel("activation", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout(pad=0.3)
    return png_base64(figure_png(fig, dpi=None, tight=False))


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def render_browser(dictionary: LatentDictionary, *,
                   explanations: Mapping[str, Mapping[int, str]] | None = None,
                   scores: Mapping[str, Mapping[int, float]] | None = None,
                   title: str = "irlens SAE latents") -> str:
    """The page as a string. ``explanations`` maps a source name (``keywords``,
    ``llm``) to per-latent text; ``scores`` maps a score name to per-latent values."""
    if not dictionary.latents:
        raise IrlensError("the dictionary lists no latents; nothing to show")
    explanations = dict(explanations or {})
    explanations.setdefault("keywords", {j: dictionary.keyword_explanation(j)
                                         for j in dictionary.latents})
    scores = dict(scores or {})
    cards = []
    for pos, j in enumerate(dictionary.latents):
        e = dictionary.entries[str(j)]
        terms = [t for t, _ in e["terms"]]
        card_scores = {"F1": e["f1"], "precision": e["precision"], "recall": e["recall"],
                       **{name: values.get(j) for name, values in scores.items()}}
        cards.append({
            "latent": j, "frequency": float(dictionary.frequency[j]),
            "explanations": [(name, texts.get(j, "")) for name, texts in explanations.items()],
            "scores": [(name, _num(v)) for name, v in card_scores.items()],
            "sort": {name: (_num(v) if _num(v) is not None else -1.0)
                     for name, v in card_scores.items()},
            "terms": terms[:10],
            "docs": [{"id": d, "act": a, "parts": highlight(t, terms)}
                     for d, a, t in e["top_docs"]],
            "queries": [{"id": q, "act": a, "parts": highlight(t, terms)}
                        for q, a, t in e["top_queries"]],
            "hist": _histogram_png(dictionary.histograms[pos], float(dictionary.hist_max[pos])),
        })
    sort_keys = ["latent", "frequency", *cards[0]["sort"].keys()]
    return render(
        "sae.html", title=title, cards=cards, sort_keys=sort_keys,
        n_dead=len(dictionary.dead),
        width=len(dictionary.frequency), model=dictionary.manifest.model_id or "")


def save_browser(dictionary: LatentDictionary, path: str | Path, **kwargs) -> Path:
    """Write :func:`render_browser` to ``path`` atomically."""
    text = render_browser(dictionary, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
