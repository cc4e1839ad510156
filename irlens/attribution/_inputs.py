"""Turn (query, document) texts into the tensors an attribution path runs on.

A :class:`Stream` is one tokenised sequence per pair whose word embeddings move along
the path (the pair sequence of a cross-encoder, or one side of a bi-encoder); a
:class:`Problem` is the streams plus the function ``F`` that maps their embeddings to
one scalar per row. Bi-encoders explaining one side hold the other side's vector fixed,
encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irlens._warn import warn
from irlens.attribution.baselines import Baseline
from irlens.errors import IrlensError
from irlens.models import Batch, BiEncoder, CrossEncoder, Retriever, Segment

__all__ = ["PairTokens", "Problem", "Stream", "TARGETS", "build_problem", "cut_text",
           "prepare_texts", "split_sides"]

TARGETS = ("doc", "query", "both")


@dataclass
class Stream:
    """One sequence per pair: ids [P, T], real and baseline word embeddings [P, T, H]."""

    side: str  # "pair" (cross-encoder), "query" or "doc" (bi-encoder)
    batch: Batch
    x: torch.Tensor
    x0: torch.Tensor
    moves: torch.Tensor  # bool [P, T]: the explained tokens
    lengths: torch.Tensor  # [P] real tokens per pair

    def rows(self, pair: torch.Tensor, n_tokens: int) -> Batch:
        """The batch of ``pair``'s rows, cut to ``n_tokens`` columns."""
        b = self.batch
        tt = None if b.token_type_ids is None else b.token_type_ids[pair, :n_tokens]
        return Batch(b.input_ids[pair, :n_tokens], b.attention_mask[pair, :n_tokens],
                     b.segments[pair, :n_tokens], tt, b.side)


@dataclass
class Problem:
    """Streams whose embeddings move, and ``F`` (one scalar per row)."""

    model: Retriever
    streams: list[Stream]
    output: str
    fixed: torch.Tensor | None = None  # bi-encoder: the fixed side's vectors [P, dim]

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
        if "query" not in vectors:
            vectors["query"] = self.fixed[pair]
        if "doc" not in vectors:
            vectors["doc"] = self.fixed[pair]
        return model.pair_similarity(vectors["query"], vectors["doc"])


@dataclass
class PairTokens:
    """Display data of one pair: tokens, segments, word index and text offsets."""

    query: str
    doc: str
    tokens: list[str]
    segments: list[int]
    word_ids: list[int]
    offsets: list[tuple[int, int]]
    truncated: bool
    n_query_side: int = 0  # bi-encoder: tokens of the query sequence (they come first)


def prepare_texts(model: Retriever, queries: list[str] | str, docs: list[str] | str,
                  max_doc_tokens: int | None) -> tuple[list[str], list[str], list[bool]]:
    """Check texts, cut documents to ``max_doc_tokens`` word pieces; say what was cut."""
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


def _token_info(model: Retriever, first: list[str], second: list[str] | None,
                batch: Batch) -> list[tuple[list[str], list[int], list[tuple[int, int]]]]:
    """Tokens, global word index (-1 for specials) and offsets per row of ``batch``."""
    enc = model.tokenizer(first, second, truncation="only_second" if second else True,
                          max_length=model.max_length, return_offsets_mapping=True)
    out = []
    for i in range(len(first)):
        ids = enc["input_ids"][i]
        n = int(batch.attention_mask[i].sum())
        if list(batch.input_ids[i, :n].tolist()) != list(ids):
            raise IrlensError("tokenisation mismatch between model.tokenize and the tokenizer; "
                              "use a fast tokenizer")
        keys: dict[tuple[int, int], int] = {}
        word_ids = []
        for seq, word in zip(enc.sequence_ids(i), enc.word_ids(i), strict=True):
            if word is None:
                word_ids.append(-1)
            else:
                word_ids.append(keys.setdefault((seq, word), len(keys)))
        offsets = [tuple(o) for o in enc["offset_mapping"][i]]
        out.append((model.tokenizer.convert_ids_to_tokens(ids), word_ids, offsets))
    return out


def _lengths_over(model: Retriever, first: list[str], second: list[str] | None) -> list[int]:
    enc = model.tokenizer(first, second, truncation=False, verbose=False)
    return [len(ids) for ids in enc["input_ids"]]


def _warn_model_length(model: Retriever, n_long: int, total: int, what: str) -> None:
    if n_long:
        warn(f"{n_long} of {total} {what} longer than the model's {model.max_length} "
                      f"tokens; truncated to {model.max_length} (see `truncated` in results)")


def _stream(model: Retriever, batch: Batch, side: str, moves: torch.Tensor,
            baseline: Baseline, emb_side: str | None) -> Stream:
    table = model.word_embeddings(emb_side)
    with torch.no_grad():
        x = table(batch.input_ids).detach()
    x0 = baseline.embeddings(table, model.tokenizer, batch.input_ids, moves, x)
    return Stream(side, batch, x, x0, moves, batch.attention_mask.sum(1))


def build_problem(model: Retriever, queries: list[str], docs: list[str], target: str,
                  baseline: Baseline, output: str, cut: list[bool]
                  ) -> tuple[Problem, list[PairTokens]]:
    """The problem to integrate, and each pair's display data.

    For a bi-encoder and ``target="both"`` the problem has two streams (one joint path);
    :func:`split_sides` gives the per-side problems.
    """
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
        info = _token_info(model, queries, docs, batch)
        pairs = [PairTokens(queries[i], docs[i], tok, batch.segments[i, :len(tok)].tolist(),
                            w, off, cut[i] or long[i])
                 for i, (tok, w, off) in enumerate(info)]
        return Problem(model, [stream], output), pairs
    assert isinstance(model, BiEncoder)
    texts = {"query": [model.query_prefix + q for q in queries],
             "doc": [model.doc_prefix + d for d in docs]}
    streams, infos, longs = {}, {}, {}
    for side in ("query", "doc"):
        lengths = _lengths_over(model, texts[side], None)
        longs[side] = [n > model.max_length for n in lengths]
        _warn_model_length(model, sum(longs[side]), len(lengths),
                           "queries were" if side == "query" else "documents were")
        batch = model.tokenize(queries if side == "query" else docs, side)
        seg = Segment.QUERY if side == "query" else Segment.DOC
        moves = batch.segments == seg
        if target not in (side, "both"):
            moves = torch.zeros_like(moves)
        streams[side] = _stream(model, batch, side, moves, baseline, side)
        infos[side] = _token_info(model, texts[side], None, batch)
    pairs = []
    for i in range(len(queries)):
        qt, qw, qo = infos["query"][i]
        dt, dw, do = infos["doc"][i]
        n_q_words = max(qw) + 1
        pairs.append(PairTokens(
            texts["query"][i], texts["doc"][i], qt + dt,
            streams["query"].batch.segments[i, :len(qt)].tolist()
            + streams["doc"].batch.segments[i, :len(dt)].tolist(),
            qw + [w + n_q_words if w >= 0 else -1 for w in dw], qo + do,
            cut[i] or longs["query"][i] or longs["doc"][i], len(qt)))
    if target == "both":
        return Problem(model, [streams["query"], streams["doc"]], output), pairs
    fixed_side = "query" if target == "doc" else "doc"
    fixed = _encode(model, streams[fixed_side].batch)
    return Problem(model, [streams[target]], output, fixed=fixed), pairs


@torch.no_grad()
def _encode(model: BiEncoder, batch: Batch, rows: int = 64) -> torch.Tensor:
    """Vectors [P, dim] of a whole side, ``rows`` sequences per forward."""
    parts = []
    for start in range(0, len(batch), rows):
        pick = torch.arange(start, min(start + rows, len(batch)), device=batch.input_ids.device)
        width = int(batch.attention_mask[pick].sum(1).max())
        tt = None if batch.token_type_ids is None else batch.token_type_ids[pick, :width]
        part = Batch(batch.input_ids[pick, :width], batch.attention_mask[pick, :width],
                     batch.segments[pick, :width], tt, batch.side)
        parts.append(model.forward_embeds(part).float())
    return torch.cat(parts)


def split_sides(problem: Problem) -> list[Problem]:
    """A joint bi-encoder problem as two one-side problems (other side fixed at its input)."""
    if len(problem.streams) == 1:
        return [problem]
    model = problem.model
    vectors = {s.side: _encode(model, s.batch) for s in problem.streams}
    return [Problem(model, [s], problem.output, fixed=vectors["doc" if s.side == "query"
                                                              else "query"])
            for s in problem.streams]
