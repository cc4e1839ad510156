"""Named hook points, the same for every supported architecture.

Names and shapes (B = batch, T = tokens, H = hidden size, I = FFN size, A = heads):

=========================  ==============  ===============================================
``embeddings``             [B, T, H]       embedding block output (word+pos+type+LN), layer 0 input
``layer.{i}.attn.probs``   [B, A, T, T]    attention probabilities after softmax, per head
``layer.{i}.ffn.pre``      [B, T, I]       FFN intermediate dense output, before activation
``layer.{i}.ffn.post``     [B, T, I]       ... after the activation (the "neurons")
``layer.{i}.ffn.out``      [B, T, H]       FFN output projection, before residual and norm
``layer.{i}.resid``        [B, T, H]       the residual stream after layer i
=========================  ==============  ===============================================

Hooks are temporary: :func:`capture`, :func:`intervene` and :func:`ablate` are context
managers that remove every hook on exit, exceptions included. Attention probabilities
exist only in eager attention, so while an ``attn.probs`` point is hooked the model runs
irlens's eager attention (a copy of Hugging Face's, with a probe on the probabilities)
and returns to its own implementation on exit.

For bi-encoders with one shared encoder, ``side="query"`` or ``side="doc"`` limits a
hook to passes over that side; with two encoders (DPR) it picks the encoder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from irlens._families import family_of
from irlens.errors import IrlensError
from irlens.models import UNCACHEABLE, Batch, Retriever, Segment

__all__ = [
    "UNCACHEABLE",
    "ActivationCache",
    "HookContext",
    "HookPoint",
    "ablate",
    "attention_probes",
    "capture",
    "family_of",
    "hook_points",
    "intervene",
    "resolve_names",
]

_PROBE_ATTR = "irlens_probs"
_ATTN_IMPL = "irlens_eager"


@dataclass(frozen=True)
class HookPoint:
    """One named place inside an encoder."""

    name: str
    module: nn.Module
    kind: str  # embeddings | attn.probs | attn.heads | ffn.pre | ffn.post | ffn.out | resid
    layer: int | None
    units: int  # size of the unit axis (heads for attn.probs, last dim otherwise)
    shape: str

    @property
    def unit_dim(self) -> int:
        return 1 if self.kind == "attn.probs" else -1


@dataclass
class HookContext:
    """What an intervention function sees besides the activation."""

    point: HookPoint
    batch: Batch | None


def _body(model: Retriever | nn.Module, side: str | None) -> nn.Module:
    if isinstance(model, Retriever):
        return model._encoder_for(side)
    return getattr(model, "base_model", model)


def hook_points(model: Retriever | nn.Module, side: str | None = None) -> dict[str, HookPoint]:
    """Every hook point of the model (of ``side``'s encoder for two-encoder models)."""
    body = _body(model, side)
    fam = family_of(body)
    cfg = body.config
    n_heads, n_ffn, hidden = (getattr(cfg, a) for a in (fam.n_heads, fam.ffn_size,
                                                        fam.hidden_size))
    # the residual stream entering layer 0 (ELECTRA projects its smaller embeddings first)
    emb_module = getattr(body, "embeddings_project", None) or fam.get(body, "embeddings")
    points = {"embeddings": HookPoint("embeddings", emb_module, "embeddings", None, hidden,
                                      "[B, T, H]")}
    for i, layer in enumerate(fam.layer_list(body)):
        parts = {
            "attn.probs": (layer.get_submodule(fam.attn_self), n_heads, "[B, A, T, T]"),
            # head outputs, concatenated: the input of the attention output projection
            "attn.heads": (layer.get_submodule(fam.attn_out), n_heads, "[B, T, A*D]"),
            "ffn.pre": (layer.get_submodule(fam.ffn_pre), n_ffn, "[B, T, I]"),
            "ffn.post": (layer.get_submodule(fam.ffn_post), n_ffn, "[B, T, I]"),
            "ffn.out": (layer.get_submodule(fam.ffn_out), hidden, "[B, T, H]"),
            "resid": (layer, hidden, "[B, T, H]"),
        }
        for kind, (module, units, shape) in parts.items():
            name = f"layer.{i}.{kind}"
            points[name] = HookPoint(name, module, kind, i, units, shape)
    return points


def resolve_names(model: Retriever | nn.Module, names: str | Sequence[str],
                  side: str | None = None) -> list[HookPoint]:
    """Hook points matching names or glob patterns (``layer.*.ffn.post``)."""
    points = hook_points(model, side)
    if isinstance(names, str):
        names = [names]
    chosen: list[HookPoint] = []
    for pattern in names:
        matched = [p for n, p in points.items() if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise IrlensError(
                f"unknown hook point '{pattern}'; names look like embeddings, "
                f"layer.0.attn.probs|heads, layer.0.ffn.pre|post|out, layer.0.resid "
                f"(layers 0-{sum(p.kind == 'resid' for p in points.values()) - 1}; "
                "`irlens hooks MODEL` lists them)"
            )
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


# -- attention probe ---------------------------------------------------------------------

def _eager_attention_with_probe(module, query, key, value, attention_mask, scaling=None,
                                dropout=0.0, **kwargs):
    """Hugging Face's eager attention, with the probabilities passed through a probe."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    probe = getattr(module, _PROBE_ATTR, None)
    if probe is not None:
        weights = probe(weights)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(_ATTN_IMPL, _eager_attention_with_probe)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_ATTN_IMPL, eager_mask)


_register_attention()


@contextmanager
def attention_probes(body: nn.Module) -> Iterator[None]:
    """Attach identity probes to every self-attention and run eager attention."""
    fam = family_of(body)
    attns = [layer.get_submodule(fam.attn_self) for layer in fam.layer_list(body)]
    configs = {id(m.config): m.config for m in body.modules() if hasattr(m, "config")}
    saved = {key: cfg._attn_implementation for key, cfg in configs.items()}
    added = [attn for attn in attns if _PROBE_ATTR not in attn._modules]  # nested: reuse
    try:
        for attn in added:
            attn.add_module(_PROBE_ATTR, nn.Identity())
        for cfg in configs.values():
            cfg._attn_implementation = _ATTN_IMPL
        yield
    finally:
        for key, cfg in configs.items():
            cfg._attn_implementation = saved[key]
        for attn in added:
            del attn._modules[_PROBE_ATTR]


def _probe_module(point: HookPoint) -> nn.Module:
    return getattr(point.module, _PROBE_ATTR) if point.kind == "attn.probs" else point.module


# -- the hook mechanics ------------------------------------------------------------------

def _side_ok(model: nn.Module, side: str | None) -> bool:
    """For a shared encoder, run the hook only on passes over ``side``."""
    if side is None or not isinstance(model, Retriever):
        return True
    if "shared" not in model.encoders():
        return True  # two encoders: the side already picked the module
    batch = model.current_batch
    return batch is None or batch.side == side


def _map_output(output, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    if isinstance(output, tuple):
        new = fn(output[0])
        return output if new is None else (new, *output[1:])
    new = fn(output)
    return output if new is None else new


@contextmanager
def _hooks(model: Retriever | nn.Module, names: str | Sequence[str], side: str | None,
           make_fn: Callable[[HookPoint], Callable[[torch.Tensor], torch.Tensor | None]],
           ) -> Iterator[list[HookPoint]]:
    points = resolve_names(model, names, side)
    body = _body(model, side)
    with ExitStack() as stack:
        if any(p.kind == "attn.probs" for p in points):
            stack.enter_context(attention_probes(body))
        for point in points:
            fn = make_fn(point)

            def hook(_module, _inputs, output, fn=fn):
                if not _side_ok(model, side):
                    return None
                return _map_output(output, fn)

            if point.kind == "attn.heads":  # the projection's input: a pre-hook

                def pre_hook(_module, args, fn=fn):
                    if not _side_ok(model, side):
                        return None
                    new = fn(args[0])
                    return None if new is None else (new, *args[1:])

                handle = point.module.register_forward_pre_hook(pre_hook)
            else:
                handle = _probe_module(point).register_forward_hook(hook)
            stack.callback(handle.remove)
        yield points


class ActivationCache:
    """Activations captured by :func:`capture`, one entry per forward call of a point."""

    def __init__(self) -> None:
        self._calls: dict[str, list[torch.Tensor]] = {}

    def _add(self, name: str, tensor: torch.Tensor) -> None:
        self._calls.setdefault(name, []).append(tensor)

    def calls(self, name: str) -> list[torch.Tensor]:
        """Every captured tensor of ``name``, in call order."""
        if name not in self._calls:
            raise KeyError(f"'{name}' was not captured (captured: {', '.join(self._calls)})")
        return self._calls[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        calls = self.calls(name)
        if len(calls) != 1:
            raise IrlensError(
                f"'{name}' ran {len(calls)} times (e.g. query and document passes); pass "
                "side='query' or side='doc' to capture, or read cache.calls(name)"
            )
        return calls[0]

    def grad(self, name: str) -> torch.Tensor:
        """Gradient of the last backward with respect to ``name`` (needs ``grad=True``)."""
        tensor = self[name]
        if tensor.grad is None:
            if not tensor.requires_grad:
                raise IrlensError(
                    f"no gradient for '{name}': it was captured without grad=True, or nothing "
                    "before it required grad (frozen parameters and plain token ids); capture "
                    "with grad=True and feed inputs_embeds that require grad"
                )
            raise IrlensError(f"no gradient for '{name}' yet: call backward on the output first")
        return tensor.grad

    def __contains__(self, name: object) -> bool:
        return name in self._calls

    def keys(self) -> list[str]:
        return list(self._calls)

    def __len__(self) -> int:
        return len(self._calls)


@contextmanager
def capture(model: Retriever | nn.Module, names: str | Sequence[str], *,
            side: str | None = None, grad: bool = False) -> Iterator[ActivationCache]:
    """Record activations of the named points; ``grad=True`` keeps them in the graph.

    >>> with capture(model, "layer.*.ffn.post", side="doc") as cache:
    ...     model.encode_docs(["a document"])
    >>> cache["layer.0.ffn.post"].shape  # [1, T, 1536]
    """
    if grad and not torch.is_grad_enabled():
        raise IrlensError(
            "capture(grad=True) inside torch.no_grad() or inference mode would record "
            "activations without gradients; enter it with gradients enabled (torch.enable_grad())"
        )
    cache = ActivationCache()

    def make(point: HookPoint):
        def record(t: torch.Tensor) -> None:
            if grad and not torch.is_grad_enabled():
                raise IrlensError(
                    f"capture(grad=True) saw '{point.name}' computed under torch.no_grad() "
                    "(e.g. encode_docs); run the forward with gradients (model.score, "
                    "model.forward_embeds)"
                )
            if grad and t.requires_grad:
                t.retain_grad()
                cache._add(point.name, t)
            else:
                cache._add(point.name, t.detach())
            return None

        return record

    with _hooks(model, names, side, make):
        yield cache


@contextmanager
def intervene(model: Retriever | nn.Module,
              edits: dict[str, Callable[[torch.Tensor, HookContext], torch.Tensor]], *,
              side: str | None = None, label: str | None = None) -> Iterator[list[HookPoint]]:
    """Replace activations: ``edits`` maps a name (or pattern) to ``fn(act, ctx) -> act``.

    ``label`` names the edit for caches (``model.fingerprint``): it must change whenever
    the outputs would. Without one, irlens cannot know what an arbitrary function does,
    so the model fingerprint becomes unique to this intervention and disk caches
    (:func:`irlens.retrieval.encode_corpus`) are skipped while it is in force.
    """
    with ExitStack() as stack:
        points: list[HookPoint] = []
        for names, fn in edits.items():

            def make(point: HookPoint, fn=fn):
                return lambda t: fn(t, HookContext(point, getattr(model, "current_batch", None)))

            points += stack.enter_context(_hooks(model, names, side, make))
        if isinstance(model, Retriever):
            key = (f"{label}|side={side}" if label is not None
                   else f"{UNCACHEABLE}{sorted(edits)}:{uuid.uuid4().hex}")
            model.active_edits.append(key)
            stack.callback(model.active_edits.pop)
        yield points


Positions = Sequence[int] | str | Callable[[Batch], torch.Tensor] | None


def _position_mask(positions: Positions, batch: Batch | None, n_tokens: int,
                   device: torch.device) -> torch.Tensor | None:
    """Bool [B, T] (or [T]) mask of token positions to edit; None means all."""
    if positions is None:
        return None
    if isinstance(positions, str):
        if batch is None:
            raise IrlensError("segment positions need an irlens model forward (no batch seen)")
        seg = Segment.NAMES.get(positions)
        if seg is None:
            raise IrlensError(f"unknown segment '{positions}'; use {', '.join(Segment.NAMES)}")
        return batch.segments == seg
    if callable(positions):
        return positions(batch).to(device)
    mask = torch.zeros(n_tokens, dtype=torch.bool, device=device)
    mask[[p for p in positions if p < n_tokens]] = True
    return mask


@contextmanager
def ablate(model: Retriever | nn.Module, names: str | Sequence[str], *,
           units: Sequence[int] | torch.Tensor | dict[str, Sequence[int]] | None = None,
           positions: Positions = None, how: str | Callable[[torch.Tensor], torch.Tensor] = "zero",
           values: dict[str, torch.Tensor] | None = None,
           side: str | None = None) -> Iterator[list[HookPoint]]:
    """Ablate units of the named points, at chosen token positions.

    - ``units``: indices on the unit axis (heads for ``attn.probs``), one list for every
      point or a dict per name; None = all units.
    - ``positions``: None (all), token indices, a segment name (``query``, ``doc``,
      ``cls``, ``sep``, ``end``) or ``fn(batch) -> bool [B, T]``.
    - ``how``: ``"zero"``, ``"mean"`` (needs ``values[name]``, the per-unit mean) or a
      function applied to the selected activations.
    """
    if not (callable(how) or how in ("zero", "mean")):
        raise IrlensError(f"unknown ablation '{how}'; use zero, mean or a function")

    def edit(act: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        point = ctx.point
        sel = units.get(point.name) if isinstance(units, dict) else units
        if isinstance(units, dict) and sel is None:
            return act
        unit_mask = torch.ones(point.units, dtype=torch.bool, device=act.device)
        if sel is not None:
            unit_mask = torch.zeros_like(unit_mask)
            unit_mask[torch.as_tensor(sel, dtype=torch.long, device=act.device)] = True
        if point.kind == "attn.heads":  # a head is a slice of head_dim features
            unit_mask = unit_mask.repeat_interleave(act.shape[-1] // point.units)
        tok_dim = 2 if point.kind == "attn.probs" else 1
        pos = _position_mask(positions, ctx.batch, act.shape[tok_dim], act.device)
        # broadcast masks to the activation's layout
        if point.kind == "attn.probs":  # [B, A, T, T]: units = heads, positions = rows
            m = unit_mask.view(1, -1, 1, 1)
            if pos is not None:
                m = m & (pos.view(-1, 1, pos.shape[-1], 1) if pos.dim() == 2
                         else pos.view(1, 1, -1, 1))
        else:  # [B, T, U]
            m = unit_mask.view(1, 1, -1)
            if pos is not None:
                m = m & (pos.unsqueeze(-1) if pos.dim() == 2 else pos.view(1, -1, 1))
        if how == "zero":
            replacement = torch.zeros_like(act)
        elif how == "mean":
            if not values or point.name not in values:
                raise IrlensError(f"mean ablation of '{point.name}' needs values[name]")
            mean = values[point.name].to(act.device, act.dtype)
            shape = [1] * act.dim()
            shape[point.unit_dim] = -1
            replacement = mean.view(shape).expand_as(act)
        else:
            replacement = how(act)
        return torch.where(m, replacement, act)

    names_list = [names] if isinstance(names, str) else list(names)
    label = None  # a function (how or positions) cannot be keyed: caches are skipped
    if not callable(how) and not callable(positions):
        label = "ablate:" + _digest({"names": names_list, "units": units,
                                     "positions": positions, "how": how,
                                     "values": values if how == "mean" else None})
    with intervene(model, {n: edit for n in names_list}, side=side, label=label) as pts:
        yield pts


def _digest(value: object) -> str:
    """A sha1 over everything in ``value`` that changes outputs (tensors by their bytes)."""
    digest = hashlib.sha1()

    def feed(v: object) -> None:
        if isinstance(v, torch.Tensor):  # any dtype (bfloat16 too): hash the raw bytes
            flat = v.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{v.dtype}{tuple(v.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(v, np.ndarray):
            arr = np.ascontiguousarray(v)
            digest.update(f"A{arr.dtype}{arr.shape}".encode())
            digest.update(arr.view(np.uint8).tobytes())
        elif isinstance(v, dict):
            digest.update(b"{")
            for k in sorted(v, key=str):
                feed(str(k))
                feed(v[k])
            digest.update(b"}")
        elif isinstance(v, list | tuple | range):
            digest.update(b"[")
            for item in v:
                feed(item)
            digest.update(b"]")
        else:
            digest.update(f"{type(v).__name__}:{v!r};".encode())

    feed(value)
    return digest.hexdigest()[:16]


@dataclass
class _Summary:
    name: str
    shape: str
    units: int
    module: str = field(default="")


def describe(model: Retriever | nn.Module, side: str | None = None) -> list[_Summary]:
    """One row per hook point: name, shape, unit count, the module it hooks."""
    body = _body(model, side)
    paths = {id(m): n for n, m in body.named_modules()}
    return [_Summary(p.name, p.shape, p.units, paths.get(id(p.module), "?"))
            for p in hook_points(model, side).values()]
