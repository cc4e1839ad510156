"""Rows on paths, run in memory-bounded chunks: one forward and one backward per chunk.

A row is one point on one path: pair ``p``, interpolation ``alpha``, quadrature
``weight``, the moving token (``-1`` = every explained token, as in Integrated Gradients;
``i`` = only token ``i``, as in Sequential IG) and the moving layer (``-1`` = word
embeddings; ``j`` = the activation of ``problem.points[j]``, everything before it real).
Rows of many pairs, steps, tokens and layers share a forward pass. They are cut into
chunks of at most ``tokens_per_forward`` row-tokens, derived from one ``memory_budget``
by measuring, on one row, the bytes autograd saves per token (parameters frozen, so
only activations are saved). Each chunk calls the consumer's ``reduce(chunk)`` and is
then freed.

Own code rather than Captum: Captum runs one path per call and tiles inputs per step,
with no budget across pairs, tokens and layers; this engine packs rows of different
pairs and token paths into one forward (see ``benchmarks/attribution.py``).
"""

from __future__ import annotations

import ctypes
import re
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from irlens.errors import IrlensError
from irlens.paths.problem import Problem

__all__ = ["Chunk", "Engine", "Rows", "frozen", "parse_memory"]

# peak / saved activations: 1GB budgets peaked at 0.85-0.96GB on CPU (MiniLM, 64-256 tokens)
_SAFETY = 1.45
_MAX_PADDING = 0.2  # share of padded positions a chunk may hold
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30,
          "GB": 2**30, "T": 2**40, "TB": 2**40}


def parse_memory(spec: str | int | float) -> int:
    """``"1GB"``, ``"512MB"``, ``"2.5G"`` or a number of bytes -> bytes."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = int(spec)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", str(spec).upper())
        if not match:
            raise IrlensError(f"memory budget '{spec}' not understood; write e.g. 1GB or 512MB")
        value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise IrlensError(f"memory budget must be positive, got {spec}")
    return value


def _trimmer() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or a no-op off glibc.

    After a chunk's forward+backward, glibc keeps most freed activation memory in its
    heap, so resident memory creeps above the budget over many chunks. Trimming once
    per chunk hands it back at a cost of milliseconds.
    """
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return lambda: None
    return lambda: trim(0) and None


_trim = _trimmer() if sys.platform.startswith("linux") else (lambda: None)
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """No parameter requires grad inside (autograd then saves less); flags restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class Rows:
    """Path points: pair, alpha, quadrature weight, moving token (-1 = all explained
    tokens) and moving layer (-1 = word embeddings, j = ``problem.points[j]``)."""

    pair: torch.Tensor
    alpha: torch.Tensor
    weight: torch.Tensor
    token: torch.Tensor
    layer: torch.Tensor

    @classmethod
    def make(cls, pair, alpha, weight, token=-1, layer=-1) -> Rows:
        """Rows from sequences (or scalars, broadcast to the length of ``pair``)."""
        as_long = lambda v: torch.as_tensor(v, dtype=torch.long).flatten()  # noqa: E731
        as_float = lambda v: torch.as_tensor(v, dtype=torch.float32).flatten()  # noqa: E731
        pair = as_long(pair)

        def fill(v, conv):
            v = conv(v)
            return v.expand(len(pair)).clone() if v.numel() == 1 else v

        return cls(pair, fill(alpha, as_float), fill(weight, as_float), fill(token, as_long),
                   fill(layer, as_long))

    @classmethod
    def paths(cls, n_pairs: int, alphas: torch.Tensor, weights: torch.Tensor,
              layer: int = -1) -> Rows:
        """Integrated Gradients: every pair at every alpha (pair-major, alphas in order)."""
        n = len(alphas)
        return cls.make(torch.arange(n_pairs).repeat_interleave(n), alphas.repeat(n_pairs),
                        weights.repeat(n_pairs), -1, layer)

    @classmethod
    def per_token(cls, moves: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor,
                  layer: int = -1) -> Rows:
        """Sequential IG: every explained token of every pair at every alpha."""
        pair, token = moves.nonzero(as_tuple=True)
        n = len(alphas)
        return cls.make(pair.cpu().repeat_interleave(n), alphas.repeat(len(pair)),
                        weights.repeat(len(pair)), token.cpu().repeat_interleave(n), layer)

    @classmethod
    def ends(cls, n_pairs: int, alpha: float) -> Rows:
        """One row per pair at ``alpha`` (1 = the input, 0 = the baseline)."""
        return cls.make(torch.arange(n_pairs), alpha, 1.0)

    @classmethod
    def cat(cls, parts: Sequence[Rows]) -> Rows:
        return cls(*(torch.cat([getattr(p, f) for p in parts])
                     for f in ("pair", "alpha", "weight", "token", "layer")))

    def take(self, idx: torch.Tensor) -> Rows:
        return Rows(self.pair[idx], self.alpha[idx], self.weight[idx], self.token[idx],
                    self.layer[idx])

    def __len__(self) -> int:
        return len(self.pair)


@dataclass
class Chunk:
    """One forward (and backward) of rows ``idx``, handed to a consumer's ``reduce``.

    ``inputs[j][k]`` / ``grads[j][k]``: the moving tensor of layer ``j`` (-1 = word
    embeddings) in stream ``k`` [R, t, H] and dF/d it (None where no row moves it, or
    without grad). ``acts[name][k]`` / ``act_grads[name][k]``: captured hooks.
    """

    idx: torch.Tensor  # row indices into the Rows given to Engine.run (cpu)
    rows: Rows  # those rows (cpu)
    pair: torch.Tensor  # rows.pair on the model's device
    n_tokens: list[int]  # columns per stream
    values: torch.Tensor  # F per row [R] (detached)
    inputs: dict[int, list[torch.Tensor | None]] = field(default_factory=dict)
    grads: dict[int, list[torch.Tensor | None]] = field(default_factory=dict)
    acts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    act_grads: dict[str, list[torch.Tensor]] = field(default_factory=dict)


def _interpolate(x: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor,
                 token: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """``x`` with rows ``sel`` moved to ``x0 + alpha (x - x0)`` (all positions for
    token -1, else only position ``token``)."""
    whole = (token < 0) & sel
    if bool(whole.all()):
        return x0 + alpha.view(-1, 1, 1) * (x - x0)
    e = x.clone()
    if bool(whole.any()):
        a = alpha[whole].view(-1, 1, 1)
        e[whole] = x0[whole] + a * (x[whole] - x0[whole])
    r = ((token >= 0) & sel).nonzero().flatten()
    if len(r):
        tok = token[r]
        e[r, tok] = x0[r, tok] + alpha[r].view(-1, 1) * (x[r, tok] - x0[r, tok])
    return e


class Engine:
    """Runs rows of one :class:`Problem` in chunks under ``memory_budget``.

    Args:
        problem: from :func:`irlens.paths.build_problem`.
        memory_budget: activation memory per forward+backward chunk (``"1GB"``; model
            weights not included); ``None`` for no limit.
        capture: hook names whose activations (and gradients) each chunk hands to
            ``reduce`` (e.g. every ``layer.{i}.ffn.post`` for neuron conductance).
        progress: show a bar over rows on stderr.
    """

    def __init__(self, problem: Problem, memory_budget: str | int | None = "1GB", *,
                 capture: Sequence[str] = (), progress: bool = False, desc: str = "path"):
        self.problem = problem
        self.capture = list(capture)
        self.progress = progress
        self.desc = desc
        self.device = problem.streams[0].x.device
        self.row_tokens = sum(s.lengths for s in problem.streams).cpu()
        limit = 2**62
        if memory_budget is not None:
            budget = parse_memory(memory_budget)
            limit = int(budget / self.bytes_per_token())
        self.tokens_per_forward = max(limit, 1)
        self.n_forwards = 0

    def bytes_per_token(self) -> float:
        """Estimated peak bytes per row-token of a forward+backward (measured on one row of
        the longest pair; remembered per model, hooks and length)."""
        longest = int(torch.argmax(self.row_tokens))
        key = (tuple(self.capture), tuple(s.side for s in self.problem.streams),
               tuple(sorted(self.problem.streams[0].acts)), int(self.row_tokens[longest]),
               self.problem.streams[0].x.dtype)
        known = _MEASURED.setdefault(self.problem.model, {})
        if key not in known:
            known[key] = self._measure(longest)
        return known[key]

    def _measure(self, longest: int) -> float:
        rows = Rows.make([longest], 0.5, 1.0)
        params = {p.untyped_storage().data_ptr() for p in self.problem.model.parameters()}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with frozen(self.problem.model), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self._forward(rows, torch.arange(1), grad=True, capture=self.capture)
        per_row = sum(saved.values()) * _SAFETY
        x = self.problem.streams[0].x
        per_row += 6 * x.shape[-1] * x.element_size() * int(self.row_tokens[longest])
        return per_row / int(self.row_tokens[longest])

    # -- chunking -----------------------------------------------------------------------
    def _chunks(self, rows: Rows, factor: int = 1) -> Iterator[torch.Tensor]:
        """Row indices per forward: longest first (stable, so a pair's rows stay in
        order and contiguous), at most ``tokens_per_forward`` padded tokens, and at most
        ``_MAX_PADDING`` of them padding (rows of shorter pairs start a new chunk)."""
        row_len = self.row_tokens[rows.pair]
        order = torch.argsort(-row_len, stable=True)
        lengths = row_len[order].double()
        budget = self.tokens_per_forward * factor
        start = 0
        while start < len(order):
            width = float(lengths[start])
            end = min(len(order), start + max(1, int(budget // width)))
            real = torch.cumsum(lengths[start:end], 0)
            padded = width * torch.arange(1, end - start + 1, dtype=torch.float64)
            end = start + int((1 - real / padded <= _MAX_PADDING).sum())
            yield order[start:end]
            start = end

    def _forward(self, rows: Rows, idx: torch.Tensor, *, grad: bool,
                 capture: Sequence[str]) -> tuple[Chunk, list[torch.Tensor]]:
        """F at rows ``idx``; the chunk plus the tensors to differentiate (if ``grad``)."""
        from irlens.hooks import capture as capture_hooks
        from irlens.hooks import intervene

        dev = self.device
        sub = rows.take(idx)
        pair = sub.pair.to(dev)
        token, layer = sub.token.to(dev), sub.layer.to(dev)
        problem = self.problem
        chunk = Chunk(idx, sub, pair, [], torch.empty(0))
        embeds, targets, keys = [], [], []
        with ExitStack() as stack:
            caches = []
            for k, stream in enumerate(problem.streams):
                t = int(stream.lengths[pair].max())
                chunk.n_tokens.append(t)
                alpha = sub.alpha.to(dev, stream.x.dtype)
                for j in [-1, *sorted(stream.acts)]:
                    sel = layer == j
                    chunk.inputs.setdefault(j, []).append(None)
                    if j >= 0 and not bool(sel.any()):
                        continue
                    x, x0 = (stream.x, stream.x0) if j < 0 else stream.acts[j]
                    e = _interpolate(x[pair, :t], x0[pair, :t], alpha, token, sel) \
                        if bool(sel.any()) else x[pair, :t]
                    if grad and bool(sel.any()):
                        e.requires_grad_(True)
                        targets.append(e)
                        keys.append((j, k))
                    chunk.inputs[j][k] = e if bool(sel.any()) else None
                    if j < 0:
                        embeds.append(e)
                    else:
                        keep = sel.view(-1, 1, 1)

                        def edit(act, _ctx, e=e, keep=keep):
                            return torch.where(keep, e.to(act.dtype), act)

                        stack.enter_context(intervene(problem.model, {problem.points[j]: edit},
                                                      side=stream.hook_side,
                                                      label=f"irlens.paths:{id(self)}"))
                if capture:
                    caches.append(stack.enter_context(capture_hooks(
                        problem.model, list(capture), side=stream.hook_side, grad=grad)))
            out = problem.forward(embeds, pair, chunk.n_tokens)
        for name in capture:
            chunk.acts[name] = [cache.calls(name)[0] for cache in caches]
        chunk.values = out.detach().float()
        if grad:
            chunk.grads = {j: [None] * len(per_stream) for j, per_stream in chunk.inputs.items()}
            return chunk, [out, keys, *targets, *(t for c in chunk.acts.values() for t in c)]
        return chunk, []

    # -- passes -------------------------------------------------------------------------
    def run(self, rows: Rows, reduce: Callable[[Chunk], None], *, grad: bool = True,
            capture: Sequence[str] | None = None) -> None:
        """Forward (and, with ``grad``, one backward) per chunk of ``rows``; then
        ``reduce(chunk)``. Parameters are frozen and restored; hooks never outlive a chunk."""
        from tqdm.auto import tqdm

        capture = self.capture if capture is None else list(capture)
        bar = tqdm(total=len(rows), desc=self.desc, unit="row", disable=not self.progress,
                   leave=False)
        with frozen(self.problem.model), torch.set_grad_enabled(grad):
            for idx in self._chunks(rows, 1 if grad else 4):
                chunk, targets = self._forward(rows, idx, grad=grad, capture=capture)
                if grad:
                    out, keys, wrt = targets[0], targets[1], targets[2:]
                    grads = list(torch.autograd.grad(out.sum(), wrt))
                    for (j, k), g in zip(keys, grads, strict=False):
                        chunk.grads[j][k] = g
                    grads = grads[len(keys):]
                    for name, calls in chunk.acts.items():
                        chunk.act_grads[name] = [grads.pop(0) for _ in calls]
                    del out, wrt, targets, grads
                self.n_forwards += 1
                reduce(chunk)
                del chunk
                bar.update(len(idx))
                if self.device.type == "cpu":
                    _trim()
        bar.close()

    def gradients(self, rows: Rows) -> dict[int, list[torch.Tensor]]:
        """Sum over rows of weight x dF/d(moving tensor), per layer (-1 = word
        embeddings) and stream: [P, T, H] float32. Whole-path rows add their gradient at
        every position; per-token rows only at their token."""
        acc: dict[int, list[torch.Tensor]] = {}
        for j in sorted(set(rows.layer.tolist())):
            acc[j] = [torch.zeros((s.x if j < 0 else s.acts[j][0]).shape, dtype=torch.float32,
                                  device=self.device) for s in self.problem.streams]

        def reduce(chunk: Chunk) -> None:
            weight = chunk.rows.weight.to(self.device)
            token = chunk.rows.token.to(self.device)
            layer = chunk.rows.layer.to(self.device)
            pair = chunk.pair
            for j, per_stream in chunk.grads.items():
                for k, g in enumerate(per_stream):
                    if g is None:
                        continue
                    g = g.float()
                    whole = (token < 0) & (layer == j)
                    if bool(whole.any()):
                        wg = g[whole] * weight[whole].view(-1, 1, 1)
                        acc[j][k][:, :chunk.n_tokens[k]].index_add_(0, pair[whole], wg)
                    one = (token >= 0) & (layer == j)
                    if bool(one.any()):
                        r = one.nonzero().flatten()
                        vals = g[r, token[r]] * weight[r].view(-1, 1)
                        acc[j][k].index_put_((pair[r], token[r]), vals, accumulate=True)

        self.run(rows, reduce)
        return acc

    def values(self, rows: Rows) -> torch.Tensor:
        """F at every row [R] (float32, no grad), in the rows' order."""
        out = torch.empty(len(rows), dtype=torch.float32)

        def reduce(chunk: Chunk) -> None:
            out[chunk.idx] = chunk.values.cpu()

        self.run(rows, reduce, grad=False, capture=[])
        return out

    def activations(self, rows: Rows, points: Sequence[str]) -> list[list[torch.Tensor]]:
        """Activations of ``points`` at ``rows`` (one row per pair): ``[point][stream]``
        tensors [P, T, U] (no grad; padding positions zero)."""
        n = self.problem.n_pairs
        out: list[list[torch.Tensor]] = [[None] * len(self.problem.streams) for _ in points]

        def reduce(chunk: Chunk) -> None:
            for j, name in enumerate(points):
                for k, act in enumerate(chunk.acts[name]):
                    if out[j][k] is None:
                        shape = (n, self.problem.streams[k].x.shape[1], act.shape[-1])
                        out[j][k] = torch.zeros(shape, dtype=act.dtype, device=self.device)
                    out[j][k][chunk.pair, :chunk.n_tokens[k]] = act.detach()

        self.run(rows, reduce, grad=False, capture=list(points))
        return out
