"""Which neurons matter: NIG attribution, relevance-neuron studies, pruning.

Vast et al., "Which Neurons Matter in IR?", ICTIR 2024 (SCIENCE.md, section 3).

>>> from irlens.neurons import NeuronIntegratedGradients, run_study, select, prune
>>> nig = NeuronIntegratedGradients(model, n_steps=21)          # every FFN unit and head
>>> res = nig.attribute(queries, docs)                           # NeuronAttribution
>>> res.ffn.shape, res.completeness()                            # [P, L, 6, I], per layer
>>> study = run_study(model, "../shared/data/msmarco-dl19", "results/dl19")  # resumable
>>> top = select(study.scores, p=1.0)                            # top 1% relevance units
>>> with prune(model, top, positions="doc"):                     # restored on exit
...     ...

- :class:`NeuronIntegratedGradients` -> :class:`NeuronAttribution`: conductance of every
  FFN unit and attention head of every layer, per pair and segment, on the path engine
  of :mod:`irlens.paths`.
- :func:`run_study` / :func:`run_neurons`: triplets, filtering, NIG of relevant and
  non-relevant pairs, means and contrast, saved as Parquet with a manifest (resumable);
  several datasets: fusion, intersection, overlaps.
- :func:`select`, :func:`random_like`, :func:`intersect`, :func:`fuse`, :func:`overlaps`.
- :func:`prune` and :func:`evaluate_pruning` -> :class:`PruningResult` (curves over p,
  per-layer pruning, random controls); :func:`render_report` writes the HTML page.
"""

from irlens.neurons.nig import NeuronIntegratedGradients
from irlens.neurons.pruning import (
    PruningConfig,
    PruningResult,
    evaluate_pruning,
    prune,
    unit_means,
)
from irlens.neurons.report import render_report
from irlens.neurons.result import SEGMENTS, NeuronAttribution
from irlens.neurons.selection import (
    Selection,
    fuse,
    intersect,
    overlaps,
    random_like,
    select,
)
from irlens.neurons.study import Study, StudyConfig, run_neurons, run_study

__all__ = [
    "SEGMENTS",
    "NeuronAttribution",
    "NeuronIntegratedGradients",
    "PruningConfig",
    "PruningResult",
    "Selection",
    "Study",
    "StudyConfig",
    "evaluate_pruning",
    "fuse",
    "intersect",
    "overlaps",
    "prune",
    "random_like",
    "render_report",
    "run_neurons",
    "run_study",
    "select",
    "unit_means",
]
