"""Fidelity of an SAE, measured by retrieval (Kang et al., NAACL 2025).

For one dataset: search with the original vectors, with reconstructed document vectors,
and with reconstructed query and document vectors; score each run with ir_measures
(nDCG@10 and R@100 by default) and report, over the dataset's documents and queries, the
FVU (fraction of variance unexplained), the mean L0 and the share of latents never active
(dead), and whether the dataset's documents and queries were in the SAE's training rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, check_compatible, make_manifest
from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.evaluation import evaluate
from irlens.retrieval import encode_corpus
from irlens.sae._vectors import vector_search
from irlens.sae.heldout import training_overlap

__all__ = ["Fidelity", "evaluate_fidelity", "reconstruction_stats"]

SETTINGS = ("original", "docs", "queries+docs")


@dataclasses.dataclass(repr=False)
class Fidelity(Artifact):
    """Retrieval with original vs reconstructed vectors on one dataset.

    ``scores[setting][metric]`` for settings ``original``, ``docs`` (reconstructed
    documents) and ``queries+docs``; ``fired`` [width] counts inputs each latent fired on;
    ``overlap`` says whether the documents and how many of the queries were in the SAE's
    training rows (:func:`~irlens.sae.heldout.training_overlap`).
    """

    manifest: Manifest
    dataset: str
    k: int
    scores: dict[str, dict[str, float]]
    fvu: float
    l0: float
    dead_share: float
    n_vectors: int
    fired: np.ndarray
    overlap: dict = dataclasses.field(default_factory=dict)

    kind: ClassVar[str] = "sae-fidelity"
    array_fields: ClassVar[tuple[str, ...]] = ("fired",)

    def kept(self, metric: str = "nDCG@10", setting: str = "queries+docs") -> float:
        """Share of the original score kept (1.0 = no loss)."""
        base = self.scores["original"][metric]
        return self.scores[setting][metric] / base if base else float("nan")

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for setting, metrics in self.scores.items():
            for metric, value in metrics.items():
                rows.append({"dataset": self.dataset, "k": self.k, "setting": setting,
                             "metric": metric, "value": value,
                             "kept": value / self.scores["original"][metric]
                             if self.scores["original"][metric] else float("nan")})
        return pd.DataFrame(rows)

    @property
    def held_out(self) -> str:
        """'queries held out', 'in-sample' (some queries trained on), 'collection held
        out' (documents unseen too) or 'unknown'."""
        seen, docs = self.overlap.get("queries_seen"), self.overlap.get("docs_seen")
        if seen is None:
            return "unknown"
        if seen:
            return "in-sample"
        return "queries held out" if docs else "collection held out"

    def summary(self) -> str:
        return (f"{self.dataset} k={self.k} ({self.held_out}): nDCG@10 kept "
                f"{self.kept():.1%}, FVU {self.fvu:.3f}, L0 {self.l0:.1f}, dead "
                f"{self.dead_share:.1%}")


@torch.no_grad()
def reconstruction_stats(sae, x: torch.Tensor, chunk: int = 2048
                         ) -> tuple[torch.Tensor, float, float, np.ndarray]:
    """Reconstruction of ``x``, its FVU (squared error over variance about the mean), the
    mean L0, and how many rows each latent fired on."""
    recon, l0, fired = [], 0.0, torch.zeros(sae.width, dtype=torch.long)
    for s in range(0, len(x), chunk):
        z = sae.encode(x[s:s + chunk])
        recon.append(sae.decode(z))
        active = z > 0
        l0 += float(active.sum())
        fired += active.sum(0)
    x_hat = torch.cat(recon) if recon else x.clone()
    total = float((x - x.mean(0)).pow(2).sum())
    fvu = float((x - x_hat).pow(2).sum()) / total if total else float("nan")
    return x_hat, fvu, l0 / max(len(x), 1), fired.numpy()


def evaluate_fidelity(model, sae, dataset: Dataset, *,
                      metrics: Sequence[str] = ("nDCG@10", "R@100"), depth: int = 100,
                      batch_size: int = 64, cache_dir: str | Path | None = None,
                      query_vectors: torch.Tensor | None = None,
                      progress: bool = True) -> Fidelity:
    """Search ``dataset`` with original and reconstructed vectors and compare.

    The SAE must come from ``model``'s vectors (checked by fingerprint when the SAE
    records one). ``query_vectors`` (the model's, in ``dataset.query_ids`` order) saves
    encoding the queries again when several SAEs are compared.
    """
    check_compatible(sae.manifest, model=model, what="SAE")
    docs = encode_corpus(model, dataset, batch_size=batch_size, cache_dir=cache_dir,
                         progress=progress)
    queries = query_vectors if query_vectors is not None else \
        model.encode_queries(dataset.query_texts(), batch_size=batch_size)
    if len(queries) != len(dataset.queries):
        raise IrlensError(f"{len(queries)} query vectors for {len(dataset.queries)} queries; "
                          "pass one vector per query of the dataset")
    docs_hat, _, _, fired_d = reconstruction_stats(sae, docs)
    queries_hat, _, _, fired_q = reconstruction_stats(sae, queries)
    both = torch.cat([docs, queries])
    _, fvu, l0, _ = reconstruction_stats(sae, both)
    qids, doc_ids = dataset.query_ids, dataset.doc_ids
    runs = {"original": (queries, docs), "docs": (queries, docs_hat),
            "queries+docs": (queries_hat, docs_hat)}
    scores = {}
    for setting, (q, d) in runs.items():
        run = vector_search(model, qids, q, doc_ids, d, k=depth)
        scores[setting] = evaluate(run, dataset.qrels, list(metrics)).aggregate
    fired = fired_d + fired_q
    manifest = make_manifest("sae-fidelity", {"metrics": list(metrics), "depth": depth,
                                              "sae": sae.manifest.config},
                             model=model, data=dataset)
    return Fidelity(manifest=manifest, dataset=dataset.name, k=sae.cfg.k, scores=scores,
                    fvu=fvu, l0=l0, dead_share=float((fired == 0).mean()),
                    n_vectors=len(both), fired=fired,
                    overlap=training_overlap(sae, dataset))
