"""What every irlens report shares: colours, the page templates, figures as PNG, and the
mean with its confidence interval.

Pages are rendered from ``irlens/templates`` (each extends ``base.html``) with jinja2's
autoescape, so every text is escaped; figures are matplotlib ``Figure`` objects turned
into PNG bytes and inlined as base64.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irlens._io import atomic_path

__all__ = ["COLOURS", "figure_png", "mean_ci", "page_html", "png_base64", "png_uri",
           "render", "short_name", "templates", "write_page"]

COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")


@functools.cache
def templates():
    """The jinja2 environment of irlens's page templates (autoescaped)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("irlens", "templates"),
                       autoescape=select_autoescape(["html"]))


def render(template: str, **context: Any) -> str:
    """The template ``template`` (a file in ``irlens/templates``) rendered with ``context``."""
    return templates().get_template(template).render(**context)


def figure_png(fig, path: str | Path | None = None, *, dpi: float | None = 110,
               tight: bool = True) -> bytes:
    """PNG bytes of a matplotlib ``Figure`` (``dpi=None``: the figure's own; ``tight``:
    cropped to its content), written atomically to ``path`` if given."""
    buf = io.BytesIO()
    options: dict[str, Any] = {"bbox_inches": "tight"} if tight else {}
    if dpi is not None:
        options["dpi"] = dpi
    fig.savefig(buf, format="png", **options)
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data


def png_base64(data: bytes) -> str:
    """PNG bytes as base64 text (for an ``<img src="data:image/png;base64,...">``)."""
    return base64.b64encode(data).decode("ascii")


def png_uri(data: bytes) -> str:
    """PNG bytes as a ``data:`` URI."""
    return "data:image/png;base64," + png_base64(data)


def short_name(model: str) -> str:
    """A legend label: the folder name of a local model path, else the spec itself."""
    return Path(model).name if "/" in model and Path(model).exists() else model


def page_html(title: str, sections: Sequence[str]) -> str:
    """A self-contained page around sections' HTML (already rendered and escaped)."""
    from markupsafe import Markup

    return render("comparison_page.html", title=title, sections=[Markup(s) for s in sections])


def write_page(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    """Write :func:`page_html` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(page_html(title, sections))
    return Path(path)


def mean_ci(values: Any, level: float = 0.95, *, test_fraction: float | None = None,
            ) -> dict[str, float]:
    """Mean and Student-t confidence interval of ``values`` (NaNs dropped):
    ``{"mean", "lo", "hi", "n"}``; fewer than two values, or equal ones, give lo = hi =
    mean. Values from k cross-validation folds share training data, so pass
    ``test_fraction`` = n_test / n_train: Nadeau & Bengio's (2003) corrected resampled t,
    variance of the mean s^2 (1/k + n_test/n_train) with k - 1 degrees of freedom."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    mean = float(x.mean())
    if len(x) < 2 or x.std() == 0:
        return {"mean": mean, "lo": mean, "hi": mean, "n": int(len(x))}
    se = float(np.sqrt((1.0 / len(x) + (test_fraction or 0.0)) * x.var(ddof=1)))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * se)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(len(x))}
