"""Private: the obvious token-pair reference, one backward per embedding dimension and step.

Shares nothing with :mod:`irlens.attribution.pairs` but the model: it tokenises, builds
the mask baseline and runs the sentence-transformers-style encoder itself. Used by the
tests (correctness) and ``benchmarks/pairs.py`` (the speed baseline).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from irlens.models import BiEncoder

__all__ = ["naive_pair_matrix"]


def _side(model: BiEncoder, text: str, side: str, n_steps: int) -> torch.Tensor:
    prefix = model.query_prefix if side == "query" else model.doc_prefix
    enc = model.tokenizer([prefix + text], truncation=True, max_length=model.max_length,
                          return_tensors="pt")
    encoder = model.query_encoder if side == "query" else model.doc_encoder
    table = encoder.get_input_embeddings()
    ids = enc["input_ids"]
    special = torch.tensor(model.tokenizer.get_special_tokens_mask(
        ids[0].tolist(), already_has_special_tokens=True), dtype=torch.bool)
    x = table(ids)[0].detach()
    x0 = table(ids.masked_fill(~special, model.tokenizer.mask_token_id))[0].detach()
    kwargs = {k: v for k, v in enc.items() if k != "input_ids"
              and k in ("attention_mask", "token_type_ids")}
    if getattr(encoder.config, "type_vocab_size", 0) <= 1:
        kwargs.pop("token_type_ids", None)
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    jac = torch.zeros(encoder.config.hidden_size, *x.shape)
    for t, w in zip(0.5 * (nodes + 1), 0.5 * weights, strict=True):
        for d in range(jac.shape[0]):  # one backward per dimension and step
            e = (x0 + float(t) * (x - x0)).unsqueeze(0).requires_grad_(True)
            hidden = encoder(inputs_embeds=e, **kwargs).last_hidden_state
            if model.pooling == "cls":
                v = hidden[:, 0]
            else:
                v = hidden.sum(1) / hidden.shape[1]
            if model.normalize or model.similarity_name == "cosine":
                v = F.normalize(v, dim=-1)
            (g,) = torch.autograd.grad(v[0, d], e)
            jac[d] += float(w) * g[0]
    return (jac * (x - x0)).sum(-1)


def naive_pair_matrix(model: BiEncoder, query: str, doc: str, n_steps: int) -> np.ndarray:
    """A [query tokens, doc tokens] for one pair (mask baseline, Gauss-Legendre)."""
    gq = _side(model, query, "query", n_steps)
    gd = _side(model, doc, "doc", n_steps)
    return np.einsum("di,dj->ij", gq.double().numpy(), gd.double().numpy())
