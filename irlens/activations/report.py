"""Plot and HTML section of knowledge-neuron activation counts (two models side by side).

:func:`activations_section` returns the section alone for a combined report;
:func:`write_activation_page` writes it as one self-contained page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irlens.report import COLOURS, figure_png, png_uri, render, short_name, write_page

__all__ = ["activations_section", "plot_counts", "write_activation_page"]


def plot_counts(counts, path: str | Path | None = None) -> bytes:
    """Per side (rows) and sublayer: active units per example per layer (bars with 95% CI,
    one colour per model) and units active on >= min_share of examples."""
    from matplotlib.figure import Figure

    frame = counts.to_frame()
    sides = list(dict.fromkeys(frame["side"]))
    subs = list(dict.fromkeys(frame["sublayer"]))
    fig = Figure(figsize=(3.6 * 2 * len(subs), 2.9 * len(sides)))
    axes = fig.subplots(len(sides), 2 * len(subs), squeeze=False)
    width = 0.8 / len(counts.models)
    for r, side in enumerate(sides):
        for s, sub in enumerate(subs):
            for m, model in enumerate(counts.models):
                rows = frame[(frame["model"] == model) & (frame["side"] == side)
                             & (frame["sublayer"] == sub)].sort_values("layer")
                x = rows["layer"].to_numpy() + (m - (len(counts.models) - 1) / 2) * width
                err = np.vstack([rows["active_per_example"] - rows["ci_low"],
                                 rows["ci_high"] - rows["active_per_example"]])
                colour = COLOURS[m % len(COLOURS)]
                axes[r][2 * s].bar(x, rows["active_per_example"], width, yerr=err,
                                   color=colour, label=short_name(model))
                axes[r][2 * s + 1].bar(x, rows["units_on_share"], width, color=colour,
                                       label=model)
            axes[r][2 * s].set_title(f"{side}: {sub}, active units / example", fontsize=9)
            axes[r][2 * s + 1].set_title(f"{side}: {sub}, units active on >= 1%", fontsize=9)
            for ax in axes[r][2 * s:2 * s + 2]:
                ax.set_xlabel("layer")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig, path)


def activations_section(counts, plot: bytes | None = None) -> str:
    """The activation section's HTML: per side and sublayer, a row per layer."""
    frame = counts.to_frame()
    diff = counts.difference().set_index(["side", "sublayer", "layer"])
    blocks = []
    for side in dict.fromkeys(frame["side"]):
        for sub in dict.fromkeys(frame["sublayer"]):
            part = frame[(frame["side"] == side) & (frame["sublayer"] == sub)]
            rows = []
            for layer in sorted(set(part["layer"])):
                at = part[part["layer"] == layer]
                cells = [at[at["model"] == m].iloc[0].to_dict() for m in counts.models]
                rows.append({"layer": layer, "cells": cells,
                             "diff": float(diff.loc[(side, sub, layer), "active_per_example"]),
                             "gap": float(at["completeness_gap"].max())})
            blocks.append({"side": side, "sublayer": sub, "rows": rows})
    cfg = counts.manifest.config
    plot = plot if plot is not None else plot_counts(counts)
    return render(
        "activations_section.html", data=counts.manifest.data_name or "?",
        examples=cfg.get("n_examples"),
        steps=cfg.get("n_steps"), target=cfg.get("target"), threshold=cfg.get("threshold"),
        share=f"{cfg.get('min_share', 0.01):.0%}", models=counts.models, plot=png_uri(plot),
        blocks=blocks)


def write_activation_page(counts, path: str | Path, plot: bytes | None = None) -> Path:
    return write_page(path, f"Activations: {' vs '.join(counts.models)}",
                      [activations_section(counts, plot)])
