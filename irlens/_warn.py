"""Warnings that point at the caller's line, not at irlens or torch internals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

__all__ = ["warn"]

_INTERNAL = (str(Path(__file__).resolve().parent), str(Path(warnings.__file__).parent))


def _internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL) or f"{Path('torch')}/" in filename \
        or filename.startswith("<")


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside irlens, torch
    and the standard library (e.g. the user's script or notebook cell)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
