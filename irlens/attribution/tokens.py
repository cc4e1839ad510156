"""Display data of attributed pairs: tokens, segments, word index and text offsets."""

from __future__ import annotations

from dataclasses import dataclass

from irlens.errors import IrlensError
from irlens.models import Batch, CrossEncoder, Retriever
from irlens.paths import Problem

__all__ = ["PairTokens", "pair_tokens"]


@dataclass
class PairTokens:
    """Display data of one pair: tokens, segments, word index and text offsets."""

    query: str
    doc: str
    tokens: list[str]
    segments: list[int]
    word_ids: list[int]
    offsets: list[tuple[int, int]]
    n_query_side: int = 0  # bi-encoder: tokens of the query sequence (they come first)


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
            word_ids.append(-1 if word is None else keys.setdefault((seq, word), len(keys)))
        offsets = [tuple(o) for o in enc["offset_mapping"][i]]
        out.append((model.tokenizer.convert_ids_to_tokens(ids), word_ids, offsets))
    return out


def pair_tokens(problem: Problem) -> list[PairTokens]:
    """Each pair's display data (bi-encoders: query sequence, then document sequence)."""
    model, texts = problem.model, problem.texts
    if isinstance(model, CrossEncoder):
        batch = problem.streams[0].batch
        info = _token_info(model, texts["query"], texts["doc"], batch)
        return [PairTokens(texts["query"][i], texts["doc"][i], tok,
                           batch.segments[i, :len(tok)].tolist(), w, off)
                for i, (tok, w, off) in enumerate(info)]
    batches = {s.side: s.batch for s in problem.streams}
    for side in ("query", "doc"):
        batches.setdefault(side, problem.fixed_batch)
    infos = {side: _token_info(model, texts[side], None, batches[side])
             for side in ("query", "doc")}
    pairs = []
    for i in range(len(texts["query"])):
        qt, qw, qo = infos["query"][i]
        dt, dw, do = infos["doc"][i]
        n_q_words = max(qw) + 1
        pairs.append(PairTokens(
            texts["query"][i], texts["doc"][i], qt + dt,
            batches["query"].segments[i, :len(qt)].tolist()
            + batches["doc"].segments[i, :len(dt)].tolist(),
            qw + [w + n_q_words if w >= 0 else -1 for w in dw], qo + do, len(qt)))
    return pairs
