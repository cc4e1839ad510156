"""Plots (PNG, matplotlib's Figure API) and one HTML page for a neuron study and its pruning.

The page shows the run's configuration, per-layer completeness, the top relevance
neurons (FFN units and heads) per layer, the overlaps between datasets, and the pruning
table and curves; images are embedded, so the page is one self-contained file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from irlens._io import atomic_path, read_json
from irlens.errors import IrlensError
from irlens.report import figure_png, png_uri, render

if TYPE_CHECKING:
    from irlens.neurons.pruning import PruningResult

__all__ = ["plot_layer_pruning", "plot_pruning", "render_report"]


def _figure(n_panels: int):
    """A figure with ``n_panels`` axes in a row (the Figure API: no pyplot state, no
    backend switch in the user's session)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * n_panels, 3.3))
    axes = fig.subplots(1, n_panels, squeeze=False)
    return fig, axes


def _metric(result: PruningResult, metric: str | None) -> str:
    metrics = list(result.parameters.get("metrics", []))
    metric = metric or metrics[0]
    if metric not in metrics:
        raise IrlensError(f"metric {metric} was not evaluated; use one of {', '.join(metrics)}")
    return metric


def plot_pruning(result: PruningResult, path: str | Path | None = None,
                 metric: str | None = None) -> Path | bytes:
    """The curve: ``metric`` against p (log axis) for relevance units and random units
    (mean +- std over seeds), the intact model dashed; one panel per dataset."""
    metric = _metric(result, metric)
    summary = result.summary()
    curve = summary[summary["experiment"] == "curve"]
    datasets = list(dict.fromkeys(curve["dataset"])) or ["(none)"]
    fig, axes = _figure(len(datasets))
    for ax, name in zip(axes[0], datasets, strict=True):
        rows = curve[curve["dataset"] == name].sort_values("p")
        if rows.empty:
            continue
        ax.axhline(rows[f"{metric} intact"].iloc[0], ls="--", c="gray", label="intact")
        ax.plot(rows["p"], rows[f"{metric} relevance"], "o-", c="tab:red",
                label="relevance units")
        mean, std = rows[f"{metric} random"], rows[f"{metric} random std"]
        ax.plot(rows["p"], mean, "s-", c="tab:blue", label="random units (mean)")
        std = std.fillna(0)
        ax.fill_between(rows["p"], mean - std, mean + std, color="tab:blue", alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(rows["p"].to_numpy())
        ax.set_xticklabels([f"{v:g}" for v in rows["p"]])
        ax.minorticks_off()
        ax.set_xlabel("units pruned (%)")
        ax.set_ylabel(metric)
        ax.set_title(name)
    axes[0][0].legend(fontsize=8)
    data = figure_png(fig, path)
    return Path(path) if path is not None else data


def plot_layer_pruning(result: PruningResult, path: str | Path | None = None,
                       metric: str | None = None) -> Path | bytes:
    """Per-layer pruning: drop of ``metric`` per layer, relevance vs random (+- std)."""
    metric = _metric(result, metric)
    summary = result.summary()
    layer = summary[summary["experiment"] == "layer"]
    datasets = list(dict.fromkeys(layer["dataset"])) or ["(none)"]
    fig, axes = _figure(len(datasets))
    for ax, name in zip(axes[0], datasets, strict=True):
        rows = layer[layer["dataset"] == name].sort_values("layer")
        if rows.empty:
            continue
        x = rows["layer"].to_numpy()
        ax.bar(x - 0.2, rows[f"{metric} drop relevance"], 0.4, color="tab:red",
               label="relevance units")
        ax.bar(x + 0.2, rows[f"{metric} drop random"], 0.4, color="tab:blue",
               yerr=rows[f"{metric} random std"].fillna(0), label="random units")
        ax.set_xticks(x)
        ax.set_xlabel(f"layer (top {rows['p'].iloc[0]:g}% of its units)")
        ax.set_ylabel(f"{metric} drop")
        ax.set_title(name)
    axes[0][0].legend(fontsize=8)
    data = figure_png(fig, path)
    return Path(path) if path is not None else data


def _top_units(scores: pd.DataFrame, kind: str, score: str, n: int) -> list[dict[str, Any]]:
    """Per layer, the top ``n`` units by ``score`` over all positions, with segment values."""
    rows = scores[scores["kind"] == kind]
    allpos = rows[rows["segment"] == "all"]
    out = []
    for layer, group in allpos.groupby("layer", sort=True):
        top = group.sort_values(score, ascending=False).head(n)
        detail = rows[(rows["layer"] == layer) & rows["unit"].isin(top["unit"])]
        units = []
        for _, unit in top.iterrows():
            seg = detail[detail["unit"] == unit["unit"]].set_index("segment")[score]
            seg = seg.drop("all", errors="ignore")
            best = seg.abs().idxmax() if len(seg) else ""
            units.append({"unit": int(unit["unit"]), "relevant": unit["relevant"],
                          "contrast": unit["contrast"], "top_segment": str(best)})
        out.append({"layer": int(layer), "units": units})
    return out


def _pruning_table(table: pd.DataFrame, metrics: list[str]
                   ) -> tuple[list[str], list[list[str]]]:
    """Compact display rows: per metric intact, relevance, random mean +- std, and the
    excess drop over random units with its 95% CI over seeds."""
    columns = ["experiment", "layer", "p (%)", "units"]
    for m in metrics:
        columns += [f"{m} intact", f"{m} relevance", f"{m} random",
                    f"{m} excess drop [95% CI]", f"{m} vs random"]
    rows = []
    for _, r in table.iterrows():
        row = [r["experiment"], "all" if r["layer"] < 0 else str(r["layer"]), f"{r['p']:g}",
               str(r["n_units"])]
        for m in metrics:
            std = r[f"{m} random std"]
            ci = "" if pd.isna(r[f"{m} excess lo"]) else \
                f" [{r[f'{m} excess lo']:+.4f}, {r[f'{m} excess hi']:+.4f}]"
            row += [f"{r[f'{m} intact']:.4f}", f"{r[f'{m} relevance']:.4f}",
                    f"{r[f'{m} random']:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}"),
                    f"{r[f'{m} excess']:+.4f}{ci}", str(r[f"{m} verdict"])]
        rows.append(row)
    return columns, rows


def render_report(path: str | Path, *, neurons_dir: str | Path | None = None,
                  pruning: list[PruningResult] | None = None, top: int = 10,
                  score: str = "relevant") -> Path:
    """Write the HTML page for a ``irlens neurons`` folder and/or pruning results."""
    if neurons_dir is None and not pruning:
        raise IrlensError("nothing to report: give a neurons folder or pruning results")
    ctx: dict[str, Any] = {"title": "irlens: relevance neurons", "studies": [],
                           "overlaps": None, "pruning": [], "selected": None}
    if neurons_dir is not None:
        folder = Path(neurons_dir)
        summary = read_json(folder / "summary.json") if (folder / "summary.json").is_file() \
            else None
        names = list(summary["studies"]) if summary else [folder.name]
        dirs = [folder / n for n in names] if summary else [folder]
        if summary and (folder / "fusion" / "scores.parquet").is_file():
            names.append("fusion")
            dirs.append(folder / "fusion")
        for name, d in zip(names, dirs, strict=True):
            from irlens.neurons.study import Study

            manifest = Study(d).info
            scores = pd.read_parquet(d / "scores.parquet")
            comp = d / "completeness.parquet"
            ctx["studies"].append({
                "name": name, "manifest": manifest,
                "config": json.dumps(manifest.get("config", {})),
                "nig": json.dumps(manifest.get("nig", {})),
                "ffn": _top_units(scores, "ffn", score, top),
                "attn": _top_units(scores, "attn", score, min(top, 3)),
                "completeness": pd.read_parquet(comp).round(4).to_dict("records")
                if comp.is_file() else []})
        if summary:
            ctx["selected"] = summary
        if (folder / "overlaps.parquet").is_file():
            ctx["overlaps"] = pd.read_parquet(folder / "overlaps.parquet").round(3) \
                .to_dict("records")
    for result in pruning or []:
        table = result.summary()
        metric = result.parameters["metrics"][0]
        columns, rows = _pruning_table(table, result.parameters["metrics"])
        ctx["pruning"].append({
            "parameters": result.parameters,
            "ranking": result.parameters.get("ranking", ""),
            "columns": columns, "rows": rows,
            "curve": png_uri(plot_pruning(result, metric=metric)),
            "layers": png_uri(plot_layer_pruning(result, metric=metric))
            if (table["experiment"] == "layer").any() else None})
    html = render("neurons.html", **ctx)
    with atomic_path(path) as tmp:
        tmp.write_text(html)
    return Path(path)
