"""Encode texts once up to one layer; after an edit, re-run only the layers above it.

An edit of layer ``l`` and above (a rank-one FFN update, a knowledge-neuron scaling, a
one-layer fine-tune) leaves every hidden state below layer ``l`` unchanged. Measuring an
edit re-encodes the whole corpus, and optimising a rank-one value re-encodes the
request's rival documents at every step; both start here from layer ``l``'s input, kept
from one clean pass that stops at that layer, so each costs about ``(L - l) / L`` of a
full forward on an ``L``-layer tower. A hook on a full forward cannot skip the layers
below ``l``: hence this own code path. An edit of only layer ``l``'s FFN output matrix
(rank-one, knowledge neurons) goes further: :func:`ffn_inputs` keeps that layer's FFN
keys, output and residual input, and :func:`embed_with_ffn_change` re-runs only its
LayerNorm and the layers above, with the output changed by a given function of the keys.
It serves the BERT-like towers of
:func:`irlens.activations.suffix.unsupported` (BERT, RoBERTa, ELECTRA, MiniLM, DPR);
:func:`first_edited_layer` says ``None`` for any other model or for an edit that touches
the embeddings, and callers then encode from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from irlens.activations.suffix import clean_states, layers_of, unsupported
from irlens.models import Batch, BiEncoder

__all__ = ["FFNInputs", "LayerInputs", "embed_from", "embed_with_ffn_change",
           "ffn_inputs", "ffn_output_layer", "first_edited_layer", "layer_inputs", "select"]


class _Reached(Exception):
    """Raised by the pre-hook to stop a clean pass at the wanted layer."""


@dataclass
class LayerInputs:
    """Layer ``layer``'s inputs for texts of one side, chunk by chunk (longest first):
    the hidden states, the other arguments of the layer call, and the tokenised chunk."""

    side: str
    layer: int
    batches: list[Batch]
    hidden: list[torch.Tensor]
    calls: list[tuple[tuple, dict]]
    order: list[int]  # text index of each row of the chunks, in chunk order

    @property
    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.hidden)


def first_edited_layer(model: BiEncoder, names: Iterable[str]) -> int | None:
    """The lowest layer holding one of the parameters ``names``, or None if one lies
    outside the layers (embeddings, a head) or the model's layers are not supported."""
    sides = ("query", "doc")
    if any(unsupported(model, side) for side in sides):
        return None
    owner: dict[int, int] = {}
    for side in sides:
        for i, layer in enumerate(layers_of(model, side)):
            for p in layer.parameters():
                owner[id(p)] = min(owner.get(id(p), i), i)
    params = dict(model.named_parameters())
    found = [owner.get(id(params[n])) if n in params else None for n in names]
    return None if not found or None in found else min(found)


@torch.no_grad()
def layer_inputs(model: BiEncoder, texts: list[str], side: str, layer: int,
                 batch_size: int = 64) -> LayerInputs:
    """One clean pass per chunk of ``texts`` that stops at layer ``layer``'s input."""
    layers = layers_of(model, side)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as encode_docs
    out = LayerInputs(side, layer, [], [], [], order)
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize([texts[i] for i in order[start:start + batch_size]], side)
        got: dict = {}

        def grab(_module, args, kwargs, got=got):
            got["hidden"], got["call"] = args[0].detach(), (args[1:], kwargs)
            raise _Reached

        handle = layers[layer].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            model.forward_embeds(batch)
        except _Reached:
            pass
        finally:
            handle.remove()
        out.batches.append(batch)
        out.hidden.append(got["hidden"])
        out.calls.append(got["call"])
    return out


def embed_from(model: BiEncoder, inputs: LayerInputs) -> torch.Tensor:
    """Pooled vectors [n, dim] (float32, text order) running the model's current layers
    from ``inputs.layer`` up; differentiable in whatever the caller made trainable."""
    layers = layers_of(model, inputs.side)
    chunks = []
    for batch, hidden, (args, kwargs) in zip(inputs.batches, inputs.hidden, inputs.calls,
                                             strict=True):
        model.current_batch = batch  # what forward_embeds sets for hooks that read it
        try:
            for j in range(inputs.layer, len(layers)):
                hidden = layers[j](hidden, *args, **kwargs)
                if isinstance(hidden, tuple):
                    hidden = hidden[0]
        finally:
            model.current_batch = None
        chunks.append(model.pool_hidden(hidden, batch).float())
    return torch.cat(chunks)[torch.argsort(torch.tensor(inputs.order))]


@dataclass
class FFNInputs:
    """Layer ``layer``'s FFN keys ``post`` [B, T, I] and its FFN output plus residual
    input ``base`` [B, T, H] (what its LayerNorm reads, in eval mode) for texts of one
    side, chunk by chunk, with the arguments of the calls of the layers above."""

    side: str
    layer: int
    batches: list[Batch]
    post: list[torch.Tensor]
    base: list[torch.Tensor]
    calls: list[list[tuple[tuple, dict]]]
    order: list[int]


def ffn_output_layer(model: BiEncoder, names: Iterable[str]) -> int | None:
    """``l`` if ``names`` are only layer ``l``'s FFN output weight and bias of a one-tower
    model (the change then applies to queries and documents alike), else None."""
    names = set(names)
    if not names or "shared" not in model.encoders() or unsupported(model, "doc"):
        return None
    params = {id(p): n for n, p in model.named_parameters()}
    for i, layer in enumerate(layers_of(model, "doc")):
        if names <= {params[id(p)] for p in layer.output.dense.parameters()}:
            return i
    return None


@torch.no_grad()
def ffn_inputs(model: BiEncoder, texts: list[str], side: str, layer: int,
               batch_size: int = 64) -> FFNInputs:
    """One clean pass per chunk of ``texts``, keeping layer ``layer``'s FFN states."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as encode_docs
    out = FFNInputs(side, layer, [], [], [], [], order)
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize([texts[i] for i in order[start:start + batch_size]], side)
        states = clean_states(model, batch, side, lambda vectors: vectors, layers={layer})
        out.batches.append(batch)
        out.post.append(states.post[0])
        out.base.append(states.out[0] + states.attn[0])
        out.calls.append(states.calls[layer + 1:])
    return out


def select(inputs: FFNInputs, rows: list[int]) -> FFNInputs:
    """The states of texts ``rows`` (indices into the texts ``inputs`` was made from), in
    that order, one text per chunk: kept states reused, no forward pass."""
    where, start = {}, 0
    for c, post in enumerate(inputs.post):
        for r in range(post.shape[0]):
            where[inputs.order[start + r]] = (c, r)
        start += post.shape[0]
    out = FFNInputs(inputs.side, inputs.layer, [], [], [], [], list(range(len(rows))))
    for i in rows:
        c, r = where[i]
        size = inputs.post[c].shape[0]

        def one(x, c=c, r=r, size=size):
            return x[r:r + 1] if isinstance(x, torch.Tensor) and x.dim() and \
                x.shape[0] == size else x

        b = inputs.batches[c]
        out.batches.append(Batch(*(None if t is None else t[r:r + 1] for t in (
            b.input_ids, b.attention_mask, b.segments, b.token_type_ids)), side=b.side))
        out.post.append(inputs.post[c][r:r + 1])
        out.base.append(inputs.base[c][r:r + 1])
        out.calls.append([(tuple(one(a) for a in args), {k: one(v) for k, v in kw.items()})
                          for args, kw in inputs.calls[c]])
    return out


def embed_with_ffn_change(model: BiEncoder, inputs: FFNInputs,
                          change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Pooled vectors [n, dim] (float32, text order) when layer ``inputs.layer``'s FFN
    output changes by ``change(post)``; differentiable in what ``change`` depends on.
    The model must be in eval mode (dropout is the identity)."""
    layers = layers_of(model, inputs.side)
    norm = layers[inputs.layer].output.LayerNorm
    chunks = []
    for batch, post, base, calls in zip(inputs.batches, inputs.post, inputs.base,
                                        inputs.calls, strict=True):
        hidden = norm(base + change(post))
        for block, (args, kwargs) in zip(layers[inputs.layer + 1:], calls, strict=True):
            hidden = block(hidden, *args, **kwargs)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        chunks.append(model.pool_hidden(hidden, batch).float())
    return torch.cat(chunks)[torch.argsort(torch.tensor(inputs.order))]
