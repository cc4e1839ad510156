"""Views of a token-pair matrix: an offline HTML page and a PNG heatmap.

The page shows query words (rows) x document words (columns), word pieces merged,
on a diverging scale (blue lowers the score, red raises it) with the value on hover,
plus the top pairs and the completeness of the four-term identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irlens._io import atomic_path
from irlens.attribution.html import word_colour
from irlens.attribution.pairs import TokenPairAttribution
from irlens.errors import IrlensError
from irlens.report import figure_png, png_base64, render

__all__ = ["pair_figure", "render_pairs_html", "save_pairs_html", "save_pair_png"]


def pair_figure(result: TokenPairAttribution, max_doc_words: int = 40):
    """A matplotlib Figure of the word matrix (the ``max_doc_words`` strongest columns)."""
    from matplotlib.figure import Figure

    q, d, m = result.words()
    keep = np.sort(np.argsort(-np.abs(m).sum(0))[:max_doc_words])
    m, d = m[:, keep], [d[k] for k in keep]
    scale = float(np.abs(m).max()) or 1.0
    fig = Figure(figsize=(max(4.0, 0.28 * len(d) + 2), max(2.5, 0.3 * len(q) + 1.5)))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
    ax.set_xticks(range(len(d)), d, rotation=90, fontsize=7)
    ax.set_yticks(range(len(q)), q, fontsize=8)
    ax.set_title(f"score {result.score:.3f}, four-term sum {result.expected:.3f}, "
                 f"gap {result.relative_gap:.2%}", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def save_pair_png(result: TokenPairAttribution, path: str | Path) -> Path:
    """Write :func:`pair_figure` as a PNG atomically."""
    figure_png(pair_figure(result), path, tight=False)
    return Path(path)


def render_pairs_html(results: list[TokenPairAttribution], top: int = 10,
                      title: str = "irlens token-pair attribution") -> str:
    """The page as a string: one matrix per result, with a PNG copy inline."""
    if not results:
        raise IrlensError("no token-pair results to render")
    pairs = []
    for r in results:
        q, d, m = r.words()
        scale = float(np.abs(m).max())
        rows = [{"word": qw, "cells": [{"v": float(v), "bg": word_colour(float(v), scale)[0],
                                        "title": f"{qw} x {dw}: {v:+.4g}"}
                                       for dw, v in zip(d, m[i], strict=True)]}
                for i, qw in enumerate(q)]
        png = figure_png(pair_figure(r), dpi=90, tight=False)
        pairs.append({"query": r.query, "doc": r.doc, "docs": d, "rows": rows,
                      "top": r.top_pairs(top), "score": r.score, "expected": r.expected,
                      "gap": r.relative_gap, "model_id": r.model_id, "scale": scale,
                      "png": png_base64(png),
                      "params": r.parameters})
    return render("pairs.html", title=title, pairs=pairs)


def save_pairs_html(results: list[TokenPairAttribution], path: str | Path, top: int = 10
                    ) -> Path:
    """Write :func:`render_pairs_html` to ``path`` atomically."""
    text = render_pairs_html(results, top)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
