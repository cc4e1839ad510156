"""An HTML page of token attributions: query and document words as a diverging heatmap.

Word pieces are merged into words (scores summed). Colours run from blue (lowers the
score) through white to red (raises it), scaled by the largest |word score| on the
page. Each result shows its score, baseline score and completeness gap (flagged above
1% of |F(x) - F(x')|), and, when given, where the baseline's score falls among the
query's scores against a corpus sample (:mod:`irlens.attribution.reference`): a baseline
that scores above the pair makes the map explain why the pair scores *lower*.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from irlens._io import atomic_path
from irlens.attribution.result import TokenAttribution
from irlens.errors import IrlensError
from irlens.models import Segment
from irlens.report import render

__all__ = ["render_html", "save_html", "word_colour"]

_RED = (178, 24, 43)
_BLUE = (33, 102, 172)
_WHITE = (255, 255, 255)


def word_colour(score: float, scale: float) -> tuple[str, str]:
    """Background and text colour (CSS ``rgb(...)``) of a word score on a diverging scale."""
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, score / scale))
    end = _RED if t > 0 else _BLUE
    rgb = [round(w + abs(t) * (e - w)) for w, e in zip(_WHITE, end, strict=True)]
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})", "#fff" if abs(t) > 0.6 else "#222"


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


GAP_FLAG = 0.01


def _percentile_texts(r: TokenAttribution, percentile: dict | None) -> tuple[str, str]:
    """The percentile line and, when the baseline outscores the pair, a warning."""
    warning = ""
    if not math.isnan(r.baseline_score) and r.baseline_score > r.score:
        warning = (f"the baseline scores {r.baseline_score:.4f}, above the pair "
                   f"({r.score:.4f}): the map explains why the pair scores lower than the "
                   "baseline; use another baseline or target")
    if not percentile:
        return "", warning
    text = (f"{percentile['baseline']:.1f}th percentile of the query's scores against "
            f"{percentile['n_docs']} {percentile.get('corpus', 'corpus')} documents (the "
            f"pair: {percentile['score']:.1f}th)")
    return text, warning


def render_html(results: list[TokenAttribution], title: str = "irlens token attribution",
                percentiles: list[dict | None] | None = None) -> str:
    """The page as a string (one section per result); ``percentiles`` (one per result, or
    None): ``{"baseline": pct, "score": pct, "n_docs": n, "corpus": name}``."""
    if not results:
        raise IrlensError("no attribution results to render")
    percentiles = list(percentiles or [None] * len(results))
    if len(percentiles) != len(results):
        raise IrlensError(f"{len(percentiles)} percentiles for {len(results)} results; give "
                          "one per result (or None)")
    scale = max((abs(w.score) for r in results for w in r.words()), default=0.0)
    pairs = []
    for r, percentile in zip(results, percentiles, strict=True):
        words = r.words()
        sides = []
        for seg, name, label in ((Segment.QUERY, "query", "Query"),
                                 (Segment.DOC, "doc", "Document")):
            shown = []
            for w in (w for w in words if w.segment == seg):
                bg, fg = word_colour(w.score, scale)
                shown.append({"text": w.text, "score": w.score, "bg": bg, "fg": fg,
                              "space": w.space_before})
            sides.append({"name": name, "label": label, "words": shown})
        gap = "n/a (no path)" if math.isnan(r.completeness_gap) else (
            f"{r.completeness_gap:.2e} ({r.relative_gap:.2%} of |F(x) - F(x')|)")
        gap_warning = "" if math.isnan(r.completeness_gap) or r.relative_gap <= GAP_FLAG else (
            f"completeness gap above {GAP_FLAG:.0%}: the scores do not add up to the score "
            "change; raise the number of steps")
        pct_text, baseline_warning = _percentile_texts(r, percentile)
        pairs.append({"model_id": r.model_id, "method": r.method, "output": r.output,
                      "score": r.score, "baseline_text": _fmt(r.baseline_score),
                      "gap_text": gap, "truncated": r.truncated, "sides": sides,
                      "params": json.dumps(r.parameters, sort_keys=True),
                      "gap_warning": gap_warning, "percentile": pct_text,
                      "baseline_warning": baseline_warning})
    legend = [word_colour(v * scale, scale)[0] for v in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    return render("explain.html", title=title, pairs=pairs, scale=scale, legend=legend)


def save_html(results: list[TokenAttribution], path: str | Path,
              title: str = "irlens token attribution",
              percentiles: list[dict | None] | None = None) -> Path:
    """Write :func:`render_html` to ``path`` atomically."""
    text = render_html(results, title, percentiles)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
