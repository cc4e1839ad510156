"""Token attribution for bi-encoders and cross-encoders.

Every method is a class with parameters in ``__init__`` and one verb,
``attribute(queries, docs) -> list[TokenAttribution]`` (one result per pair):

>>> from irlens.attribution import SequentialIntegratedGradients
>>> sig = SequentialIntegratedGradients(model, n_steps=20, target="doc")
>>> [result] = sig.attribute("what is irlens", "irlens opens up retrievers")
>>> result.words(), result.score, result.baseline_score, result.relative_gap

Methods: :class:`IntegratedGradients`, :class:`SequentialIntegratedGradients`,
:class:`Occlusion` (SIG's exact limit with the same baseline), :class:`GradientXInput`,
:class:`RandomAttribution`; :func:`make_method` builds one from
a short name or spec (``ig-mask``, ``sig(n_steps=20)``, ``gxi``...); the path engine
they share is :mod:`irlens.paths`. Faithfulness: :func:`measure_faithfulness`
(one result) and :func:`faithfulness_study` (a dataset, resumable). Pages:
:func:`render_html`, :func:`save_html`.
"""

from irlens.attribution._base import AttributionMethod, CompletenessWarning, gap_fix
from irlens.attribution.baselines import BASELINES, Baseline
from irlens.attribution.controls import GradientXInput, RandomAttribution
from irlens.attribution.faithfulness import Faithfulness, measure_faithfulness
from irlens.attribution.html import render_html, save_html
from irlens.attribution.ig import IntegratedGradients
from irlens.attribution.methods import METHOD_NAMES, make_method, register_method
from irlens.attribution.occlusion import Occlusion
from irlens.attribution.result import TokenAttribution, Word
from irlens.attribution.sig import SequentialIntegratedGradients
from irlens.attribution.study import FaithfulnessTable, faithfulness_study

__all__ = [
    "BASELINES",
    "METHOD_NAMES",
    "AttributionMethod",
    "Baseline",
    "CompletenessWarning",
    "Faithfulness",
    "FaithfulnessTable",
    "GradientXInput",
    "IntegratedGradients",
    "Occlusion",
    "RandomAttribution",
    "SequentialIntegratedGradients",
    "TokenAttribution",
    "Word",
    "faithfulness_study",
    "gap_fix",
    "make_method",
    "register_method",
    "measure_faithfulness",
    "render_html",
    "save_html",
]
