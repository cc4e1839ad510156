"""Knowledge-neuron activation analysis for pairs of encoders (Dai et al. 2022).

>>> from irlens.activations import ActivationConfig, run_activations
>>> counts = run_activations(["default", "/models/bi-nfcorpus"], "data/nfcorpus",
...                          "out/activations", ActivationConfig(n_examples=100))
>>> counts.difference()  # trained minus base, per side, sublayer and layer
"""

from irlens.activations.attribution import (
    KEYS,
    RULES,
    SUBLAYERS,
    TARGETS,
    KnowledgeNeurons,
    nodes,
    scaled_activation_pass,
)
from irlens.activations.counts import active_mask, gini, layer_stats, participation_ratio
from irlens.activations.report import activations_section, plot_counts, write_activation_page
from irlens.activations.study import (
    ActivationConfig,
    ActivationCounts,
    KnowledgeScores,
    examples_for,
    run_activations,
)

__all__ = ["KEYS", "RULES", "SUBLAYERS", "TARGETS", "ActivationConfig", "ActivationCounts",
           "KnowledgeNeurons", "KnowledgeScores", "active_mask", "activations_section",
           "examples_for", "gini", "layer_stats", "nodes", "participation_ratio",
           "plot_counts", "run_activations", "scaled_activation_pass",
           "write_activation_page"]
