"""Bi-encoders: query and document encoded separately, scored by the model's similarity.

A sentence-transformers folder keeps its own modules: its ``Pooling`` module (every mode,
``include_prompt``), then any ``Dense``/``LayerNorm``/``Dropout`` after it, then
normalisation, and its similarity (cosine, dot, or negative euclidean/manhattan distance,
as ``sentence_transformers.util`` defines them).
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from irlens.errors import IrlensError
from irlens.models._base import Batch, Pooling, Retriever, Side, Similarity, _check_texts, _tokenize

__all__ = ["SIMILARITIES", "BiEncoder"]

SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")


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
                 pooling: Pooling | str = "mean", normalize: bool = False,
                 similarity: Similarity = "cosine", query_encoder: nn.Module | None = None,
                 query_prefix: str = "", doc_prefix: str = "",
                 pooler: nn.Module | None = None, head: list[nn.Module] | None = None,
                 dim: int | None = None):
        """``pooler`` is a sentence-transformers ``Pooling`` module (it then decides the
        pooling, ``pooling`` only names it); ``head`` are the modules after pooling
        (e.g. ``Dense``), applied before normalisation; ``dim`` is the output size."""
        super().__init__(model_id, tokenizer, max_length)
        if pooler is None and pooling not in ("cls", "mean"):
            raise IrlensError(f"unknown pooling '{pooling}'; use cls or mean")
        if similarity not in SIMILARITIES:
            raise IrlensError(f"unknown similarity '{similarity}'; use {', '.join(SIMILARITIES)}")
        self.doc_encoder = doc_encoder
        self.query_encoder = query_encoder if query_encoder is not None else doc_encoder
        self.pooling = pooling
        self.pooler = pooler
        self.head = nn.ModuleList(head or [])
        self.normalize = normalize
        self.similarity_name: Similarity = similarity
        self.query_prefix = query_prefix
        self.doc_prefix = doc_prefix
        self._out_dim = dim

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length,
                           "pooling": self.pooling, "normalize": self.normalize,
                           "similarity": self.similarity_name,
                           "include_prompt": self._include_prompt(),
                           "head": [type(m).__name__ for m in self.head],
                           "prefixes": [self.query_prefix, self.doc_prefix]})

    def _include_prompt(self) -> bool:
        return self.pooler is None or bool(getattr(self.pooler, "include_prompt", True))

    def _prompt_length(self, side: Side | None) -> int:
        """Tokens of the side's prefix as sentence-transformers counts them ([CLS] and the
        prompt, not a trailing [SEP]); 0 without a prefix."""
        prefix = self.query_prefix if side == "query" else self.doc_prefix
        if not prefix:
            return 0
        ids = self.tokenizer([prefix])["input_ids"][0]
        special = set(getattr(self.tokenizer, "all_special_ids", []))
        return len(ids) - (1 if ids and ids[-1] in special else 0)

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
        return self.pool_hidden(out.last_hidden_state, batch)

    def pool_hidden(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Pooled (and maybe normalised) vectors [batch, dim] from the encoder's last hidden
        states [batch, tokens, hidden]: what :meth:`forward_embeds` returns."""
        pooled = self._pool(hidden, batch)
        if len(self.head):
            features = {"sentence_embedding": pooled}
            for module in self.head:
                features = module(features)
            pooled = features["sentence_embedding"]
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def _pool(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.pooler is None:
            return _pool(hidden, batch.attention_mask, self.pooling)
        features = {"token_embeddings": hidden, "attention_mask": batch.attention_mask}
        if not self._include_prompt():
            length = self._prompt_length(batch.side)
            if length:
                features["prompt_length"] = length
        return self.pooler(features)["sentence_embedding"]

    def embed(self, texts: list[str], side: Side) -> torch.Tensor:
        """Differentiable vectors for texts of one side, in one batch."""
        batch = self.tokenize(texts, side)
        return self.forward_embeds(batch).float()

    def pair_similarity(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Row-wise similarity of paired vectors [n, dim] x [n, dim] -> [n]."""
        if self.similarity_name == "cosine":
            return F.cosine_similarity(q, d, dim=-1)
        if self.similarity_name == "euclidean":
            return -(q - d).pow(2).sum(-1).sqrt()
        if self.similarity_name == "manhattan":
            return -(q - d).abs().sum(-1)
        return (q * d).sum(-1)

    def similarity(self, queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """All-pairs similarity [n, dim] x [m, dim] -> [n, m]."""
        if self.similarity_name == "euclidean":
            return -torch.cdist(queries, docs, p=2.0)
        if self.similarity_name == "manhattan":
            return -torch.cdist(queries, docs, p=1.0)
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
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self._dim(), dtype=torch.float32)
        from tqdm.auto import tqdm

        truncated = 0
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=f"encode {what}", disable=not progress, unit="batch"):
            idx = order[start:start + batch_size]
            vectors, cut = self.encode_batch([texts[i] for i in idx], side)
            out[idx] = vectors
            truncated += cut
        self._warn_truncated(truncated, len(texts), what)
        return out

    @torch.no_grad()
    def encode_batch(self, texts: list[str], side: Side) -> tuple[torch.Tensor, int]:
        """Vectors [n, dim] (float32, CPU) of one batch, tokenised once, and how many of
        the texts were truncated to ``max_length``."""
        batch = self.tokenize(texts, side)
        return self.forward_embeds(batch).float().cpu(), batch.truncated

    def encode_queries(self, texts: list[str], batch_size: int = 64, progress: bool = False
                       ) -> torch.Tensor:
        """Query vectors [n, dim] (float32, CPU, no grad)."""
        return self._encode(texts, "query", batch_size, progress)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False
                    ) -> torch.Tensor:
        """Document vectors [n, dim] (float32, CPU, no grad); longest first to save padding."""
        return self._encode(texts, "doc", batch_size, progress)

    def _dim(self) -> int:
        """Size of the output vectors (after any Dense head)."""
        if self._out_dim is None:
            self._out_dim = self.doc_encoder.config.hidden_size
            if len(self.head):
                with torch.no_grad():
                    self._out_dim = int(self.encode_batch(["x"], "doc")[0].shape[-1])
        return self._out_dim


