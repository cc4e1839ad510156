"""Baselines for token attribution: see :mod:`irlens.paths.baselines` (one definition)."""

from irlens.paths.baselines import BASELINES, Baseline

__all__ = ["BASELINES", "Baseline"]
