"""The slow NIG reference: one backward per path point and per pair, as published code does.

It follows the authors' loop (Vast et al., ICTIR 2024): a Python loop over path points
of one pair, a forward of plain Hugging Face modules with plain ``torch`` forward hooks,
``torch.autograd.grad`` per point (parameters left trainable, as in their code), and
``(h_k - h_{k-1}) * grad`` accumulated per position; segments are summed at the end. It
shares nothing with :mod:`irlens.paths` or :mod:`irlens.hooks` (no problem, no rows, no
capture, its own alphas and tokenisation), so the tests check the engine against it and
``benchmarks/neurons.py`` times it. BERT-family layouts (``encoder.layer[i]
.intermediate``); attention heads are not attributed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from irlens.models import BiEncoder, CrossEncoder, Retriever

__all__ = ["naive_nig"]

_SEGMENTS = 6  # cls, query, sep, doc, end, prefix (irlens.neurons.SEGMENTS)


def naive_nig(model: Retriever, queries: Sequence[str], docs: Sequence[str], *,
              n_steps: int, rule: str = "riemann_right", ffn: str = "post",
              baseline: str = "pad", target: str | None = None
              ) -> dict[str, np.ndarray]:
    """FFN conductance [P, L, 6, I], layer-output conductance [P, L], ``score`` and
    ``baseline_score`` [P], pair by pair and point by point."""
    outs = [_one_pair(model, q, d, n_steps, rule, ffn, baseline, target)
            for q, d in zip(queries, docs, strict=True)]
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


def _layers(encoder: torch.nn.Module) -> list[torch.nn.Module]:
    return list(encoder.base_model.encoder.layer)


def _segments(ids: list[int], tokenizer, first_len: int | None, side: str | None,
              prefix_tokens: int) -> list[int]:
    """cls=0 query=1 sep=2 doc=3 end=4 prefix=5 for one unpadded sequence."""
    if first_len is not None:  # cross-encoder: [CLS] q [SEP] d [SEP]
        n = len(ids)
        return [0] + [1] * (first_len - 2) + [2] + [3] * (n - first_len - 1) + [4]
    body = 1 if side == "query" else 3
    end = 2 if side == "query" else 4
    labels = [0] + [5] * prefix_tokens + [body] * (len(ids) - 2 - prefix_tokens) + [end]
    return labels


def _one_pair(model, query, doc, n_steps, rule, ffn, baseline, target):
    tok = model.tokenizer
    if isinstance(model, CrossEncoder):
        hf, side = model.model, None
        enc = tok(query, doc, truncation="only_second", max_length=model.max_length)
        first_len = enc["input_ids"].index(tok.sep_token_id) + 1
        moving = {"both": (1, 3), "query": (1,), "doc": (3,)}[target or "both"]
        seg = _segments(enc["input_ids"], tok, first_len, None, 0)
        fixed = None
    else:
        assert isinstance(model, BiEncoder)
        side = target or "doc"
        hf = model.encoders().get("shared", model.encoders().get(side))
        prefix = model.query_prefix if side == "query" else model.doc_prefix
        text = query if side == "query" else doc
        enc = tok(prefix + text, truncation=True, max_length=model.max_length)
        n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        seg = _segments(enc["input_ids"], tok, None, side, n_prefix)
        moving = (1,) if side == "query" else (3,)
        other = "doc" if side == "query" else "query"
        with torch.no_grad():
            fixed = model.encode_queries([query]) if other == "query" \
                else model.encode_docs([doc])
            fixed = torch.as_tensor(fixed, dtype=torch.float32)
    ids = torch.tensor([enc["input_ids"]])
    type_ids = torch.tensor([enc["token_type_ids"]]) if "token_type_ids" in enc else None
    table = hf.get_input_embeddings()
    seg_t = torch.tensor(seg)
    moves = torch.isin(seg_t, torch.tensor(moving))
    with torch.no_grad():
        x = table(ids)[0]
        fill = torch.zeros_like(x[0]) if baseline == "zero" else \
            table.weight[getattr(tok, f"{baseline}_token_id")]
        x0 = torch.where(moves.unsqueeze(-1), fill, x)
    layers = _layers(hf)
    alphas = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    store: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_m, _i, out):
            store[name] = out[0] if isinstance(out, tuple) else out
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append((layer.intermediate if ffn == "post" else layer.intermediate.dense)
                       .register_forward_hook(keep(f"ffn{i}")))
        handles.append(layer.register_forward_hook(keep(f"res{i}")))
    names = [f"ffn{i}" for i in range(len(layers))] + [f"res{i}" for i in range(len(layers))]
    total = {n: 0.0 for n in names}
    prev: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    values = []
    try:
        for k, a in enumerate(alphas.tolist()):
            e = (x0 + torch.tensor(a, dtype=x.dtype) * (x - x0)).unsqueeze(0)
            e.requires_grad_(True)
            kwargs = {"attention_mask": torch.ones_like(ids)}
            if type_ids is not None:
                kwargs["token_type_ids"] = type_ids
            out = hf(inputs_embeds=e, **kwargs)
            if fixed is None:
                logits = out.logits[:, 0] if out.logits.shape[-1] == 1 else out.logits[:, 1]
                value = torch.sigmoid(logits) if model.output == "prob" and \
                    out.logits.shape[-1] == 1 else logits
                if out.logits.shape[-1] > 1 and model.output == "prob":
                    value = out.logits.softmax(-1)[:, 1]
            else:
                h = out.last_hidden_state
                vec = h[:, 0] if model.pooling == "cls" else h.mean(1)
                if model.normalize:
                    vec = F.normalize(vec, dim=-1)
                q, d = (vec, fixed) if side == "query" else (fixed, vec)
                value = F.cosine_similarity(q, d) if model.similarity_name == "cosine" \
                    else (q * d).sum(-1)
            acts = [store[n] for n in names]
            grads = torch.autograd.grad(value.sum(), acts)
            values.append(float(value.detach()))
            for n, act, g in zip(names, acts, grads, strict=True):
                act, g = act.detach()[0].double(), g[0].double()
                if k > 0:
                    pa, pg = prev[n]
                    w = {"riemann_right": g, "riemann_left": pg,
                         "riemann_trapezoid": 0.5 * (g + pg)}[rule]
                    total[n] = total[n] + (act - pa) * w
                prev[n] = (act, g)
    finally:
        for h in handles:
            h.remove()
    hot = F.one_hot(seg_t, _SEGMENTS).double()
    ffn_out = np.stack([(hot.T @ total[f"ffn{i}"]).numpy() for i in range(len(layers))])
    resid = np.array([float(total[f"res{i}"].sum()) for i in range(len(layers))])
    return {"ffn": ffn_out, "resid": resid, "score": np.array(values[-1]),
            "baseline_score": np.array(values[0])}
