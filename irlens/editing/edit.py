"""An edit: weight deltas that realise edit requests, applied temporarily or saved.

``with edit.applied(model): ...`` adds the deltas in place and, on every exit path
(exceptions included), copies the saved original tensors back, so the model is
bit-identical afterwards. :meth:`Edit.save_model` writes an edited copy of the model
folder that :func:`irlens.load_model` loads like the original.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from irlens.artifacts import atomic_dir
from irlens.errors import IrlensError
from irlens.models import BiEncoder, resolve_model_path

__all__ = ["Edit"]


@dataclass(repr=False)
class Edit:
    """Parameter deltas (``named_parameters`` name -> new - old) made by one editor."""

    editor: str
    deltas: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        n = sum(d.numel() for d in self.deltas.values())
        return f"<Edit {self.editor}: {len(self.deltas)} tensors, {n} weights>"

    def _targets(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        params = dict(model.named_parameters())
        for name, delta in self.deltas.items():
            if name not in params:
                raise IrlensError(f"edit changes '{name}', which this model does not have; "
                                  "apply an edit to the model it was made for")
            if params[name].shape != delta.shape:
                raise IrlensError(f"edit of '{name}' has shape {tuple(delta.shape)}, the "
                                  f"model's is {tuple(params[name].shape)}")
        return {name: params[name] for name in self.deltas}

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model with the edit in place; restored bit-identically on exit."""
        targets = self._targets(model)
        saved = {name: p.detach().clone() for name, p in targets.items()}
        try:
            with torch.no_grad():
                for name, p in targets.items():
                    p.add_(self.deltas[name].to(p.device, p.dtype))
            yield model
        finally:
            with torch.no_grad():
                for name, p in targets.items():
                    p.copy_(saved[name])

    def save_model(self, model: BiEncoder, folder: str | Path) -> Path:
        """Write the edited model as a folder :func:`irlens.load_model` reads."""
        if not isinstance(model, BiEncoder) or "shared" not in model.encoders():
            raise IrlensError("saving an edited model needs a one-tower bi-encoder; two-tower "
                              "(DPR) and cross-encoder folders are not supported yet")
        source = Path(resolve_model_path(model.model_id))
        folder = Path(folder)
        with atomic_dir(folder) as tmp, self.applied(model):
            body = model.doc_encoder
            if (source / "modules.json").is_file():  # sentence-transformers layout
                shutil.rmtree(tmp)
                shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(
                    "*.safetensors", "pytorch_model.bin", ".git*"))
                modules = json.loads((source / "modules.json").read_text())
                first = next(m for m in modules if m["type"].endswith("Transformer"))
                body.save_pretrained(tmp / first["path"])
            else:
                body.save_pretrained(tmp)
                model.tokenizer.save_pretrained(tmp)
        return folder
