"""Cross-encoders: ``[CLS] q [SEP] d [SEP]`` -> a relevance logit or probability."""

from __future__ import annotations

import json
from typing import Literal

import torch
from torch import nn

from irlens.errors import IrlensError
from irlens.models._base import Batch, Retriever, _check_texts, _tokenize

__all__ = ["CrossEncoder"]


class CrossEncoder(Retriever):
    """``[CLS] q [SEP] d [SEP]`` -> one relevance logit (or two; positive class = index 1).

    ``output`` chooses the scalar that ``score`` returns: ``"logit"`` or ``"prob"``
    (sigmoid of one logit, softmax index 1 of two).
    """

    def __init__(self, model_id: str, model: nn.Module, tokenizer, max_length: int,
                 output: Literal["logit", "prob"] = "logit"):
        super().__init__(model_id, tokenizer, max_length)
        if output not in ("logit", "prob"):
            raise IrlensError(f"unknown output '{output}'; use logit or prob")
        self.model = model
        self.output = output
        self.num_labels = int(model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise IrlensError(
                f"cross-encoder {model_id} has {self.num_labels} labels; irlens needs 1 or 2"
            )

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length,
                           "output": self.output})

    def encoders(self) -> dict[str, nn.Module]:
        return {"shared": self.model.base_model}

    def tokenize(self, queries: list[str], docs: list[str]) -> Batch:
        """Tokenise pairs; documents are truncated first, queries kept whole."""
        _check_texts(queries, "queries")
        _check_texts(docs, "documents")
        if len(queries) != len(docs):
            raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
        return _tokenize(self.tokenizer, queries, docs, self.max_length, None, self.device,
                         self._token_types(None))

    def logits_to_score(self, logits: torch.Tensor, output: str | None = None) -> torch.Tensor:
        output = output or self.output
        if self.num_labels == 1:
            logit = logits[:, 0]
            return torch.sigmoid(logit) if output == "prob" else logit
        if output == "prob":
            return torch.softmax(logits, dim=-1)[:, 1]
        return logits[:, 1]

    def forward_embeds(self, batch: Batch, inputs_embeds: torch.Tensor | None = None,
                       output: str | None = None) -> torch.Tensor:
        """Relevance scalar [batch] (``output`` or the model's default) from ids or embeds."""
        self.current_batch = batch
        try:
            if inputs_embeds is None:
                out = self.model(input_ids=batch.input_ids, **batch.model_inputs())
            else:
                out = self.model(inputs_embeds=inputs_embeds, **batch.model_inputs())
        finally:
            self.current_batch = None
        return self.logits_to_score(out.logits.float(), output)

    def score(self, queries: list[str], docs: list[str], output: str | None = None
              ) -> torch.Tensor:
        """Differentiable relevance of each (query, doc) pair -> [n]."""
        return self.forward_embeds(self.tokenize(queries, docs), output=output)

    @torch.no_grad()
    def predict(self, queries: list[str], docs: list[str], batch_size: int = 32,
                progress: bool = False, output: str | None = None) -> torch.Tensor:
        """Scores for many pairs, batched, no grad -> [n] float32 CPU."""
        _check_texts(queries, "queries")
        _check_texts(docs, "documents")
        from tqdm.auto import tqdm

        out = torch.empty(len(queries), dtype=torch.float32)
        order = sorted(range(len(docs)), key=lambda i: -len(docs[i]) - len(queries[i]))
        starts = range(0, len(docs), batch_size)
        truncated = 0
        for start in tqdm(starts, desc="rerank", disable=not progress, unit="batch"):
            idx = order[start:start + batch_size]
            batch = self.tokenize([queries[i] for i in idx], [docs[i] for i in idx])
            out[idx] = self.forward_embeds(batch, output=output).float().cpu()
            truncated += batch.truncated
        self._warn_truncated(truncated, len(docs), "query-document pairs")
        return out


