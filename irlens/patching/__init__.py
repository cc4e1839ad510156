"""Activation patching with IR axioms (MechIR, Parry et al. 2025; axioms from Fang, Tao &
Zhai 2004): perturb real pairs (:mod:`irlens.patching.axioms`), patch components
between the clean and corrupted runs (:func:`patch_pair`), average over a dataset
(:func:`patching_study`) and check the top components on real rankings
(:func:`ablate_top`).

>>> from irlens.patching import ablate_top, patching_study, study_pairs
>>> study = patching_study(model, dataset, "tfc1", n_pairs=100, folder="runs/tfc1")
>>> study.top_components(5)
>>> chosen = {q for q, _, _ in study_pairs(dataset, "tfc1", 100)[0]}  # the study's queries
>>> ablate_top(model, dataset, study, k=3, chosen_on=chosen)  # pairs of other queries only
"""

from irlens.patching.ablate_top import ablate_top
from irlens.patching.axioms import AXIOMS, Perturbation, perturb, text_pair
from irlens.patching.patch import KINDS, ROLES, PairPatch, align, patch_pair
from irlens.patching.study import PatchingStudy, heatmap_figure, patching_study, study_pairs

__all__ = ["AXIOMS", "KINDS", "ROLES", "PairPatch", "PatchingStudy", "Perturbation",
           "ablate_top", "align", "heatmap_figure", "patch_pair", "patching_study", "perturb",
           "study_pairs", "text_pair"]
