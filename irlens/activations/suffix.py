"""Run a BERT-family tower from one layer's FFN output, reusing a clean pass for the rest.

Scaling layer l's FFN activation (Dai et al., "Knowledge Neurons in Pretrained
Transformers", ACL 2022) changes nothing before it. One clean forward per batch keeps,
per layer, the attention output ``a_l`` (the FFN's residual input), the FFN activations
and the arguments Hugging Face passed the layer (its attention mask, built by the model
itself); a scaled row then runs only the rest of the model: ``LayerNorm(dropout(v) +
a_l)`` of layer l's ``output`` module (v = the FFN output, ``ffn.out``), the real layer
modules above it, and the model's pooling. A hook on a full forward cannot skip the
layers below l, and on a CPU arithmetic sets the time: hence this own code path.

Supported: the families whose layers hold ``attention``, ``intermediate`` (``dense``,
``intermediate_act_fn``) and ``output`` (``dense``, ``dropout``, ``LayerNorm``) modules
(BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA), as encoders, in eval mode, with no hook
attached to the tower. :func:`unsupported` says why another model is not; callers then
use the hook path (:func:`irlens.activations.scaled_activation_pass`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from torch import nn

from irlens._families import FAMILIES
from irlens.models import Batch, BiEncoder

__all__ = ["CleanStates", "clean_states", "layers_of", "run_from", "unsupported"]


def unsupported(model: BiEncoder, side: str) -> str | None:
    """None if :func:`run_from` can run ``side``'s tower, else the reason it cannot."""
    body = model._encoder_for(side)
    config = getattr(body, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES or FAMILIES[kind].ffn_post != "intermediate":
        return f"model type '{kind}' is not BERT-like"
    if getattr(config, "is_decoder", False) or getattr(config, "chunk_size_feed_forward", 0):
        return "a decoder or chunked feed-forward layer"
    for layer in FAMILIES[kind].layer_list(body):
        parts = [getattr(layer, "intermediate", None), getattr(layer, "output", None)]
        if parts[0] is None or parts[1] is None or not all(
                hasattr(parts[0], a) for a in ("dense", "intermediate_act_fn")) or not all(
                hasattr(parts[1], a) for a in ("dense", "dropout", "LayerNorm")):
            return f"layers of type {type(layer).__name__} are not BERT-like"
    if body.training:
        return "the tower is in training mode (dropout); call model.eval()"
    if any(m._forward_hooks or m._forward_pre_hooks for m in body.modules()):
        return "hooks are attached to the tower (an intervention is in force)"
    return None


@dataclass
class CleanStates:
    """One clean pass over a batch: per layer l the FFN's residual input ``attn[l]``
    ([B, T, H]), its activations ``pre[l]``/``post[l]`` ([B, T, I]) and output ``out[l]``
    ([B, T, H]), the other arguments of each layer's call, the target ``values`` ([B])
    and, if asked, ``dF/d out[l]`` and ``dF/d pre[l]`` at the clean state."""

    attn: list[torch.Tensor] = field(default_factory=list)
    pre: list[torch.Tensor] = field(default_factory=list)
    post: list[torch.Tensor] = field(default_factory=list)
    out: list[torch.Tensor] = field(default_factory=list)
    calls: list[tuple[tuple, dict]] = field(default_factory=list)
    values: torch.Tensor | None = None
    grad_out: list[torch.Tensor] = field(default_factory=list)
    grad_pre: list[torch.Tensor] = field(default_factory=list)


def layers_of(model: BiEncoder, side: str) -> nn.ModuleList:
    """The layer modules of ``side``'s tower."""
    body = model._encoder_for(side)
    return FAMILIES[body.config.model_type].layer_list(body)


def clean_states(model: BiEncoder, batch: Batch, side: str,
                 target: Callable[[torch.Tensor], torch.Tensor], *, grad: bool = False,
                 layers: Collection[int] | None = None) -> CleanStates:
    """One forward over ``batch`` that records :class:`CleanStates` (parameters must be
    frozen by the caller); ``grad=True`` adds one backward for the clean gradients.
    ``layers`` keeps the tensors of those layers only (the lists then hold just them, in
    order; ``calls`` still has every layer), so nothing else stays in memory."""
    states = CleanStates()
    blocks = layers_of(model, side)
    live: list[torch.Tensor] = []  # the recorded tensors that stay in the graph

    def keep(store: list, in_graph: bool):
        def hook(_module, _inputs, output):
            if in_graph and grad:
                if not output.requires_grad:
                    output.requires_grad_(True)
                live.append(output)
            store.append(output.detach())
        return hook

    with ExitStack() as stack:
        for i, layer in enumerate(blocks):
            handles = [layer.register_forward_pre_hook(
                lambda _m, args, kwargs: states.calls.append((args[1:], kwargs)),
                with_kwargs=True)]
            if layers is not None and i not in layers:
                stack.callback(handles[0].remove)
                continue
            handles += [
                layer.intermediate.register_forward_pre_hook(
                    lambda _m, args: states.attn.append(args[0].detach())),
                layer.intermediate.dense.register_forward_hook(keep(states.pre, True)),
                layer.intermediate.register_forward_hook(keep(states.post, False)),
                layer.output.dense.register_forward_hook(keep(states.out, True)),
            ]
            for handle in handles:
                stack.callback(handle.remove)
        with torch.enable_grad() if grad else torch.no_grad():
            values = target(model.forward_embeds(batch))
            if grad:
                grads = torch.autograd.grad(values.sum(), live)
                states.grad_pre, states.grad_out = list(grads[0::2]), list(grads[1::2])
    states.values = values.detach()
    return states


def _rows(value, rows: torch.Tensor, n: int):
    """A layer-call argument for the given rows (batch-sized tensors are indexed)."""
    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n and n > 1:
        return value[rows]
    return value


def run_from(model: BiEncoder, side: str, states: CleanStates, layer: int,
             ffn_out: torch.Tensor, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
    """Pooled vectors [R, dim] when layer ``layer``'s FFN output is ``ffn_out`` [R, T, H]
    for the clean batch's examples ``rows`` [R] (``batch``: those rows' tokens)."""
    layers = layers_of(model, side)
    n = states.attn[0].shape[0]
    output = layers[layer].output
    hidden = output.LayerNorm(output.dropout(ffn_out) + states.attn[layer][rows])
    for j in range(layer + 1, len(layers)):
        args, kwargs = states.calls[j]
        hidden = layers[j](hidden, *(_rows(a, rows, n) for a in args),
                           **{k: _rows(v, rows, n) for k, v in kwargs.items()})
        if isinstance(hidden, tuple):
            hidden = hidden[0]
    return model.pool_hidden(hidden, batch)
