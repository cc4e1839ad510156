"""Does the axiom live in the top components? Ablate them and measure real rankings.

The top-k components of a :class:`PatchingStudy` (heads and FFN outputs by mean
denoising effect) are zero-ablated (on the patched side for bi-encoders) and, on
held-out pairs, two things are measured with and without the ablation, and against
``n_random`` sets of k random components of the same kinds. Held-out pairs come only from
queries that were *not* among the pairs that chose the components (``chosen_on``), so no
query is on both sides:

- the share of pairs where the axiom still holds (clean score > corrupted score);
- nDCG@10 of reranking each held-out query's BM25 top ``candidates`` (ir_measures).
"""

from __future__ import annotations

import random
from collections.abc import Collection
from contextlib import ExitStack, contextmanager

import numpy as np
import pandas as pd
import torch

from irlens.data import Dataset, relevant_pairs
from irlens.errors import IrlensError
from irlens.evaluation import evaluate
from irlens.hooks import ablate
from irlens.patching.study import PatchingStudy, study_pairs

__all__ = ["ablate_top"]


@contextmanager
def _ablated(model, components: list[tuple[int, int | None]], side: str | None):
    with ExitStack() as stack:
        for layer, head in components:
            if head is None:
                stack.enter_context(ablate(model, f"layer.{layer}.ffn.out", side=side))
            else:
                stack.enter_context(ablate(model, f"layer.{layer}.attn.heads", units=[head],
                                           side=side))
        yield


@torch.no_grad()
def _scores(model, pairs: list[tuple[str, str]], batch: int = 16) -> np.ndarray:
    return np.concatenate([model.score([q for q, _ in pairs[i:i + batch]],
                                       [d for _, d in pairs[i:i + batch]]).float().numpy()
                           for i in range(0, len(pairs), batch)])


def held_out(dataset: Dataset, chosen_on: Collection[str]) -> Dataset:
    """``dataset`` without the queries in ``chosen_on`` (same corpus)."""
    keep = [q for q in dataset.query_ids if q not in set(chosen_on)]
    return Dataset(name=dataset.name, corpus=dataset.corpus,
                   queries={q: dataset.queries[q] for q in keep},
                   qrels={q: dataset.qrels[q] for q in keep if q in dataset.qrels},
                   split=dataset.split)


def ablate_top(model, dataset: Dataset, study: PatchingStudy, k: int = 3, n_pairs: int = 50,
               n_random: int = 3, candidates: int = 20, seed: int = 1,
               min_relevance: int = 1, max_doc_words: int | None = 60, *,
               chosen_on: Collection[str]) -> pd.DataFrame:
    """One row per condition (none, top-k, random-i): axiom share and nDCG@10 on up to
    ``n_pairs`` pairs of queries not in ``chosen_on`` (the study's query ids)."""
    from irlens.models import BiEncoder
    from irlens.retrieval import bm25_search, rerank

    rest = held_out(dataset, chosen_on)
    available = len(relevant_pairs(rest, min_relevance))
    if not available:
        raise IrlensError(f"every query of {dataset.name} with a relevant pair chose the "
                          "components; sample fewer --pairs so some are held out")
    perts, _ = study_pairs(rest, study.axiom, min(n_pairs, available), seed, min_relevance,
                           max_doc_words)
    top = [(c["layer"], c["head"]) for c in study.top_components(k)]
    n_layers, n_heads = study.heads_mean.shape[1:]
    pool = [(li, h) for li in range(n_layers) for h in range(n_heads)] + \
        [(li, None) for li in range(n_layers)]
    rng = random.Random(seed)
    conditions = [("none", [])] + [(f"top-{k}", top)] + \
        [(f"random-{i}", rng.sample([c for c in pool if c not in top], k))
         for i in range(n_random)]
    qids = sorted({q for q, _, _ in perts})
    sub = Dataset(name=dataset.name, corpus=dataset.corpus,
                  queries={q: dataset.queries[q] for q in qids},
                  qrels={q: dataset.qrels[q] for q in qids}, split=dataset.split)
    first = bm25_search(sub, k=candidates, progress=False)
    side = perts[0][2].side if isinstance(model, BiEncoder) else None
    rows = []
    for name, comps in conditions:
        with _ablated(model, comps, side):
            clean = _scores(model, [(p.clean_query, p.clean_doc) for _, _, p in perts])
            corrupt = _scores(model, [(p.corrupt_query, p.corrupt_doc) for _, _, p in perts])
            run = rerank(model, sub, first, depth=candidates, progress=False)
        ev = evaluate(run, sub.qrels, ["nDCG@10"])
        rows.append({"condition": name, "components": ";".join(
            f"L{li}" + ("ffn" if h is None else f"H{h}") for li, h in comps),
                     "axiom_holds": float(np.mean(clean > corrupt)),
                     "mean_delta": float(np.mean(clean - corrupt)),
                     "nDCG@10": float(ev.primary), "pairs": len(perts),
                     "queries": len(qids), "held_out_queries": ";".join(qids)})
    return pd.DataFrame(rows)
