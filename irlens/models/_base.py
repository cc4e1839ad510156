"""What every retriever shares: token batches with segment labels, and the base class."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from irlens._warn import warn
from irlens.errors import IrlensError

__all__ = ["UNCACHEABLE", "Batch", "Retriever", "Segment", "Side"]

UNCACHEABLE = "uncacheable:"  # prefix of an active edit that no cache key can describe

Side = Literal["query", "doc"]
Pooling = Literal["cls", "mean"]
Similarity = Literal["dot", "cosine", "euclidean", "manhattan"]


class Segment:
    """Token segment labels used in ``Batch.segments``."""

    PAD = -1
    CLS = 0
    QUERY = 1
    SEP = 2
    DOC = 3
    END = 4
    PREFIX = 5  # a prompt prefix such as "query: " (irlens.paths labels it; never moves)
    NAMES = {"cls": CLS, "query": QUERY, "sep": SEP, "doc": DOC, "end": END, "prefix": PREFIX}


@dataclass
class Batch:
    """Tokenised inputs plus a segment label per token (see :class:`Segment`).

    Shapes: ``input_ids``, ``attention_mask``, ``segments``: [batch, tokens].
    ``side`` is ``"query"`` or ``"doc"`` for a bi-encoder pass, ``None`` for a pair.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    segments: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    side: Side | None = None
    truncated: int = 0  # how many sequences were cut to max_length when tokenising


    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def to(self, device: torch.device | str) -> Batch:
        tt = None if self.token_type_ids is None else self.token_type_ids.to(device)
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.segments.to(device),
            tt,
            self.side,
            self.truncated,
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _check_texts(texts: list[str], what: str) -> None:
    """Reject a bare string or an empty text (``what`` is "queries" or "documents")."""
    if isinstance(texts, str):
        raise IrlensError(f"{what} must be a list of strings, not one string; wrap it in [...]")
    one = {"queries": "query", "documents": "document"}.get(what, what)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise IrlensError(f"empty {one} at index {i}; every {one} needs text")


class Retriever(nn.Module):
    """What bi-encoders and cross-encoders share: tokenizer, limits, device, hook roots."""

    model_id: str
    tokenizer: object
    max_length: int

    def __init__(self, model_id: str, tokenizer, max_length: int):
        super().__init__()
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.current_batch: Batch | None = None  # the batch in the forward pass (for hooks)
        self.active_edits: list[str] = []  # descriptions of interventions now in force
        self._weights_hash: tuple[Any, Any] | None = None  # (state key, sha1 of weights)
        self.eval()

    # -- identity -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        """Hash of weights, configuration and interventions in force (for caches).

        The weights are hashed once per state: again only after one changes (an in-place
        update such as an edit or an optimiser step, a new dtype or device, or
        :meth:`weights_changed`); interventions (hooks) change the fingerprint without a
        rehash."""
        state = self.state_dict(keep_vars=True)
        key = (self._config_key(), [(name, t.data_ptr(), t._version, t.dtype, t.device,
                                     t.shape) for name, t in state.items()])
        if self._weights_hash is None or self._weights_hash[0] != key:
            weights = hashlib.sha1(self._config_key().encode())
            for name, tensor in state.items():
                weights.update(name.encode())
                weights.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy())
            self._weights_hash = (key, weights)
        digest = self._weights_hash[1].copy()
        digest.update("|".join(self.active_edits).encode())
        return digest.hexdigest()[:16]

    def weights_changed(self) -> None:
        """Forget the hashed weights: the next :attr:`fingerprint` hashes them again (for
        changes torch does not count, such as writes through ``.data``)."""
        self._weights_hash = None

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), .cuda(): new weight tensors
        self._weights_hash = None
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # a copy rehashes (a hash object cannot pickle)
        return {**self.__dict__, "_weights_hash": None}

    @property
    def cacheable(self) -> bool:
        """False while an intervention no key can describe (an unlabeled function) is in
        force: its fingerprint is then unique, and disk caches must not be used."""
        return not any(e.startswith(UNCACHEABLE) for e in self.active_edits)

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length})

    # -- model internals ----------------------------------------------------------------
    def encoders(self) -> dict[str, nn.Module]:
        """The transformer bodies, by role (``shared``, or ``query`` and ``doc``)."""
        raise NotImplementedError

    def word_embeddings(self, side: Side | None = None) -> nn.Embedding:
        """The token embedding table that attribution interpolates."""
        from irlens._families import family_of

        encoder = self._encoder_for(side)
        return family_of(encoder).get(encoder, "word_embeddings")

    def _encoder_for(self, side: Side | None) -> nn.Module:
        encoders = self.encoders()
        if "shared" in encoders:
            return encoders["shared"]
        if side is None:
            raise IrlensError("this model has separate query and document encoders; pass side")
        return encoders[side]

    def _token_types(self, side: Side | None) -> bool:
        """Whether the encoder has token-type embeddings to feed (BERT yes, RoBERTa no)."""
        return getattr(self._encoder_for(side).config, "type_vocab_size", 0) > 1

    def _warn_truncated(self, n: int, total: int, what: str) -> None:
        if n:
            warn(
                f"{n} of {total} {what} were longer than {self.max_length} tokens and were "
                f"truncated to {self.max_length}"
            )


def _segments_from(encoding, n_tokens: int, single_side: Side | None) -> list[int]:
    """Segment labels for one tokenised sequence (fast tokenizer ``sequence_ids``)."""
    seq_ids = encoding.sequence_ids
    labels: list[int] = []
    seen_first = seen_second = False
    for pos, (sid, mask) in enumerate(zip(seq_ids, encoding.attention_mask, strict=True)):
        if not mask:
            labels.append(Segment.PAD)
        elif sid is None:
            if pos == 0:
                labels.append(Segment.CLS)
            elif single_side is None and seen_first and not seen_second:
                labels.append(Segment.SEP)
            else:
                labels.append(Segment.END)
        elif single_side is not None:
            labels.append(Segment.QUERY if single_side == "query" else Segment.DOC)
        elif sid == 0:
            seen_first = True
            labels.append(Segment.QUERY)
        else:
            seen_second = True
            labels.append(Segment.DOC)
    return labels[:n_tokens]


def _tokenize(tokenizer, first: list[str], second: list[str] | None, max_length: int,
              side: Side | None, device: torch.device, token_types: bool) -> Batch:
    enc = tokenizer(
        first,
        second,
        padding=True,
        truncation="only_second" if second is not None else True,
        max_length=max_length,
        return_tensors="pt",
    )
    n_tokens = enc["input_ids"].shape[1]
    segments = torch.tensor(
        [_segments_from(enc.encodings[i], n_tokens, side) for i in range(len(first))],
        dtype=torch.long,
    )
    return Batch(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        segments=segments,
        token_type_ids=enc.get("token_type_ids") if token_types else None,
        side=side,
        truncated=sum(bool(e.overflowing) for e in enc.encodings),
    ).to(device)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

