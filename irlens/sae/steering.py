"""Steer a dense search with SAE latents (Kang et al., NAACL 2025).

- :func:`steer`: add ``delta`` times a latent's decoder direction to query vectors
  (``mode="add"``), or amplify the latent in SAE space by ``1 + delta`` and decode
  (``mode="scale"``: adds ``delta * z_j(q)`` times the direction, nothing where the latent
  is off). The SAE's reconstruction error stays in the query, so ``delta=0`` returns the
  queries unchanged.
- :func:`latent_steering`: for each latent and delta, the share of each query's top 10
  that activate the latent, nDCG@10 and the rank of the relevant documents, before and
  after.
- :func:`prf_steering`: Kang et al.'s pseudo-relevance-feedback controller: take the top
  ``alpha`` latents of each query's top ``n_feedback`` documents, add ``delta`` to them in
  the query and search again; against the unsteered search and a random-latent control.
  ``weighting="idf"`` ranks the feedback latents by summed activation times their inverse
  document frequency over the corpus, ``log(N / df)`` (Sparck Jones, 1972, as for
  expansion terms in classical PRF), so that latents firing on most documents, which
  carry no information about the query, are not the ones reinforced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, check_compatible, make_manifest
from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.evaluation import evaluate
from irlens.retrieval import encode_corpus
from irlens.sae._vectors import vector_search
from irlens.sae.dictionary import latent_matrix

__all__ = ["Steering", "feedback_latents", "latent_steering", "prf_steering", "steer"]


@torch.no_grad()
def steer(sae, queries: torch.Tensor, latents: int | Sequence[int] | torch.Tensor,
          delta: float, mode: Literal["add", "scale"] = "add") -> torch.Tensor:
    """Query vectors moved along the decoder directions of ``latents`` (one latent for all
    queries, or one list per query as a [n, m] tensor)."""
    if mode not in ("add", "scale"):
        raise IrlensError(f"unknown steering mode '{mode}'; use add or scale")
    idx = torch.as_tensor(latents, dtype=torch.long)
    if idx.ndim == 0:
        idx = idx.expand(len(queries))[:, None]
    elif idx.ndim == 1:
        idx = idx[None].expand(len(queries), -1)
    if len(idx) and (idx.min() < 0 or idx.max() >= sae.width):
        raise IrlensError(f"latent out of range; the SAE has {sae.width} latents")
    if delta == 0:
        return queries.clone()
    weights = torch.full(idx.shape, float(delta))
    if mode == "scale":
        weights = weights * sae.encode(queries).gather(1, idx)
    return queries + torch.einsum("nm,nmd->nd", weights, sae.W_dec.detach()[idx])


@dataclasses.dataclass(repr=False)
class Steering(Artifact):
    """One row per (experiment, latent or control, delta): see :meth:`to_frame`."""

    manifest: Manifest
    dataset: str
    rows: list[dict]

    kind: ClassVar[str] = "sae-steering"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        return f"{self.dataset}, {len(self.rows)} rows"


def _ndcg(run, dataset: Dataset) -> dict[str, float]:
    per = evaluate(run, dataset.qrels, ["nDCG@10"]).per_query
    return {q: v.get("nDCG@10", 0.0) for q, v in per.items()}


def _relevant_ranks(run, dataset: Dataset, depth: int) -> list[float]:
    ranks = []
    for qid in dataset.query_ids:
        order = {d: r for r, (d, _) in enumerate(
            sorted(run.get(qid, {}).items(), key=lambda kv: -kv[1]), start=1)}
        for doc in dataset.relevant(qid):
            ranks.append(float(order.get(doc, depth + 1)))
    return ranks


def _inputs(model, sae, dataset: Dataset, batch_size: int, cache_dir, queries=None):
    check_compatible(sae.manifest, model=model, what="SAE")
    docs = encode_corpus(model, dataset, batch_size=batch_size, cache_dir=cache_dir,
                         progress=False)
    if queries is None:
        queries = model.encode_queries(dataset.query_texts(), batch_size=batch_size)
    elif len(queries) != len(dataset.queries):
        raise IrlensError(f"{len(queries)} query vectors for {len(dataset.queries)} queries; "
                          "pass one vector per query of the dataset")
    return docs, queries, latent_matrix(sae, docs).tocsc()


def latent_steering(model, sae, dataset: Dataset, latents: Sequence[int],
                    deltas: Sequence[float] = (0.0, 0.1, 0.2, 0.4), *,
                    mode: Literal["add", "scale"] = "add", depth: int = 100,
                    batch_size: int = 64, cache_dir=None, query_vectors=None) -> Steering:
    """Steer every query of ``dataset`` towards each latent in turn."""
    docs, queries, z = _inputs(model, sae, dataset, batch_size, cache_dir, query_vectors)
    qids, doc_ids = dataset.query_ids, dataset.doc_ids
    row = {d: i for i, d in enumerate(doc_ids)}
    base = vector_search(model, qids, queries, doc_ids, docs, depth)
    base_ndcg = _ndcg(base, dataset)
    base_ranks = _relevant_ranks(base, dataset, depth)

    def share(run, latent: int) -> float:
        col = z.getcol(latent).toarray().ravel() > 0
        tops = [sorted(run[q], key=lambda d: -run[q][d])[:10] for q in qids]
        return float(np.mean([np.mean([col[row[d]] for d in t]) for t in tops if t]))

    rows = []
    for j in latents:
        before = share(base, j)
        for delta in deltas:
            run = vector_search(model, qids, steer(sae, queries, j, delta, mode), doc_ids,
                                docs, depth)
            ndcg = _ndcg(run, dataset)
            ranks = _relevant_ranks(run, dataset, depth)
            rows.append({"experiment": "latent", "latent": int(j), "delta": float(delta),
                         "mode": mode, "top10_share_before": before,
                         "top10_share_after": share(run, j),
                         "ndcg10_before": float(np.mean(list(base_ndcg.values()))),
                         "ndcg10_after": float(np.mean(list(ndcg.values()))),
                         "median_rank_change": float(np.median(np.subtract(ranks, base_ranks)))
                         if ranks else float("nan")})
    manifest = make_manifest("sae-steering", {"latents": list(latents), "deltas": list(deltas),
                                              "mode": mode, "sae": sae.manifest.config},
                             model=model, data=dataset)
    return Steering(manifest=manifest, dataset=dataset.name, rows=rows)


WEIGHTINGS = ("mass", "idf")


def feedback_latents(z, feedback_rows: Sequence[Sequence[int]], alpha: int,
                     weighting: str = "mass") -> np.ndarray:
    """The top ``alpha`` latents per query [n_queries, alpha] from its feedback documents'
    rows of ``z`` [docs, width] (scipy sparse): by summed activation (``"mass"``, Kang et
    al.) or summed activation x ``log(N / df)`` over all ``N`` rows (``"idf"``)."""
    if weighting not in WEIGHTINGS:
        raise IrlensError(f"unknown PRF weighting '{weighting}'; use mass or idf")
    z = z.tocsr()
    weight = np.ones(z.shape[1])
    if weighting == "idf":
        df = np.asarray((z > 0).sum(0)).ravel()
        weight = np.log(z.shape[0] / np.maximum(df, 1))
    out = []
    for top in feedback_rows:
        score = np.asarray(z[list(top)].sum(0)).ravel() * weight
        out.append(np.argsort(-score, kind="stable")[:alpha])
    return np.stack(out)


def prf_steering(model, sae, dataset: Dataset, *, n_feedback: int = 10, alpha: int = 5,
                 deltas: Sequence[float] = (0.04, 0.08, 0.16, 0.32), seed: int = 0,
                 weightings: Sequence[str] = ("mass",), depth: int = 100,
                 batch_size: int = 64, cache_dir=None, query_vectors=None) -> Steering:
    """Kang et al.'s PRF controller (one row set per feedback ``weightings``: ``mass``,
    ``idf``) vs the unsteered search and random latents."""
    if n_feedback < 1 or alpha < 1:
        raise IrlensError("n_feedback and alpha must be positive")
    bad = [w for w in weightings if w not in WEIGHTINGS]
    if bad or not weightings:
        raise IrlensError(f"unknown PRF weighting {bad or weightings}; use mass and/or idf")
    docs, queries, z = _inputs(model, sae, dataset, batch_size, cache_dir, query_vectors)
    z = z.tocsr()
    qids, doc_ids = dataset.query_ids, dataset.doc_ids
    row = {d: i for i, d in enumerate(doc_ids)}
    base = vector_search(model, qids, queries, doc_ids, docs, depth)
    base_ndcg = float(np.mean(list(_ndcg(base, dataset).values())))
    tops = [[row[d] for d in sorted(base[q], key=lambda d: -base[q][d])[:n_feedback]]
            for q in qids]
    chosen = {("prf latents" if w == "mass" else f"prf latents {w}"):
              torch.as_tensor(feedback_latents(z, tops, alpha, w), dtype=torch.long)
              for w in weightings}
    alive = np.flatnonzero(np.asarray((z > 0).sum(0)).ravel() > 0)
    if len(alive) < alpha:
        raise IrlensError(f"alpha={alpha} is more than the {len(alive)} latents that fire on "
                          f"{dataset.name}'s documents (the random control draws that many); "
                          "lower --alpha")
    rng = np.random.default_rng(seed)
    random = torch.as_tensor(np.stack([rng.choice(alive, alpha, replace=False)
                                       for _ in qids]), dtype=torch.long)
    rows = [{"experiment": "prf", "control": "unsteered", "delta": 0.0,
             "alpha": alpha, "n_feedback": n_feedback, "ndcg10": base_ndcg,
             "ndcg10_change": 0.0}]
    for delta in deltas:
        for control, latents in (*chosen.items(), ("random latents", random)):
            run = vector_search(model, qids, steer(sae, queries, latents, delta), doc_ids,
                                docs, depth)
            ndcg = float(np.mean(list(_ndcg(run, dataset).values())))
            rows.append({"experiment": "prf", "control": control, "delta": float(delta),
                         "alpha": alpha, "n_feedback": n_feedback, "ndcg10": ndcg,
                         "ndcg10_change": ndcg - base_ndcg})
    manifest = make_manifest("sae-steering", {"n_feedback": n_feedback, "alpha": alpha,
                                              "deltas": list(deltas), "seed": seed,
                                              "weightings": list(weightings),
                                              "sae": sae.manifest.config},
                             model=model, data=dataset)
    return Steering(manifest=manifest, dataset=dataset.name, rows=rows)
