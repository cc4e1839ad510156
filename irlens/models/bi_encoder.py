"""Bi-encoders: query and document encoded separately, scored by dot or cosine."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from irlens.errors import IrlensError
from irlens.models._base import Batch, Pooling, Retriever, Side, Similarity, _check_texts, _tokenize

__all__ = ["BiEncoder"]


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class BiEncoder(Retriever):
    """Query and document encoded separately; score = dot or cosine of pooled vectors.

    One shared encoder (sentence-transformers) or two (DPR: ``query_encoder`` and
    ``doc_encoder``).
    """

    def __init__(self, model_id: str, doc_encoder: nn.Module, tokenizer, max_length: int,
                 pooling: Pooling = "mean", normalize: bool = False,
                 similarity: Similarity = "cosine", query_encoder: nn.Module | None = None,
                 query_prefix: str = "", doc_prefix: str = ""):
        super().__init__(model_id, tokenizer, max_length)
        if pooling not in ("cls", "mean"):
            raise IrlensError(f"unknown pooling '{pooling}'; use cls or mean")
        if similarity not in ("dot", "cosine"):
            raise IrlensError(f"unknown similarity '{similarity}'; use dot or cosine")
        self.doc_encoder = doc_encoder
        self.query_encoder = query_encoder if query_encoder is not None else doc_encoder
        self.pooling: Pooling = pooling
        self.normalize = normalize
        self.similarity_name: Similarity = similarity
        self.query_prefix = query_prefix
        self.doc_prefix = doc_prefix

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length,
                           "pooling": self.pooling, "normalize": self.normalize,
                           "similarity": self.similarity_name,
                           "prefixes": [self.query_prefix, self.doc_prefix]})

    def encoders(self) -> dict[str, nn.Module]:
        if self.query_encoder is self.doc_encoder:
            return {"shared": self.doc_encoder}
        return {"query": self.query_encoder, "doc": self.doc_encoder}

    def tokenize(self, texts: list[str], side: Side) -> Batch:
        """Tokenise texts of one side (prefix added, truncated to ``max_length``)."""
        _check_texts(texts, "queries" if side == "query" else "documents")
        prefix = self.query_prefix if side == "query" else self.doc_prefix
        texts = [prefix + t for t in texts]
        return _tokenize(self.tokenizer, texts, None, self.max_length, side, self.device,
                         self._token_types(side))

    def forward_embeds(self, batch: Batch, inputs_embeds: torch.Tensor | None = None,
                       ) -> torch.Tensor:
        """Pooled (and maybe normalised) vectors [batch, dim] from ids or word embeddings."""
        encoder = self._encoder_for(batch.side)
        self.current_batch = batch
        try:
            if inputs_embeds is None:
                out = encoder(input_ids=batch.input_ids, **batch.model_inputs())
            else:
                out = encoder(inputs_embeds=inputs_embeds, **batch.model_inputs())
        finally:
            self.current_batch = None
        pooled = _pool(out.last_hidden_state, batch.attention_mask, self.pooling)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def embed(self, texts: list[str], side: Side) -> torch.Tensor:
        """Differentiable vectors for texts of one side, in one batch."""
        batch = self.tokenize(texts, side)
        return self.forward_embeds(batch).float()

    def pair_similarity(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Row-wise similarity of paired vectors [n, dim] x [n, dim] -> [n]."""
        if self.similarity_name == "cosine":
            return F.cosine_similarity(q, d, dim=-1)
        return (q * d).sum(-1)

    def similarity(self, queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """All-pairs similarity [n, dim] x [m, dim] -> [n, m]."""
        if self.similarity_name == "cosine":
            queries = F.normalize(queries, dim=-1)
            docs = F.normalize(docs, dim=-1)
        return queries @ docs.T

    def score(self, queries: list[str], docs: list[str]) -> torch.Tensor:
        """Differentiable similarity of each (query, doc) pair -> [n]."""
        if len(queries) != len(docs):
            raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
        return self.pair_similarity(self.embed(queries, "query"), self.embed(docs, "doc"))

    @torch.no_grad()
    def _encode(self, texts: list[str], side: Side, batch_size: int, progress: bool
                ) -> torch.Tensor:
        what = "queries" if side == "query" else "documents"
        _check_texts(texts, what)
        prefix = self.query_prefix if side == "query" else self.doc_prefix
        self._warn_truncated(self._count_truncated([prefix + t for t in texts]), len(texts), what)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self._dim(), dtype=torch.float32)
        from tqdm.auto import tqdm

        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=f"encode {what}", disable=not progress, unit="batch"):
            idx = order[start:start + batch_size]
            vectors = self.embed([texts[i] for i in idx], side)
            out[idx] = vectors.float().cpu()
        return out

    def encode_queries(self, texts: list[str], batch_size: int = 64, progress: bool = False
                       ) -> torch.Tensor:
        """Query vectors [n, dim] (float32, CPU, no grad)."""
        return self._encode(texts, "query", batch_size, progress)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False
                    ) -> torch.Tensor:
        """Document vectors [n, dim] (float32, CPU, no grad); longest first to save padding."""
        return self._encode(texts, "doc", batch_size, progress)

    def _dim(self) -> int:
        return self.doc_encoder.config.hidden_size


