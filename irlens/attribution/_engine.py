"""Batched path evaluation: many (pair, alpha, token) rows per forward, one backward per chunk.

A row is one point on one path: pair ``p``, interpolation ``alpha`` and either every
explained token moving (``token = -1``: Integrated Gradients) or one token moving with
every other token at its real embedding (``token = i``: Sequential IG). Rows of
several pairs, steps and tokens share a forward pass; the rows are cut into chunks of
at most ``tokens_per_forward`` (rows x tokens), derived from a memory budget by
measuring, on one row, the bytes autograd saves per token.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from irlens.attribution._inputs import Problem
from irlens.errors import IrlensError

__all__ = ["Engine", "Rows", "frozen", "parse_memory"]

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
    per chunk hands it back at a cost of milliseconds; fixing the mmap threshold
    instead (one mmap per large tensor) cost 12-40% speed in the benchmarks.
    """
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return lambda: None
    return lambda: trim(0) and None


_trim = _trimmer() if sys.platform.startswith("linux") else (lambda: None)


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
    """Path points: pair index, alpha, quadrature weight, moving token (-1 = all)."""

    pair: torch.Tensor
    alpha: torch.Tensor
    weight: torch.Tensor
    token: torch.Tensor

    @classmethod
    def make(cls, pair, alpha, weight, token) -> Rows:
        as_long = lambda v: torch.as_tensor(v, dtype=torch.long).flatten()  # noqa: E731
        as_float = lambda v: torch.as_tensor(v, dtype=torch.float32).flatten()  # noqa: E731
        return cls(as_long(pair), as_float(alpha), as_float(weight), as_long(token))

    @classmethod
    def paths(cls, n_pairs: int, alphas: torch.Tensor, weights: torch.Tensor) -> Rows:
        """IG: every pair at every alpha (pair-major)."""
        n = len(alphas)
        return cls.make(torch.arange(n_pairs).repeat_interleave(n), alphas.repeat(n_pairs),
                        weights.repeat(n_pairs), torch.full((n_pairs * n,), -1))

    @classmethod
    def per_token(cls, moves: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor
                  ) -> Rows:
        """SIG: every explained token of every pair at every alpha."""
        pair, token = moves.nonzero(as_tuple=True)
        n = len(alphas)
        return cls.make(pair.cpu().repeat_interleave(n), alphas.repeat(len(pair)),
                        weights.repeat(len(pair)), token.cpu().repeat_interleave(n))

    @classmethod
    def ends(cls, n_pairs: int, alpha: float) -> Rows:
        """One row per pair at ``alpha`` (1 = the input, 0 = the baseline)."""
        return cls.make(torch.arange(n_pairs), torch.full((n_pairs,), alpha),
                        torch.ones(n_pairs), torch.full((n_pairs,), -1))

    def __len__(self) -> int:
        return len(self.pair)


class Engine:
    """Runs rows of one :class:`Problem` in memory-bounded chunks."""

    def __init__(self, problem: Problem, memory_budget: str | int | None = "1GB",
                 max_tokens: int | None = None):
        if max_tokens is not None and max_tokens < 1:
            raise IrlensError(f"max_tokens must be >= 1 (rows x tokens per forward), "
                              f"got {max_tokens}")
        self.problem = problem
        self.device = problem.streams[0].x.device
        self.row_tokens = sum(s.lengths for s in problem.streams).cpu()
        limit = max_tokens if max_tokens is not None else 2**62
        if memory_budget is not None:
            budget = parse_memory(memory_budget)
            limit = min(limit, int(budget / self.bytes_per_token()))
        self.tokens_per_forward = max(limit, 1)
        self.n_forwards = 0

    def bytes_per_token(self) -> float:
        """Estimated peak bytes per row-token of a forward+backward (measured on one row)."""
        longest = int(torch.argmax(self.row_tokens))
        rows = Rows.make([longest], [0.5], [1.0], [-1])
        params = {p.untyped_storage().data_ptr() for p in self.problem.model.parameters()}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with frozen(self.problem.model), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            embeds, n_tokens = self._embeds(rows, torch.arange(1))
            for e in embeds:
                e.requires_grad_(True)
            self.problem.forward(embeds, rows.pair.to(self.device), n_tokens)
        per_row = sum(saved.values()) * _SAFETY
        x = self.problem.streams[0].x
        per_row += 6 * x.shape[-1] * x.element_size() * int(self.row_tokens[longest])
        return per_row / int(self.row_tokens[longest])

    # -- chunking -----------------------------------------------------------------------
    def _chunks(self, rows: Rows, factor: int = 1) -> Iterator[torch.Tensor]:
        """Row indices per forward: longest first, at most ``tokens_per_forward`` padded
        tokens, and at most ``_MAX_PADDING`` of them padding (rows of shorter pairs
        start a new chunk instead)."""
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

    def _embeds(self, rows: Rows, idx: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
        dev = self.device
        pair = rows.pair[idx].to(dev)
        token = rows.token[idx].to(dev)
        out, n_tokens = [], []
        for stream in self.problem.streams:
            t = int(stream.lengths[pair].max())
            x, x0 = stream.x[pair, :t], stream.x0[pair, :t]
            alpha = rows.alpha[idx].to(dev, x.dtype)
            whole = token < 0
            if bool(whole.all()):
                e = x0 + alpha.view(-1, 1, 1) * (x - x0)
            else:
                if len(self.problem.streams) != 1:
                    raise IrlensError("per-token paths need a one-stream problem")
                e = x.clone()
                if bool(whole.any()):
                    a = alpha[whole].view(-1, 1, 1)
                    e[whole] = x0[whole] + a * (x[whole] - x0[whole])
                r = (~whole).nonzero().flatten()
                tok = token[r]
                e[r, tok] = x0[r, tok] + alpha[r].view(-1, 1) * (x[r, tok] - x0[r, tok])
            out.append(e)
            n_tokens.append(t)
        return out, n_tokens

    # -- the two passes -----------------------------------------------------------------
    def gradients(self, rows: Rows) -> list[torch.Tensor]:
        """Sum over rows of weight x dF/d(embeddings), per stream [P, T, H] (float32).

        IG rows add their whole gradient to their pair; per-token rows add only the
        gradient at their moving token.
        """
        acc = [torch.zeros(s.x.shape, dtype=torch.float32, device=self.device)
               for s in self.problem.streams]
        model = self.problem.model
        with frozen(model), torch.enable_grad():
            for idx in self._chunks(rows):
                embeds, n_tokens = self._embeds(rows, idx)
                for e in embeds:
                    e.requires_grad_(True)
                pair = rows.pair[idx].to(self.device)
                out = self.problem.forward(embeds, pair, n_tokens)
                grads = torch.autograd.grad(out.sum(), embeds)
                self.n_forwards += 1
                weight = rows.weight[idx].to(self.device)
                token = rows.token[idx].to(self.device)
                whole = token < 0
                for k, g in enumerate(grads):
                    g = g.float()
                    if bool(whole.any()):
                        wg = g[whole] * weight[whole].view(-1, 1, 1)
                        acc[k][:, :n_tokens[k]].index_add_(0, pair[whole], wg)
                    if not bool(whole.all()):
                        r = (~whole).nonzero().flatten()
                        vals = g[r, token[r]] * weight[r].view(-1, 1)
                        acc[k].index_put_((pair[r], token[r]), vals, accumulate=True)
                del embeds, out, grads
                if self.device.type == "cpu":
                    _trim()
        return acc

    @torch.no_grad()
    def values(self, rows: Rows) -> torch.Tensor:
        """F at every row [R] (float32, no grad), in the rows' order."""
        out = torch.empty(len(rows), dtype=torch.float32)
        for idx in self._chunks(rows, factor=4):
            embeds, n_tokens = self._embeds(rows, idx)
            pair = rows.pair[idx].to(self.device)
            out[idx] = self.problem.forward(embeds, pair, n_tokens).float().cpu()
        return out
