"""Active units from knowledge-neuron attributions, and how spread out they are.

A unit is *active* for an example when its attribution exceeds ``threshold`` (0.1, as in
Yao, Wang & Zuccon, SIGIR 2025; Dai et al. 2022 used 0.2) times that example's largest
attribution over every layer of the same sublayer (keys or values). Per layer we report
active units per example, units active on at least ``min_share`` of the examples, and
the spread of per-unit counts: the Gini coefficient (0 = every unit equally often,
1 = one unit always) and the participation ratio (sum c)^2 / sum c^2, the effective
number of units that carry the counts.
"""

from __future__ import annotations

import numpy as np

from irlens.errors import IrlensError

__all__ = ["active_mask", "gini", "layer_stats", "participation_ratio"]


def active_mask(attributions: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Bool [n, layers, units]: attribution > threshold x the example's largest (over all
    layers and units of this array). Examples whose largest attribution is not positive
    have no active unit."""
    if not 0 < threshold < 1:
        raise IrlensError(f"threshold must be between 0 and 1, got {threshold}")
    attributions = np.asarray(attributions, dtype=float)
    if attributions.ndim != 3:
        raise IrlensError(f"attributions must be [examples, layers, units], got shape "
                          f"{attributions.shape}")
    top = attributions.reshape(len(attributions), -1).max(1)
    return (attributions > threshold * top[:, None, None]) & (top[:, None, None] > 0)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 for all-equal or all-zero counts)."""
    c = np.sort(np.asarray(counts, dtype=float))
    if c.sum() == 0:
        return 0.0
    n = len(c)
    return float((2 * np.arange(1, n + 1) - n - 1) @ c / (n * c.sum()))


def participation_ratio(counts: np.ndarray) -> float:
    """(sum c)^2 / sum c^2: how many units effectively share the counts (0 if none)."""
    c = np.asarray(counts, dtype=float)
    sq = float((c ** 2).sum())
    return float(c.sum() ** 2 / sq) if sq else 0.0


def layer_stats(active: np.ndarray, min_share: float = 0.01) -> list[dict]:
    """Per layer of a [n, layers, units] active mask: active units per example (mean,
    95% CI), units active on >= ``min_share`` of examples, Gini, participation ratio."""
    from irlens.report import mean_ci

    n = len(active)
    rows = []
    for layer in range(active.shape[1]):
        per_example = active[:, layer].sum(1)
        per_unit = active[:, layer].sum(0)
        ci = mean_ci(per_example)
        rows.append({"layer": layer, "active_per_example": ci["mean"], "ci_low": ci["lo"],
                     "ci_high": ci["hi"],
                     "units_on_share": int(((per_unit >= min_share * n) & (per_unit > 0)).sum()),
                     "units_ever": int((per_unit > 0).sum()),
                     "gini": gini(per_unit), "participation_ratio": participation_ratio(per_unit),
                     "units": active.shape[2], "examples": n})
    return rows
