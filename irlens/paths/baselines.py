"""Baselines: what the explained tokens move from along an integration path.

A baseline replaces every *explained* token (the ``target`` segments: query, document
or both) and keeps everything else as it is: special tokens ([CLS], [SEP]), padding and
the other segment. A query-only or document-only baseline is therefore ``target="query"``
or ``target="doc"``. Kinds:

- ``"pad"``: the tokenizer's padding token (the classic choice);
- ``"mask"``: the mask token (better for IG and SIG, Enguehard 2023);
- ``"zero"``: zero word embeddings;
- ``"text:<words>"``: the word pieces of a custom text, repeated to fill the explained
  positions in order (e.g. ``"text:the"`` puts "the" everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irlens.errors import IrlensError

__all__ = ["BASELINES", "Baseline"]

BASELINES = ("pad", "mask", "zero", "text:<words>")


@dataclass(frozen=True)
class Baseline:
    """A baseline kind (``pad``, ``mask``, ``zero`` or ``text``) and, for ``text``, the text."""

    kind: str
    text: str = ""

    @classmethod
    def parse(cls, spec: str | Baseline) -> Baseline:
        """``"pad"``, ``"mask"``, ``"zero"`` or ``"text:<words>"`` -> :class:`Baseline`."""
        if isinstance(spec, Baseline):
            return spec
        if not isinstance(spec, str):
            raise IrlensError(f"baseline must be a string, got {type(spec).__name__}; use "
                              f"{', '.join(BASELINES)}")
        if spec in ("pad", "mask", "zero"):
            return cls(spec)
        if spec.startswith("text:"):
            if not spec[5:].strip():
                raise IrlensError("baseline 'text:' needs words after the colon, e.g. text:the")
            return cls("text", spec[5:])
        raise IrlensError(f"unknown baseline '{spec}'; use {', '.join(BASELINES)}")

    def __str__(self) -> str:
        return f"text:{self.text}" if self.kind == "text" else self.kind

    def token_ids(self, tokenizer, input_ids: torch.Tensor, moves: torch.Tensor
                  ) -> torch.Tensor | None:
        """Baseline ids [B, T] (``input_ids`` where nothing moves); None for ``zero``."""
        if self.kind == "zero":
            return None
        ids = input_ids.clone()
        if self.kind == "text":
            fill = tokenizer(self.text, add_special_tokens=False)["input_ids"]
            if not fill:
                raise IrlensError(f"baseline text '{self.text}' has no tokens; use other words")
            fill_t = torch.tensor(fill, dtype=ids.dtype, device=ids.device)
            for row in range(ids.shape[0]):
                where = moves[row].nonzero().flatten()
                ids[row, where] = fill_t[torch.arange(len(where), device=ids.device)
                                         % len(fill_t)]
            return ids
        token_id = tokenizer.pad_token_id if self.kind == "pad" else tokenizer.mask_token_id
        if token_id is None:
            raise IrlensError(f"this tokenizer has no {self.kind} token; use another baseline "
                              "(zero, or text:<words>)")
        return ids.masked_fill(moves, token_id)

    def embeddings(self, word_embeddings: torch.nn.Embedding, tokenizer,
                   input_ids: torch.Tensor, moves: torch.Tensor, real: torch.Tensor
                   ) -> torch.Tensor:
        """Baseline word embeddings [B, T, H]: ``real`` where nothing moves."""
        ids = self.token_ids(tokenizer, input_ids, moves)
        if ids is None:
            return real.masked_fill(moves.unsqueeze(-1), 0.0)
        with torch.no_grad():
            return word_embeddings(ids).detach()
