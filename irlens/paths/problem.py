"""What a path runs on: token streams, their baselines, and the scalar ``F``.

A :class:`Stream` is one tokenised sequence per pair (the ``[CLS] q [SEP] d [SEP]``
sequence of a cross-encoder, or one side of a bi-encoder) with the tensors that move
along a path: its word embeddings (``x`` -> baseline ``x0``), and optionally the
activations of hooked layers (``acts[j]``, see :meth:`Problem.add_points`). A
:class:`Problem` is the streams plus ``F``, one scalar per row: a cross-encoder's logit
or probability, or a bi-encoder's similarity with the fixed side's vector encoded once.

Prompt prefixes (``model.query_prefix``/``doc_prefix``, e.g. ``"query: "``) get their own
segment (:attr:`Segment.PREFIX`) and never move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from irlens._warn import warn
from irlens.errors import IrlensError
from irlens.models import Batch, BiEncoder, CrossEncoder, Retriever, Segment
from irlens.paths.baselines import Baseline

__all__ = ["TARGETS", "Problem", "Stream", "build_problem", "cut_text", "encode_side",
           "prepare_texts", "split_sides"]

TARGETS = ("doc", "query", "both")


@dataclass
class Stream:
    """One sequence per pair: ids [P, T], real and baseline word embeddings [P, T, H].

    ``acts[j]`` holds (real, baseline) activations [P, T, U] of ``Problem.points[j]``.
    """

    side: str  # "pair" (cross-encoder), "query" or "doc" (bi-encoder)
    batch: Batch
    x: torch.Tensor
    x0: torch.Tensor
    moves: torch.Tensor  # bool [P, T]: the explained tokens
    lengths: torch.Tensor  # [P] real tokens per pair
    acts: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def hook_side(self) -> str | None:
        """The ``side`` argument of :mod:`irlens.hooks` for this stream's passes."""
        return None if self.side == "pair" else self.side

    def rows(self, pair: torch.Tensor, n_tokens: int) -> Batch:
        """The batch of ``pair``'s rows, cut to ``n_tokens`` columns."""
        b = self.batch
        tt = None if b.token_type_ids is None else b.token_type_ids[pair, :n_tokens]
        return Batch(b.input_ids[pair, :n_tokens], b.attention_mask[pair, :n_tokens],
                     b.segments[pair, :n_tokens], tt, b.side)


@dataclass
class Problem:
    """Streams whose tensors move, and ``F`` (one scalar per row)."""

    model: Retriever
    streams: list[Stream]
    output: str
    fixed: torch.Tensor | None = None  # bi-encoder, one side explained: the other's vectors
    fixed_batch: Batch | None = None  # ... and its tokens
    texts: dict[str, list[str]] = field(default_factory=dict)  # per stream side, as seen
    truncated: list[bool] = field(default_factory=list)  # per pair: cut to max_length
    points: list[str] = field(default_factory=list)  # hooked layers that can move

    @property
    def n_pairs(self) -> int:
        return self.streams[0].x.shape[0]

    def forward(self, embeds: list[torch.Tensor], pair: torch.Tensor,
                n_tokens: list[int]) -> torch.Tensor:
        """F for rows of ``pair`` whose word embeddings are ``embeds`` (one per stream)."""
        model = self.model
        if isinstance(model, CrossEncoder):
            stream = self.streams[0]
            return model.forward_embeds(stream.rows(pair, n_tokens[0]), embeds[0],
                                        output=self.output)
        assert isinstance(model, BiEncoder)
        vectors = {s.side: model.forward_embeds(s.rows(pair, t), e).float()
                   for s, e, t in zip(self.streams, embeds, n_tokens, strict=True)}
        for side in ("query", "doc"):
            if side not in vectors:
                vectors[side] = self.fixed[pair]
        return model.pair_similarity(vectors["query"], vectors["doc"])

    def add_points(self, points: list[str], baseline: str = "zero",
                   memory_budget: str | int | None = "1GB") -> None:
        """Record real and baseline activations of hooked layers ``points`` (token-major
        hooks: ``embeddings``, ``layer.{i}.ffn.pre|post|out``, ``layer.{i}.resid``) so
        that rows with ``layer=j`` scale ``points[j]`` from its baseline to its value.

        ``baseline="zero"`` scales from 0 (Dai et al. 2022); ``"input"`` from the
        activation at the word-embedding baseline ``x0``. Only explained positions move.
        """
        from irlens.hooks import hook_points
        from irlens.paths.engine import Engine, Rows

        if baseline not in ("zero", "input"):
            raise IrlensError(f"unknown activation baseline '{baseline}'; use zero or input")
        known = hook_points(self.model, self.streams[0].hook_side)
        for name in points:
            if name not in known:
                raise IrlensError(f"unknown hook point '{name}'; see irlens.hooks.hook_points")
            if known[name].kind == "attn.probs":
                raise IrlensError(f"'{name}' is not token-major; activation paths move "
                                  "embeddings, ffn or resid points")
        start = len(self.points)
        self.points = self.points + list(points)
        n = self.n_pairs
        engine = Engine(self, memory_budget)
        real = engine.activations(Rows.ends(n, 1.0), points)
        base = engine.activations(Rows.ends(n, 0.0), points) if baseline == "input" else None
        for k, stream in enumerate(self.streams):
            keep = ~stream.moves.unsqueeze(-1)
            for j in range(len(points)):
                h = real[j][k]
                h0 = torch.zeros_like(h) if base is None else base[j][k]
                stream.acts[start + j] = (h, torch.where(keep, h, h0))


def prepare_texts(model: Retriever, queries: list[str] | str, docs: list[str] | str,
                  max_doc_tokens: int | None) -> tuple[list[str], list[str], list[bool]]:
    """Check texts (a bare string is one pair), cut documents to ``max_doc_tokens`` word
    pieces; say which were cut."""
    queries = [queries] if isinstance(queries, str) else list(queries)
    docs = [docs] if isinstance(docs, str) else list(docs)
    if len(queries) != len(docs):
        raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
    if not queries:
        raise IrlensError("no pairs to attribute; pass at least one query and document")
    for what, texts in (("query", queries), ("document", docs)):
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise IrlensError(f"empty {what} (pair {i}); attribution needs text on "
                                  "both sides")
    cut = [False] * len(docs)
    if max_doc_tokens is not None:
        for i, doc in enumerate(docs):
            docs[i] = cut_text(model.tokenizer, doc, max_doc_tokens)
            cut[i] = docs[i] != doc
    return queries, docs, cut


def cut_text(tokenizer, text: str, max_tokens: int) -> str:
    """``text`` cut after its ``max_tokens``-th word piece (original characters kept)."""
    if max_tokens < 1:
        raise IrlensError(f"max_doc_tokens must be >= 1, got {max_tokens}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return text
    return text[:enc["offset_mapping"][max_tokens - 1][1]]


def _lengths_over(model: Retriever, first: list[str], second: list[str] | None) -> list[int]:
    enc = model.tokenizer(first, second, truncation=False, verbose=False)
    return [len(ids) for ids in enc["input_ids"]]


def _warn_model_length(model: Retriever, n_long: int, total: int, what: str) -> None:
    if n_long:
        warn(f"{n_long} of {total} {what} longer than the model's {model.max_length} "
             f"tokens; truncated to {model.max_length} (see `truncated` in results)")


def _mark_prefix(model: Retriever, batch: Batch, texts: list[str], prefix: str) -> Batch:
    """Label the tokens of ``prefix`` (at the start of every text) :attr:`Segment.PREFIX`."""
    if not prefix:
        return batch
    enc = model.tokenizer(texts, truncation=True, max_length=model.max_length,
                          return_offsets_mapping=True)
    segments = batch.segments.clone()
    for i, offsets in enumerate(enc["offset_mapping"]):
        for t, (start, end) in enumerate(offsets):
            if end > start and start < len(prefix) and t < segments.shape[1] \
                    and segments[i, t] >= 0:
                segments[i, t] = Segment.PREFIX
    return Batch(batch.input_ids, batch.attention_mask, segments, batch.token_type_ids,
                 batch.side)


def _stream(model: Retriever, batch: Batch, side: str, moves: torch.Tensor,
            baseline: Baseline, emb_side: str | None) -> Stream:
    table = model.word_embeddings(emb_side)
    with torch.no_grad():
        x = table(batch.input_ids).detach()
    x0 = baseline.embeddings(table, model.tokenizer, batch.input_ids, moves, x)
    return Stream(side, batch, x, x0, moves, batch.attention_mask.sum(1))


def build_problem(model: Retriever, queries: list[str], docs: list[str], target: str,
                  baseline: Baseline | str, output: str,
                  memory_budget: str | int | None = "1GB") -> Problem:
    """The problem to integrate for pairs ``(queries[i], docs[i])``.

    ``target`` names the segments that move (special tokens, prefixes, padding and the
    other segment keep their real embeddings). For a bi-encoder it also picks the
    passes: ``doc`` moves the document pass with the query vector fixed (encoded once),
    ``query`` the reverse, ``both`` the two passes together (two streams). The fixed
    side is encoded in chunks under ``memory_budget``.
    """
    if target not in TARGETS:
        raise IrlensError(f"unknown target '{target}'; use {', '.join(TARGETS)}")
    baseline = Baseline.parse(baseline)
    if isinstance(model, CrossEncoder):
        moving = {"doc": [Segment.DOC], "query": [Segment.QUERY],
                  "both": [Segment.QUERY, Segment.DOC]}[target]
        long = [n > model.max_length for n in _lengths_over(model, queries, docs)]
        try:
            batch = model.tokenize(queries, docs)
        except Exception as err:  # tokenizers raises a bare Exception: the query cannot fit
            raise IrlensError(f"a query is too long for the model's {model.max_length} "
                              f"tokens; shorten it ({err})") from None
        _warn_model_length(model, sum(long), len(docs), "query-document pairs were")
        moves = torch.isin(batch.segments, torch.tensor(moving, device=batch.segments.device))
        stream = _stream(model, batch, "pair", moves, baseline, None)
        return Problem(model, [stream], output, texts={"query": queries, "doc": docs},
                       truncated=long)
    if not isinstance(model, BiEncoder):
        raise IrlensError(f"paths need an irlens BiEncoder or CrossEncoder, got "
                          f"{type(model).__name__}; load one with irlens.load_model")
    prefixes = {"query": model.query_prefix, "doc": model.doc_prefix}
    texts = {"query": [prefixes["query"] + q for q in queries],
             "doc": [prefixes["doc"] + d for d in docs]}
    streams, long = {}, [False] * len(queries)
    for side in ("query", "doc"):
        lengths = _lengths_over(model, texts[side], None)
        side_long = [n > model.max_length for n in lengths]
        long = [a or b for a, b in zip(long, side_long, strict=True)]
        _warn_model_length(model, sum(side_long), len(lengths),
                           "queries were" if side == "query" else "documents were")
        batch = model.tokenize(queries if side == "query" else docs, side)
        batch = _mark_prefix(model, batch, texts[side], prefixes[side])
        seg = Segment.QUERY if side == "query" else Segment.DOC
        moves = batch.segments == seg
        if target not in (side, "both"):
            moves = torch.zeros_like(moves)
        streams[side] = _stream(model, batch, side, moves, baseline, side)
    if target == "both":
        return Problem(model, [streams["query"], streams["doc"]], output, texts=texts,
                       truncated=long)
    fixed_side = "query" if target == "doc" else "doc"
    fixed = _fixed_vectors(model, streams[fixed_side], output, memory_budget)
    return Problem(model, [streams[target]], output, fixed=fixed,
                   fixed_batch=streams[fixed_side].batch, texts=texts, truncated=long)


def _fixed_vectors(model: BiEncoder, stream: Stream, output: str,
                   memory_budget: str | int | None) -> torch.Tensor:
    """The vectors of a side that stays at its input, encoded under ``memory_budget``."""
    if memory_budget is None:
        return encode_side(model, stream.batch)
    from irlens.paths.engine import Engine

    probe = Problem(model, [stream], output, fixed=torch.zeros(len(stream.batch), 1))
    return encode_side(model, stream.batch, 4 * Engine(probe, memory_budget).tokens_per_forward)


@torch.no_grad()
def encode_side(model: BiEncoder, batch: Batch, max_tokens: int | None = None,
                rows: int = 64) -> torch.Tensor:
    """Vectors [P, dim] of a whole side: at most ``rows`` sequences and ``max_tokens``
    row-tokens per forward."""
    parts = []
    lengths = batch.attention_mask.sum(1).tolist()
    start = 0
    while start < len(batch):
        end = min(start + rows, len(batch))
        if max_tokens is not None:
            while end - start > 1 and max(lengths[start:end]) * (end - start) > max_tokens:
                end -= 1
        pick = torch.arange(start, end, device=batch.input_ids.device)
        start = end
        width = int(batch.attention_mask[pick].sum(1).max())
        tt = None if batch.token_type_ids is None else batch.token_type_ids[pick, :width]
        part = Batch(batch.input_ids[pick, :width], batch.attention_mask[pick, :width],
                     batch.segments[pick, :width], tt, batch.side)
        parts.append(model.forward_embeds(part).float())
    return torch.cat(parts)


def split_sides(problem: Problem, memory_budget: str | int | None = "1GB") -> list[Problem]:
    """A joint bi-encoder problem as two one-side problems (other side fixed at its input,
    encoded under ``memory_budget``)."""
    if len(problem.streams) == 1:
        return [problem]
    model = problem.model
    vectors = {s.side: _fixed_vectors(model, s, problem.output, memory_budget)
               for s in problem.streams}
    other = {s.side: s.batch for s in problem.streams}
    return [Problem(model, [s], problem.output,
                    fixed=vectors["doc" if s.side == "query" else "query"],
                    fixed_batch=other["doc" if s.side == "query" else "query"],
                    texts=problem.texts, truncated=problem.truncated, points=problem.points)
            for s in problem.streams]
