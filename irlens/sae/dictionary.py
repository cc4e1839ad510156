"""Concept dictionaries for SAE latents, and their interpretation confidence.

Per latent (RecSAE, Wang et al. 2024): the top-activating documents and queries, the terms
that separate its activating documents from the rest, and an activation histogram. Terms
are ranked by the weighted log-odds ratio with an informative Dirichlet prior (Monroe,
Colaresi and Quinn, "Fightin' Words", 2008), the prior being the corpus term counts;
counting is scikit-learn's ``CountVectorizer``.

*Interpretation confidence* (RecSAE): on held-out documents the dictionary never saw,
predict that the latent fires when a document holds at least ``min_terms`` of its top
terms, and report precision, recall and F1 (scikit-learn) per latent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.errors import IrlensError

__all__ = ["LatentDictionary", "build_dictionary", "latent_matrix", "log_odds"]


@dataclasses.dataclass(repr=False)
class LatentDictionary(Artifact):
    """Per-latent examples, terms, histograms and interpretation confidence.

    ``entries[str(latent)]`` holds ``top_docs``/``top_queries`` (``[id, activation,
    text]``), ``terms`` (``[term, z]``), ``precision``/``recall``/``f1``; ``frequency``
    [width] is the share of documents each latent fires on; ``histograms`` [n, bins] and
    ``hist_max`` [n] describe the activations of the listed latents (``latents`` order).
    ``held_out`` lists the document ids kept out of the term statistics and of
    ``top_docs`` (the examples an LLM explains from), for the scorers.
    """

    manifest: Manifest
    latents: list[int]
    entries: dict[str, dict]
    held_out: list[str]
    frequency: np.ndarray
    histograms: np.ndarray
    hist_max: np.ndarray

    kind: ClassVar[str] = "sae-dictionary"
    array_fields: ClassVar[tuple[str, ...]] = ("frequency", "histograms", "hist_max")

    @property
    def dead(self) -> list[int]:
        """Latents that never fired on the documents (listed, not described)."""
        return [int(j) for j in np.flatnonzero(self.frequency == 0)]

    def terms(self, latent: int, n: int = 10) -> list[str]:
        return [t for t, _ in self.entries[str(latent)]["terms"][:n]]

    def keyword_explanation(self, latent: int, n: int = 8) -> str:
        """The top terms as an explanation ('cell, protein, expression, ...')."""
        return ", ".join(self.terms(latent, n))

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for j in self.latents:
            e = self.entries[str(j)]
            rows.append({"latent": j, "frequency": float(self.frequency[j]),
                         "terms": ", ".join(t for t, _ in e["terms"][:10]),
                         "precision": e["precision"], "recall": e["recall"], "f1": e["f1"],
                         "n_held_out_firing": e["n_held_out_firing"]})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        f1 = [self.entries[str(j)]["f1"] for j in self.latents]
        return (f"{len(self.latents)} latents, {len(self.dead)} dead, median F1 "
                f"{np.median(f1) if f1 else float('nan'):.2f}")


TOKENS = r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b"


def _count_terms(texts: list[str]):
    """A fitted ``CountVectorizer`` and the term counts of ``texts`` (the training rows
    only); with too few documents for its document-frequency limits, without them."""
    from sklearn.feature_extraction.text import CountVectorizer

    for min_df, max_df in ((3, 0.5), (1, 1.0)):
        vectorizer = CountVectorizer(stop_words="english", min_df=min_df, max_df=max_df,
                                     token_pattern=TOKENS)
        try:
            return vectorizer, vectorizer.fit_transform(texts)
        except ValueError:  # empty vocabulary: too few documents for these limits
            continue
    raise IrlensError(f"the {len(texts)} documents outside the held-out share hold no "
                      "terms; pass documents with words (not only stop words)")


@torch.no_grad()
def latent_matrix(sae, x: torch.Tensor, chunk: int = 2048):
    """Activations of ``x`` as a scipy CSR matrix [n, width] (only non-zeros stored)."""
    from scipy import sparse

    blocks = []
    for s in range(0, len(x), chunk):
        z = sae.encode(x[s:s + chunk]).numpy()
        blocks.append(sparse.csr_matrix(z))
    if not blocks:
        return sparse.csr_matrix((0, sae.width), dtype=np.float32)
    return sparse.vstack(blocks).tocsr()


def log_odds(target: np.ndarray, rest: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Monroe et al.'s z-scored log-odds of each term in ``target`` vs ``rest`` counts with
    Dirichlet prior ``prior`` (pseudo-counts per term)."""
    a0, n1, n2 = prior.sum(), target.sum(), rest.sum()
    delta = (np.log((target + prior) / (n1 + a0 - target - prior))
             - np.log((rest + prior) / (n2 + a0 - rest - prior)))
    return delta / np.sqrt(1 / (target + prior) + 1 / (rest + prior))


def build_dictionary(
    sae,
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    doc_vectors: torch.Tensor,
    *,
    query_ids: Sequence[str] = (),
    query_texts: Sequence[str] = (),
    query_vectors: torch.Tensor | None = None,
    latents: Sequence[int] | None = None,
    n_latents: int = 100,
    n_top: int = 10,
    n_terms: int = 10,
    min_terms: int = 2,
    held_out: float = 0.2,
    prior_weight: float = 1000.0,
    bins: int = 20,
    seed: int = 0,
    snippet: int = 400,
) -> LatentDictionary:
    """Describe ``latents`` (default: ``n_latents`` alive latents, spread over firing
    frequencies) of ``sae`` on a document collection.

    A latent that never fires is listed in :attr:`LatentDictionary.dead`; asked for
    explicitly, it gets an empty entry instead of an error.
    """
    from sklearn.metrics import precision_recall_fscore_support

    n = len(doc_ids)
    if n < 10 or len(doc_texts) != n or len(doc_vectors) != n:
        raise IrlensError(f"need at least 10 documents with one text and one vector each, "
                          f"got {n} ids, {len(doc_texts)} texts, {len(doc_vectors)} vectors")
    if not 0 < held_out < 1:
        raise IrlensError(f"held_out must be a share between 0 and 1, got {held_out}")
    z = latent_matrix(sae, doc_vectors).tocsc()
    frequency = np.asarray((z > 0).sum(0)).ravel() / n
    if latents is None:
        alive = np.flatnonzero(frequency > 0)
        alive = alive[np.argsort(-frequency[alive], kind="stable")]
        pick = np.linspace(0, len(alive) - 1, min(n_latents, len(alive))).round().astype(int)
        latents = sorted({int(alive[i]) for i in pick}) if len(alive) else []
    bad = [j for j in latents if not 0 <= j < sae.width]
    if bad:
        raise IrlensError(f"latent(s) {bad[:5]} out of range; the SAE has {sae.width}")
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[:max(1, int(round(n * held_out)))]] = True
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    vectorizer, counts = _count_terms([doc_texts[i] for i in train_rows])
    vocab = vectorizer.get_feature_names_out()
    total = np.asarray(counts.sum(0)).ravel().astype(float)
    prior = prior_weight * total / max(total.sum(), 1)
    present = (vectorizer.transform([doc_texts[i] for i in np.flatnonzero(test)]) > 0)
    present = present.tocsc()
    q_z = (latent_matrix(sae, query_vectors).tocsc() if query_vectors is not None
           and len(query_vectors) else None)

    entries, hists, hist_max = {}, [], []
    for j in latents:
        col = z.getcol(j).toarray().ravel()
        # examples (and so LLM prompts) come from the rows the scorers never see
        order = train_rows[np.argsort(-col[train_rows], kind="stable")[:n_top]]
        top_docs = [[doc_ids[i], float(col[i]), doc_texts[i][:snippet]]
                    for i in order if col[i] > 0]
        top_queries = []
        if q_z is not None:
            qcol = q_z.getcol(j).toarray().ravel()
            top_queries = [[query_ids[i], float(qcol[i]), query_texts[i][:snippet]]
                           for i in np.argsort(-qcol, kind="stable")[:n_top] if qcol[i] > 0]
        fires_train = col[train_rows] > 0
        terms: list[list] = []
        if fires_train.any():
            target = np.asarray(counts[fires_train].sum(0)).ravel()
            scores = log_odds(target, total - target, prior)
            best = np.argsort(-scores, kind="stable")[:n_terms]
            terms = [[str(vocab[t]), float(scores[t])] for t in best if scores[t] > 0]
        truth = col[test_rows] > 0
        if terms:
            idx = [int(np.flatnonzero(vocab == t)[0]) for t, _ in terms]
            hits = np.asarray(present[:, idx].sum(1)).ravel()
            pred = hits >= min(min_terms, len(idx))
        else:
            pred = np.zeros(len(test_rows), dtype=bool)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average="binary",
                                                     zero_division=0)
        positive = col[col > 0]
        top = float(positive.max()) if len(positive) else 0.0
        hist = np.histogram(positive, bins=bins, range=(0, top or 1.0))[0]
        hists.append(hist)
        hist_max.append(top)
        entries[str(j)] = {"top_docs": top_docs, "top_queries": top_queries, "terms": terms,
                           "precision": float(p), "recall": float(r), "f1": float(f),
                           "n_held_out_firing": int(truth.sum()),
                           "frequency": float(frequency[j])}
    manifest = dataclasses.replace(make_manifest("sae-dictionary", {
        "n_top": n_top, "n_terms": n_terms, "min_terms": min_terms, "held_out": held_out,
        "prior_weight": prior_weight, "seed": seed, "sae": sae.manifest.config}),
        model_id=sae.manifest.model_id, model_fingerprint=sae.manifest.model_fingerprint)
    return LatentDictionary(
        manifest=manifest, latents=[int(j) for j in latents], entries=entries,
        held_out=[doc_ids[i] for i in test_rows], frequency=frequency.astype(np.float32),
        histograms=np.asarray(hists, dtype=np.int64).reshape(len(latents), bins),
        hist_max=np.asarray(hist_max, dtype=np.float32))
