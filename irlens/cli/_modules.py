"""Import every command module so its commands register on the app."""

from irlens.cli import (
    evaluate_cmd,  # noqa: F401
    explain_cmd,  # noqa: F401
    hooks_cmd,  # noqa: F401
    neurons_cmd,  # noqa: F401
    patch_cmd,  # noqa: F401
)
