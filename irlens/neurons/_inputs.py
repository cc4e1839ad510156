"""What one NIG path runs on: token streams, their baselines, and the scalar ``F``.

A :class:`Stream` is one tokenised sequence per pair whose word embeddings move from a
baseline to their real value (the pair sequence of a cross-encoder, or one side of a
bi-encoder). A :class:`Problem` holds the streams of a group of pairs and computes ``F``
for many path points at once: rows are laid out step-major (``k * n_pairs + pair``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from irlens.errors import IrlensError
from irlens.models import Batch, BiEncoder, CrossEncoder, Retriever, Segment

__all__ = ["BASELINES", "SEGMENTS", "TARGETS", "Problem", "Stream", "build_problem"]

SEGMENTS = ("cls", "query", "sep", "doc", "end")
"""Segment axis of every aggregated array: ``[CLS] query [SEP] document [SEP]``."""
TARGETS = ("both", "query", "doc")
BASELINES = ("pad", "mask", "zero")


@dataclass
class Stream:
    """One sequence per pair: a batch [g, T], real and baseline embeddings [g, T, D]."""

    side: str | None  # hook side: None for a cross-encoder, "query"/"doc" for a bi-encoder
    batch: Batch
    x: torch.Tensor
    x0: torch.Tensor
    onehot: torch.Tensor  # [g, T, 5] segment indicator (padding rows are all zero)

    @property
    def n_tokens(self) -> int:
        return self.x.shape[1]

    def rows(self, alphas: torch.Tensor) -> tuple[Batch, torch.Tensor]:
        """Batch and word embeddings of path points ``alphas`` [k]: k * g rows, step-major."""
        k = len(alphas)
        b = self.batch
        rep = Batch(b.input_ids.repeat(k, 1), b.attention_mask.repeat(k, 1),
                    b.segments.repeat(k, 1),
                    None if b.token_type_ids is None else b.token_type_ids.repeat(k, 1), b.side)
        a = alphas.to(self.x.device, self.x.dtype).view(k, 1, 1, 1)
        embeds = self.x0.unsqueeze(0) + a * (self.x - self.x0).unsqueeze(0)
        return rep, embeds.reshape(-1, *self.x.shape[1:])


@dataclass
class Problem:
    """Streams of a group of pairs and the function ``F`` of their embeddings."""

    model: Retriever
    streams: list[Stream]
    output: str
    fixed: torch.Tensor | None = None  # bi-encoder, one side explained: the other's vectors

    @property
    def n_pairs(self) -> int:
        return self.streams[0].x.shape[0]

    def forward(self, alphas: torch.Tensor) -> torch.Tensor:
        """``F`` at path points ``alphas`` [k] for every pair -> [k * g], step-major."""
        k = len(alphas)
        model = self.model
        if isinstance(model, CrossEncoder):
            batch, embeds = self.streams[0].rows(alphas)
            return model.forward_embeds(batch, embeds.requires_grad_(True), output=self.output)
        assert isinstance(model, BiEncoder)
        vectors: dict[str, torch.Tensor] = {}
        for stream in self.streams:
            batch, embeds = stream.rows(alphas)
            vectors[stream.side] = model.forward_embeds(batch, embeds.requires_grad_(True))
        other = "doc" if "query" in vectors else "query"
        if other not in vectors:
            vectors[other] = self.fixed.repeat(k, 1).to(vectors[_first(vectors)].dtype)
        return model.pair_similarity(vectors["query"], vectors["doc"])


def _first(d: dict[str, torch.Tensor]) -> str:
    return next(iter(d))


def _onehot(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    hot = F.one_hot(segments.clamp(min=0), len(SEGMENTS)).to(dtype)
    return hot * (segments >= 0).unsqueeze(-1).to(dtype)


def _baseline(model: Retriever, table: torch.nn.Embedding, x: torch.Tensor,
              moves: torch.Tensor, baseline: str) -> torch.Tensor:
    if baseline == "zero":
        fill = torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device)
    else:
        token_id = getattr(model.tokenizer, f"{baseline}_token_id", None)
        if token_id is None:
            raise IrlensError(f"this tokenizer has no {baseline} token; use baseline 'zero'")
        fill = table.weight[token_id].detach()
    return torch.where(moves.unsqueeze(-1), fill.to(x.dtype), x)


def _stream(model: Retriever, batch: Batch, side: str | None, moving: list[int],
            baseline: str) -> Stream:
    table = model.word_embeddings(side if isinstance(model, BiEncoder) else None)
    with torch.no_grad():
        x = table(batch.input_ids).detach()
    moves = torch.isin(batch.segments, torch.tensor(moving, device=batch.segments.device))
    segments = batch.segments
    if side == "query":  # the query pass's closing [SEP] plays the pair's first [SEP]
        segments = torch.where(segments == Segment.END, Segment.SEP, segments)
    return Stream(side, batch, x, _baseline(model, table, x, moves, baseline),
                  _onehot(segments, x.dtype))


def build_problem(model: Retriever, queries: list[str], docs: list[str], target: str,
                  baseline: str, output: str) -> Problem:
    """The streams of pairs ``(queries[i], docs[i])`` and their ``F``.

    ``target`` names the segments that move along the path (the others, special tokens
    and padding keep their real embeddings). For a bi-encoder it also picks the encoder
    passes: ``doc`` interpolates the document pass with the query vector held fixed,
    ``query`` the reverse, ``both`` the two passes together.
    """
    if isinstance(model, CrossEncoder):
        moving = {"both": [Segment.QUERY, Segment.DOC], "query": [Segment.QUERY],
                  "doc": [Segment.DOC]}[target]
        return Problem(model, [_stream(model, model.tokenize(queries, docs), None, moving,
                                       baseline)], output)
    if not isinstance(model, BiEncoder):
        raise IrlensError(f"NIG needs an irlens retriever, got {type(model).__name__}; "
                          "load one with irlens.load_model")
    if target == "both" and "shared" not in model.encoders():
        raise IrlensError("target 'both' needs one shared encoder; for two-encoder (DPR) "
                          "models attribute target 'query' and 'doc' separately")
    texts = {"query": queries, "doc": docs}
    sides = ["query", "doc"] if target == "both" else [target]
    streams = []
    for side in sides:
        seg = Segment.QUERY if side == "query" else Segment.DOC
        streams.append(_stream(model, model.tokenize(texts[side], side), side, [seg], baseline))
    fixed = None
    if target != "both":
        other = "doc" if target == "query" else "query"
        with torch.no_grad():
            fixed = model.forward_embeds(model.tokenize(texts[other], other)).detach()
    return Problem(model, streams, output, fixed)
