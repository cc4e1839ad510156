"""Layer-wise linear probes of relevance for pairs of encoders (base vs retrieval-trained).

>>> from irlens.probing import ProbeConfig, run_probes
>>> result = run_probes(["default", "/models/bi-nfcorpus"], "data/nfcorpus", "out/probe",
...                     ProbeConfig(max_queries=200))
>>> result.summary_frame()  # accuracy, control, selectivity, corrected 95% CIs per layer
"""

from irlens.probing._encoders import (
    POOLINGS,
    check_specs,
    layer_names,
    layer_representations,
    load_encoder,
    split_spec,
)
from irlens.probing.probes import (
    TASKS,
    ProbeItem,
    build_items,
    control_labels,
    control_seen,
    fold_accuracies,
    passage_values,
    task_data,
)
from irlens.probing.report import plot_probes, probe_section, write_probe_page
from irlens.probing.study import ProbeConfig, ProbeResult, probe_model, run_probes

__all__ = ["POOLINGS", "TASKS", "ProbeConfig", "ProbeItem", "ProbeResult", "build_items",
           "check_specs", "control_labels", "control_seen", "fold_accuracies", "layer_names",
           "layer_representations", "load_encoder", "passage_values",
           "plot_probes", "probe_model", "probe_section", "run_probes", "split_spec",
           "task_data", "write_probe_page"]
