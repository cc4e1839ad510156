"""Quadrature rules for path integrals from a baseline (alpha=0) to an input (alpha=1).

Nodes and weights match Captum's ``approximation_methods`` for Gauss-Legendre and the
left, right and middle Riemann sums, so results can be checked against Captum to float
precision. The trapezoid rule differs on purpose: Captum spaces its ``n`` nodes by
1/(n-1) but weights them by 1/n, so its weights sum to (n-1)/n and every attribution
comes out (n-1)/n too small (a completeness gap of 1/n that more steps barely shrink;
``benchmarks/attribution.py`` measured 3.0% at 33 steps). Here the weights are the
textbook 1/(n-1), halved at both ends, i.e. Captum's result times n/(n-1).
Gauss-Legendre needs far fewer steps than Riemann sums for the same completeness gap.
"""

from __future__ import annotations

import numpy as np
import torch

from irlens.errors import IrlensError

__all__ = ["RULES", "quadrature"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
           "riemann_trapezoid")


def quadrature(n_steps: int, rule: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``alphas`` in [0, 1] and weights (summing to 1), both float64 [n_steps].

    ``n_steps`` is the number of points (gradient evaluations) on every path.
    """
    if rule not in RULES:
        raise IrlensError(f"unknown rule '{rule}'; use {', '.join(RULES)}")
    minimum = 1 if rule == "gausslegendre" else 2
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < minimum:
        raise IrlensError(f"n_steps must be an integer >= {minimum} for {rule}, got {n_steps}")
    n = n_steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.tensor(0.5 * (nodes + 1.0)), torch.tensor(0.5 * weights)
    kind = rule.split("_")[1]
    weights = torch.full((n,), 1.0 / (n - 1 if kind == "trapezoid" else n), dtype=torch.float64)
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        alphas = torch.linspace(0, 1, n)
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / n, n)
    elif kind == "middle":
        alphas = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    else:
        alphas = torch.linspace(1 / n, 1, n)
    return alphas.double(), weights
