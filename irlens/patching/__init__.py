"""Activation patching with IR axioms (MechIR, Parry et al. 2025; axioms from Fang, Tao &
Zhai 2004): perturb real pairs (:mod:`irlens.patching.axioms`), patch components
between the clean and corrupted runs (:func:`patch_pair`), average over a dataset
(:func:`patching_study`) and check the top components on real rankings
(:func:`ablate_top`).
"""

from irlens.patching.axioms import AXIOMS, Perturbation, perturb, text_pair
from irlens.patching.patch import KINDS, ROLES, PairPatch, align, patch_pair

__all__ = ["AXIOMS", "KINDS", "ROLES", "PairPatch", "Perturbation", "align", "patch_pair",
           "perturb", "text_pair"]
