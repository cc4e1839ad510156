"""The one exception type irlens raises for bad input.

Every message is a single line that names the problem and the fix, so the CLI can
print it as it is, without a traceback.
"""

from __future__ import annotations

__all__ = ["IrlensError"]


class IrlensError(ValueError):
    """Bad input or configuration; the message says what is wrong and how to fix it."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
