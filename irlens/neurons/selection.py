"""Relevance neurons from per-unit scores: top p%, random controls, intersection, fusion,
and overlaps between datasets (Jaccard of selections, Spearman of scores, per layer).

A *scores table* has one row per (unit, segment): columns ``hook`` (``layer.3.ffn.post``
or ``layer.3.attn.probs``), ``kind`` (``ffn``/``attn``), ``layer``, ``unit`` (FFN unit or
head), ``segment`` (``all``, a segment name, or for heads a block such as ``query->doc``),
and the mean attributions ``relevant``, ``nonrelevant`` and ``contrast`` (their difference).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from irlens.errors import IrlensError

__all__ = ["SCORES", "Selection", "check_options", "fuse", "intersect", "overlaps", "random_like",
           "select"]

SCORES = ("relevant", "contrast", "nonrelevant")
SCOPES = ("global", "layer")


@dataclass
class Selection:
    """Units chosen for an intervention: hook name -> unit indices (FFN units or heads)."""

    units: dict[str, list[int]]
    method: str  # top | random | intersection | fusion
    p: float | None
    kind: str
    total_units: int
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(len(v) for v in self.units.values())

    def per_layer(self) -> dict[int, int]:
        return {int(name.split(".")[1]): len(v) for name, v in self.units.items()}

    def keys(self) -> set[tuple[str, int]]:
        return {(name, u) for name, units in self.units.items() for u in units}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Selection:
        return cls(**json.loads(text))


def check_options(p: float, score: str = "relevant", scope: str = "global",
                  kind: str = "ffn") -> None:
    """Validate selection options before any work is done."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
        raise IrlensError(f"p must be a percentage in (0, 100], got {p}")
    if score not in SCORES:
        raise IrlensError(f"unknown score '{score}'; use {', '.join(SCORES)}")
    if scope not in SCOPES:
        raise IrlensError(f"unknown scope '{scope}'; use global or layer")
    if kind not in ("ffn", "attn"):
        raise IrlensError(f"unknown unit kind '{kind}'; use ffn or attn")


def _check(scores: pd.DataFrame, p: float, kind: str, score: str, segment: str,
           scope: str) -> pd.DataFrame:
    check_options(p, score, scope, kind)
    rows = scores[(scores["kind"] == kind) & (scores["segment"] == segment)]
    if rows.empty:
        known = sorted(scores.loc[scores["kind"] == kind, "segment"].unique())
        if not known:
            raise IrlensError(f"the scores have no '{kind}' units; use kind ffn or attn")
        raise IrlensError(f"unknown segment '{segment}' for {kind}; use {', '.join(known)}")
    return rows


def _count(p: float, total: int, where: str) -> int:
    n = int(round(p / 100 * total))
    if n == 0:
        raise IrlensError(f"p={p}% of {total} units {where} selects no unit (empty selection); "
                          f"raise p to at least {100 / total:.3g}%")
    return n


def _as_units(rows: pd.DataFrame) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for hook, unit in zip(rows["hook"].astype(str), rows["unit"].astype(int), strict=True):
        out.setdefault(hook, []).append(unit)
    return {hook: sorted(units) for hook, units in sorted(out.items(), key=_layer_key)}


def _layer_key(item: tuple[str, Any]) -> int:
    return int(item[0].split(".")[1])


def select(scores: pd.DataFrame, p: float, *, kind: str = "ffn", score: str = "relevant",
           segment: str = "all", scope: str = "global", layers: list[int] | None = None,
           ) -> Selection:
    """The top ``p``% units by ``score`` (over all layers, or ``p``% of each layer).

    ``layers`` restricts the candidates (per-layer pruning); ties break by lower unit id.
    """
    rows = _check(scores, p, kind, score, segment, scope)
    if layers is not None:
        rows = rows[rows["layer"].isin(layers)]
    ordered = rows.sort_values([score, "layer", "unit"], ascending=[False, True, True],
                               kind="stable")
    if scope == "global":
        chosen = ordered.head(_count(p, len(rows), "in all"))
    else:
        parts = []
        for layer, group in ordered.groupby("layer", sort=True):
            parts.append(group.head(_count(p, len(group), f"of layer {layer}")))
        chosen = pd.concat(parts)
    params = {"score": score, "segment": segment, "scope": scope, "layers": layers}
    return Selection(_as_units(chosen), "top", float(p), kind, len(rows), params)


def random_like(scores: pd.DataFrame, selection: Selection, seed: int,
                match: str = "global") -> Selection:
    """As many random units as ``selection`` (same kind and candidate layers).

    ``match="global"`` draws uniformly over the candidates; ``"layer"`` draws the same
    number in each layer as ``selection`` has.
    """
    if match not in SCOPES:
        raise IrlensError(f"unknown random match '{match}'; use global or layer")
    rows = scores[(scores["kind"] == selection.kind) & (scores["segment"] == "all")]
    layers = selection.parameters.get("layers")
    if layers is not None:
        rows = rows[rows["layer"].isin(layers)]
    rng = np.random.default_rng(seed)
    if match == "global":
        chosen = rows.iloc[rng.choice(len(rows), size=selection.n, replace=False)]
    else:
        parts = []
        for layer, count in selection.per_layer().items():
            group = rows[rows["layer"] == layer]
            parts.append(group.iloc[rng.choice(len(group), size=count, replace=False)])
        chosen = pd.concat(parts)
    params = {"seed": seed, "match": match, "layers": layers}
    return Selection(_as_units(chosen), "random", selection.p, selection.kind, len(rows), params)


def intersect(selections: list[Selection]) -> Selection:
    """Units in every selection (e.g. each dataset's top p%)."""
    if not selections:
        raise IrlensError("nothing to intersect: no selections given")
    common = set.intersection(*(s.keys() for s in selections))
    units: dict[str, list[int]] = {}
    for hook, unit in sorted(common):
        units.setdefault(hook, []).append(unit)
    first = selections[0]
    units = {h: sorted(u) for h, u in sorted(units.items(), key=_layer_key)}
    return Selection(units, "intersection", first.p, first.kind, first.total_units,
                     {"of": len(selections), **first.parameters})


def fuse(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One scores table whose scores are the mean of several datasets' (fusion)."""
    if not tables:
        raise IrlensError("nothing to fuse: no score tables given")
    keys = ["hook", "kind", "layer", "unit", "segment"]
    first = tables[0][keys]
    for table in tables[1:]:
        if len(table) != len(first) or not (table[keys].values == first.values).all():
            raise IrlensError("cannot fuse scores of different models or configurations "
                              "(their units differ)")
    fused = first.copy()
    for col in SCORES:
        fused[col] = np.mean([t[col].to_numpy() for t in tables], axis=0)
    return fused


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def overlaps(a: pd.DataFrame, b: pd.DataFrame, p: float, *, kind: str = "ffn",
             score: str = "relevant", segment: str = "all") -> pd.DataFrame:
    """Per layer (and ``all``): Jaccard of the global top-p selections restricted to the
    layer, Jaccard of per-layer top-p selections, and Spearman of the unit scores."""
    rows_a = _check(a, p, kind, score, segment, "global")
    rows_b = _check(b, p, kind, score, segment, "global")
    if len(rows_a) != len(rows_b):
        raise IrlensError("cannot compare scores of models with different unit counts")
    glob = [select(t, p, kind=kind, score=score, segment=segment).keys() for t in (a, b)]
    local = [select(t, p, kind=kind, score=score, segment=segment, scope="layer").keys()
             for t in (a, b)]
    out = []
    for layer in [*sorted(rows_a["layer"].unique()), "all"]:
        def keep(keys: set, layer=layer) -> set:
            return keys if layer == "all" else {k for k in keys
                                                if int(k[0].split(".")[1]) == layer}
        xa = rows_a if layer == "all" else rows_a[rows_a["layer"] == layer]
        xb = rows_b if layer == "all" else rows_b[rows_b["layer"] == layer]
        xa, xb = xa.sort_values(["layer", "unit"]), xb.sort_values(["layer", "unit"])
        out.append({"layer": str(layer), "jaccard": _jaccard(keep(glob[0]), keep(glob[1])),
                    "jaccard_layer_top": _jaccard(keep(local[0]), keep(local[1])),
                    "spearman": _spearman(xa[score].to_numpy(), xb[score].to_numpy()),
                    "n_a": len(keep(glob[0])), "n_b": len(keep(glob[1])),
                    "n_common": len(keep(glob[0]) & keep(glob[1]))})
    return pd.DataFrame(out)


def _jaccard(x: set, y: set) -> float:
    union = x | y
    return float(len(x & y) / len(union)) if union else float("nan")
