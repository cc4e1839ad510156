"""Faithfulness of token attributions: does removing the top tokens change the score?

For one attribution result and the top ``k`` share of its explained tokens (default
20%, at least one), ranked by signed score:

- **log-odds**: replace them by ``replace_with`` ([MASK]); log p' - log p (lower is better);
- **comprehensiveness**: delete them; p - p' (higher is better);
- **sufficiency**: delete every other explained token; p - p' (lower is better);
- the same two on the raw score (``*_score``), and the **rank change** of the document
  among its query's candidates after each deletion (positive = it fell).

p is the cross-encoder's probability (sigmoid or softmax), or for a bi-encoder the
softmax of ``scale`` x similarity over the document and its query's candidates (the
contrastive objective sentence-transformers models are trained with, scale 20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from irlens.attribution.result import TokenAttribution
from irlens.errors import IrlensError
from irlens.models import Batch, BiEncoder, CrossEncoder, Retriever, Segment

__all__ = ["Faithfulness", "measure_faithfulness"]


@dataclass
class Faithfulness:
    """Faithfulness metrics of one attribution (one pair, one method)."""

    method: str
    n_explained: int
    k: int
    score: float
    prob: float
    rank: int
    n_candidates: int
    log_odds: float
    comprehensiveness: float
    sufficiency: float
    comprehensiveness_score: float
    sufficiency_score: float
    rank_change_comprehensiveness: int
    rank_change_sufficiency: int


def _parts(result: TokenAttribution) -> list[tuple[str, int, int]]:
    """(side, start, end) of each sequence inside ``result.tokens``."""
    n = len(result.tokens)
    second_cls = [i for i, s in enumerate(result.segments) if s == Segment.CLS and i > 0]
    if second_cls:  # bi-encoder: query sequence, then document sequence
        return [("query", 0, second_cls[0]), ("doc", second_cls[0], n)]
    return [("pair", 0, n)]


def _batch(model: Retriever, rows: list[tuple[list[int], list[int]]], side: str | None
           ) -> Batch:
    """Pad (ids, segments) rows into a Batch; token types from segments (pairs only)."""
    width = max(len(ids) for ids, _ in rows)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    segs = torch.full((len(rows), width), Segment.PAD, dtype=torch.long)
    for r, (row_ids, row_segs) in enumerate(rows):
        ids[r, :len(row_ids)] = torch.tensor(row_ids)
        mask[r, :len(row_ids)] = 1
        segs[r, :len(row_segs)] = torch.tensor(row_segs)
    body = model._encoder_for(side if side != "pair" else None)
    tt = None
    if getattr(body.config, "type_vocab_size", 0) > 1:
        tt = torch.zeros_like(ids)
        if side == "pair":  # [CLS] q [SEP] -> 0, d [SEP] -> 1
            tt = ((segs == Segment.DOC) | (segs == Segment.END)).long()
    batch = Batch(ids, mask, segs, tt, None if side == "pair" else side)
    return batch.to(model.device)


@torch.no_grad()
def _rescore(model: Retriever, result: TokenAttribution, edits: list[tuple[set, set]],
             replace_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scores (and cross-encoder probabilities) of the input after each (drop, replace) edit."""
    ids = model.tokenizer.convert_tokens_to_ids(result.tokens)
    per_side: dict[str, torch.Tensor] = {}
    logits = None
    for side, start, end in _parts(result):
        rows = []
        for drop, replace in edits:
            keep = [i for i in range(start, end) if i not in drop]
            rows.append(([replace_id if i in replace else ids[i] for i in keep],
                         [result.segments[i] for i in keep]))
        batch = _batch(model, rows, side)
        if isinstance(model, CrossEncoder):
            logits = model.model(input_ids=batch.input_ids, **batch.model_inputs()).logits
            logits = logits.float()
        else:
            per_side[side] = model.forward_embeds(batch).float()
    if isinstance(model, CrossEncoder):
        output = result.output if result.output in ("logit", "prob") else None
        return (model.logits_to_score(logits, output).cpu(),
                model.logits_to_score(logits, "prob").cpu())
    assert isinstance(model, BiEncoder)
    return model.pair_similarity(per_side["query"], per_side["doc"]).cpu(), None


def measure_faithfulness(model: Retriever, result: TokenAttribution,
                         candidate_scores: torch.Tensor | None = None, *, top_k: float = 0.2,
                         replace_with: str = "mask", scale: float = 20.0) -> Faithfulness:
    """Log-odds, comprehensiveness, sufficiency and rank changes for one result.

    ``candidate_scores`` [C]: scores (same model, same output) of the query's other
    candidate documents, for the ranks and the bi-encoder probability.
    """
    if not 0 < top_k <= 1:
        raise IrlensError(f"top_k is a fraction of tokens in (0, 1], got {top_k}")
    replace_id = {"mask": model.tokenizer.mask_token_id,
                  "pad": model.tokenizer.pad_token_id}.get(replace_with)
    if replace_id is None:
        raise IrlensError(f"cannot replace tokens by '{replace_with}'; use mask or pad")
    explained = [i for i, w in enumerate(result.word_ids) if w >= 0 and _is_target(result, i)]
    if not explained:
        raise IrlensError("the result explains no tokens; nothing to perturb")
    k = max(1, round(top_k * len(explained)))
    top = set(sorted(explained, key=lambda i: -result.scores[i])[:k])
    rest = set(explained) - top
    edits = [(set(), set()), (set(), top), (top, set()), (rest, set())]
    scores, probs = _rescore(model, result, edits, replace_id)
    cands = (torch.empty(0) if candidate_scores is None
             else candidate_scores.float().flatten().cpu())
    if probs is None:  # bi-encoder: softmax over the document and its candidates
        if len(cands):
            logits = scale * torch.cat([scores.view(-1, 1), cands.expand(len(scores), -1)], 1)
            probs = torch.softmax(logits.double(), dim=1)[:, 0].float()
        else:
            probs = torch.full_like(scores, math.nan)
    ranks = [1 + int((cands > s).sum()) for s in scores.tolist()]
    s0, s_rep, s_del, s_keep = scores.tolist()
    p0, p_rep, p_del, p_keep = probs.tolist()
    return Faithfulness(
        method=result.method, n_explained=len(explained), k=k, score=s0, prob=p0,
        rank=ranks[0], n_candidates=len(cands),
        log_odds=math.log(max(p_rep, 1e-30)) - math.log(max(p0, 1e-30)),
        comprehensiveness=p0 - p_del, sufficiency=p0 - p_keep,
        comprehensiveness_score=s0 - s_del, sufficiency_score=s0 - s_keep,
        rank_change_comprehensiveness=ranks[2] - ranks[0],
        rank_change_sufficiency=ranks[3] - ranks[0])


def _is_target(result: TokenAttribution, i: int) -> bool:
    """Whether token ``i`` belongs to a segment the method explained."""
    target = result.parameters.get("target", "both")
    seg = result.segments[i]
    return (seg == Segment.QUERY and target in ("query", "both")) or \
        (seg == Segment.DOC and target in ("doc", "both"))
