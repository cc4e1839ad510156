"""The editing page: per-editor table, every edit's rank before -> after, locality plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from irlens._io import atomic_path
from irlens.editing.study import summarise
from irlens.report import figure_png, png_uri, render

__all__ = ["render_edit_report"]


def _histogram(frame: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.8))
    ax = fig.subplots()
    for (editor, kind), part in frame.groupby(["editor", "kind"]):
        ax.hist(part["locality_delta_ndcg10"], bins=20, alpha=0.6, label=f"{editor} {kind}")
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel("change in nDCG@10 on the other queries, per edit")
    ax.set_ylabel("edits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_uri(figure_png(fig, dpi=90, tight=False))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_edit_report(frame: pd.DataFrame, path: str | Path, config: dict,
                       title: str = "irlens edit") -> Path:
    """Write a self-contained HTML page for the rows of :func:`run_edits`."""
    summary = summarise(frame)
    first = summary.iloc[0]
    finding = (f"{first['editor']} {first['kind']}: {first['efficacy']:.0%} of "
               f"{int(first['edits'])} edits reached their goal; nDCG@10 on the other "
               f"queries moved by {first['delta_ndcg10_mean']:+.4f} on average.")
    edits = [{"editor": r.editor, "kind": r.kind, "query_id": r.query_id,
              "doc_id": r.doc_id, "rank_before": r.rank_before, "rank_after": r.rank_after,
              "efficacy": bool(r.efficacy), "generalisation": _fmt(r.generalisation),
              "delta": _fmt(r.locality_delta_ndcg10), "seconds": f"{r.seconds:.1f}"}
             for r in frame.itertuples()]
    html = render(
        "edit.html", title=title, finding=finding, summary_columns=list(summary.columns),
        summary_rows=[[_fmt(v) for v in row] for row in summary.itertuples(index=False)],
        histogram=_histogram(frame), edits=edits, config=config)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(html)
    return path
