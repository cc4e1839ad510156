"""The study report: one self-contained HTML page (plots inline as base64 PNG, no
network) and the same numbers in ``report.json``.

Per section: the finding in one sentence, its table with 95% confidence intervals, its
plots, the control, and the exact config; a provenance footer gives the irlens and
library versions, model and data fingerprints and the wall time of each section's jobs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from irlens.artifacts import jsonable, library_versions
from irlens.report import png_base64, render
from irlens.study.jobs import Context
from irlens.study.sections import SECTIONS, SectionReport

__all__ = ["write_report"]


def _cell(column: str, value: Any, label: bool) -> dict[str, Any]:
    if isinstance(value, dict) and "mean" in value:
        ci = "" if math.isnan(value["lo"]) else f"[{value['lo']:.4g}, {value['hi']:.4g}]"
        return {"text": _fmt(value["mean"]), "ci": ci, "value": repr(value["mean"]),
                "column": column, "label": False}
    if isinstance(value, float):
        return {"text": _fmt(value), "ci": "", "value": repr(value), "column": column,
                "label": False}
    return {"text": str(value), "ci": "", "value": None, "column": column, "label": label}


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _section_payload(name: str, report: SectionReport, config: dict[str, Any]
                     ) -> dict[str, Any]:
    labels = 0
    for column in report.columns:
        if all(isinstance(r.get(column), str) for r in report.rows):
            labels += 1
        else:
            break
    return {"id": f"section-{name}", "name": name, "title": report.title,
            "finding": report.finding, "control": report.control,
            "columns": report.columns, "n_labels": labels,
            "rows": [[_cell(c, r.get(c), i < labels) for i, c in enumerate(report.columns)]
                     for r in report.rows],
            "plots": [(caption, png_base64(png)) for caption, png in report.plots],
            "config": yaml.safe_dump({name: config}, sort_keys=False)}


def write_report(ctx: Context, out: Path, run_seconds: float) -> Path:
    """Write ``out/report.html`` and ``out/report.json`` (atomically)."""
    from irlens._io import atomic_path

    spec = ctx.spec
    sections, payload, times = [], {}, {}
    for name, section in SECTIONS.items():
        if name not in spec.sections:
            continue
        params = spec.sections[name]
        results = {ds: [ctx.results[j.key] for j in ctx.planned.get((name, ds), [])]
                   for ds in params["datasets"]}
        report = section.report(ctx, params, results)
        sections.append(_section_payload(name, report, params))
        payload[name] = {"title": report.title, "finding": report.finding,
                         "columns": report.columns, "rows": report.rows,
                         "control": report.control, "config": params}
        found = [r for rs in results.values() for r in rs]
        times[name] = {"jobs": len(found), "seconds": sum(r.seconds for r in found)}
    data = [{"name": ds.name, "path": ds.path, "split": ds.split,
             "docs": len(ctx.dataset(ds.name).corpus),
             "queries": len(ctx.dataset(ds.name).queries),
             "fingerprint": ctx.dataset(ds.name).fingerprint}
            for ds in spec.datasets.values()]
    versions = library_versions()
    context = {"title": f"irlens study: {spec.name}", "model": spec.model,
               "datasets": list(spec.datasets), "sections": sections, "versions": versions,
               "model_fingerprint": ctx.fingerprint, "data": data, "times": times,
               "run_seconds": run_seconds, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    html = render("study.html", **context)
    out = Path(out)
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(html)
    summary = {"study": spec.to_dict(), "sections": payload, "versions": versions,
               "model_fingerprint": ctx.fingerprint, "data": data, "times": times}
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    return out / "report.html"
