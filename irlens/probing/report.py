"""The probe plot (accuracy per layer, one line per model, CI bands, chance) and HTML.

:func:`probe_section` returns the section alone, so a combined report can place it
beside others; :func:`write_probe_page` wraps it in a self-contained page (the plot is
an inline base64 PNG; every text is escaped by jinja2's autoescape).
"""

from __future__ import annotations

from pathlib import Path

from irlens.report import COLOURS, figure_png, png_uri, render, short_name, write_page

__all__ = ["plot_probes", "probe_section", "write_probe_page"]


def plot_probes(result, path: str | Path | None = None) -> bytes:
    """Accuracy against layer, one panel per (task, pooling): a line and 95% CI band per
    model, its control dotted, the chance line dashed."""
    from matplotlib.figure import Figure

    summary = result.summary_frame()
    panels = [(t, p) for t in result.tasks for p in result.poolings]
    fig = Figure(figsize=(4.0 * len(panels), 3.3))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (task, pooling) in zip(axes, panels, strict=True):
        for m, model in enumerate(result.models):
            rows = summary[(summary["model"] == model) & (summary["task"] == task)
                           & (summary["pooling"] == pooling)].sort_values("layer")
            colour = COLOURS[m % len(COLOURS)]
            ax.plot(rows["layer"], rows["accuracy"], "o-", c=colour, label=short_name(model))
            ax.fill_between(rows["layer"], rows["ci_low"], rows["ci_high"], color=colour,
                            alpha=0.2)
            ax.plot(rows["layer"], rows["control"], ":", c=colour,
                    label=f"{short_name(model)} control")
        ax.axhline(result.chance(task), ls="--", c="gray", label="chance")
        ax.set_xticks(range(len(result.layers)))
        ax.set_xticklabels(["emb"] + [str(i) for i in range(len(result.layers) - 1)])
        ax.set_xlabel("layer (emb = embeddings)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task}, {pooling}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig, path)


def probe_section(result, plot: bytes | None = None) -> str:
    """The probe section's HTML (tables per task and pooling, the plot inline)."""
    summary = result.summary_frame()
    blocks = []
    for task in result.tasks:
        for pooling in result.poolings:
            part = summary[(summary["task"] == task) & (summary["pooling"] == pooling)]
            rows = []
            for layer, point in enumerate(result.layers):
                cells = [part[(part["model"] == m) & (part["layer"] == layer)].iloc[0].to_dict()
                         for m in result.models]
                rows.append({"point": point, "cells": cells})
            blocks.append({"task": task, "pooling": pooling, "rows": rows})
    plot = plot if plot is not None else plot_probes(result)
    return render(
        "probe_section.html", data=result.manifest.data_name or "?",
        n_queries=result.n_queries,
        n=result.n_candidates, folds=result.accuracy.shape[-1], plot=png_uri(plot),
        blocks=blocks, models=result.models)


def write_probe_page(result, path: str | Path, plot: bytes | None = None) -> Path:
    """``probe.html``: the probe section as one page."""
    return write_page(path, f"Probes: {' vs '.join(result.models)}",
                      [probe_section(result, plot)])
