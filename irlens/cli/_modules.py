"""Import every command module so its commands register on the app."""

from irlens.cli import (
    activations_cmd,  # noqa: F401
    edit_cmd,  # noqa: F401
    evaluate_cmd,  # noqa: F401
    explain_cmd,  # noqa: F401
    hooks_cmd,  # noqa: F401
    neurons_cmd,  # noqa: F401
    patch_cmd,  # noqa: F401
    probe_cmd,  # noqa: F401
    sae_cmd,  # noqa: F401
    study_cmd,  # noqa: F401
    train_cmd,  # noqa: F401
)
