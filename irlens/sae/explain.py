"""The explanation study: dictionary, keyword explanations, scorers, optional LLM, browser.

:func:`explain_sae` writes, in ``out``:

- ``dictionary/``: the :class:`~irlens.sae.dictionary.LatentDictionary` artefact, keyed by
  the SAE's fingerprint, the datasets and the options (another SAE rebuilds it); the
  LLM's example documents come from its training rows, and every scorer uses only its
  held-out documents, so the two never share a document;
- ``scores.parquet`` / ``scores.json``: per latent, interpretation confidence, embedding
  AUROC of the keyword explanation and of a shuffled-explanation control, and (with an
  LLM) the LLM explanation's embedding AUROC and its detection scores, next to those of
  the keywords and of the LLM explanations shuffled across latents (the control): with a
  model that gives token log-probabilities (``judge``), the margin AUROC, the label-free
  balanced accuracy and the greedy-answer accuracy; otherwise the answer accuracy only;
- ``llm-cache/``: every prompt and answer; ``latents.html``: the browser.

Keyword results are written before any LLM is called, so an LLM that does not answer
still leaves them on disk (the error is raised afterwards).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from irlens._io import atomic_path
from irlens._warn import warn
from irlens.artifacts import check_compatible
from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.retrieval import encode_corpus
from irlens.sae.dictionary import LatentDictionary, build_dictionary, latent_matrix
from irlens.sae.heldout import corpus_fingerprint, query_hash
from irlens.sae.html import save_browser
from irlens.sae.scorers import (
    detection_margin_scores,
    detection_scores,
    embedding_scores,
    explain_latents,
    shuffled,
)

__all__ = ["explain_sae"]

BASELINE = "N/A"  # the content-free concept of the calibrated detection margin


def _write_table(out: Path, frame: pd.DataFrame, summary: dict) -> None:
    with atomic_path(out / "scores.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(out / "scores.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


def _describe(values: pd.Series) -> dict:
    v = values.dropna()
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(v.median()),
            "q25": float(v.quantile(0.25)), "q75": float(v.quantile(0.75))}


def explain_sae(model, sae, datasets: Sequence[Dataset], out: str | Path, *,
                n_latents: int = 100, llm=None, llm_latents: int = 20, n_score: int = 20,
                n_detect: int = 5, seed: int = 0, batch_size: int = 64,
                cache_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Describe, explain and score ``n_latents`` latents on the documents of ``datasets``;
    ``llm`` (an :mod:`irlens.sae.llm` model) explains the first ``llm_latents`` of them."""
    check_compatible(sae.manifest, model=model, what="SAE")
    if not datasets:
        raise IrlensError("no datasets given; pass at least one BEIR folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids, texts, vecs, qids, qtexts = [], [], [], [], []
    for data in datasets:
        ids += [f"{data.name}/{d}" for d in data.doc_ids]
        texts += data.doc_texts()
        vecs.append(encode_corpus(model, data, batch_size=batch_size, cache_dir=cache_dir,
                                  progress=progress))
        qids += [f"{data.name}/{q}" for q in data.query_ids]
        qtexts += data.query_texts()
    docs = torch.cat(vecs)
    queries = model.encode_queries(qtexts, batch_size=batch_size) if qtexts else None
    path = out / "dictionary"
    # a dictionary is reused only for the same SAE weights, data and options
    key = {"sae": sae.fingerprint, "n_latents": n_latents, "seed": seed,
           "datasets": [[d.name, corpus_fingerprint(d), query_hash("\x1e".join(
               f"{q}\x1f{t}" for q, t in d.queries.items()))] for d in datasets]}
    dictionary = LatentDictionary.load(path) if (path / "manifest.json").is_file() else None
    if dictionary is not None and dictionary.manifest.config.get("key") != key:
        warn(f"{path} was built for another SAE, data or options; rebuilding it")
        dictionary = None
    if dictionary is None:
        dictionary = build_dictionary(sae, ids, texts, docs, query_ids=qids,
                                      query_texts=qtexts, query_vectors=queries,
                                      n_latents=n_latents, seed=seed)
        dictionary.manifest = dataclasses.replace(
            dictionary.manifest, config={**dictionary.manifest.config, "key": key})
        dictionary.save(path)
    z = latent_matrix(sae, docs).tocsc()
    row = {d: i for i, d in enumerate(ids)}
    held = np.asarray([row[d] for d in dictionary.held_out])
    keywords = {j: dictionary.keyword_explanation(j) for j in dictionary.latents}
    frame = dictionary.to_frame()
    frame["keywords"] = [keywords[j] for j in frame.latent]
    kw = embedding_scores(model, keywords, z, docs, held, n=n_score, seed=seed)
    ctrl = embedding_scores(model, shuffled(keywords, seed), z, docs, held, n=n_score,
                            seed=seed) if len(keywords) > 1 else {}
    frame["embedding_auroc_keywords"] = [kw.get(j, np.nan) for j in frame.latent]
    frame["embedding_auroc_shuffled"] = [ctrl.get(j, np.nan) for j in frame.latent]
    summary = {"n_latents": len(dictionary.latents), "dead": len(dictionary.dead),
               "width": sae.width, "f1": _describe(frame.f1),
               "precision": _describe(frame.precision), "recall": _describe(frame.recall),
               "embedding_auroc_keywords": _describe(frame.embedding_auroc_keywords),
               "embedding_auroc_shuffled": _describe(frame.embedding_auroc_shuffled)}
    _write_table(out, frame, summary)
    save_browser(dictionary, out / "latents.html",
                 explanations={"keywords": keywords},
                 scores={"AUROC keywords": kw, "AUROC shuffled": ctrl})
    if llm is None:
        return summary

    from irlens.sae.llm import DiskCache

    cached = DiskCache(llm, out / "llm-cache")
    chosen = dictionary.latents[:llm_latents]
    examples = {j: [t for _, _, t in dictionary.entries[str(j)]["top_docs"]] for j in chosen}
    try:
        texts_llm = explain_latents(cached, examples, progress=progress)
        judged = {"llm": texts_llm, "keywords": {j: keywords[j] for j in chosen}}
        if len(chosen) > 1:  # the control: each latent judged with another's explanation
            judged["shuffled_llm"] = shuffled(texts_llm, seed)
        detect = {}
        for name, expl in judged.items():
            if hasattr(llm, "judge"):  # one forward per prompt: margin and greedy answer
                detect[name] = detection_margin_scores(cached, expl, z, texts, held,
                                                       n=n_detect, seed=seed,
                                                       baseline=BASELINE,
                                                       progress=progress)
            else:
                detect[name] = {j: {"answer_accuracy": v} for j, v in detection_scores(
                    cached, expl, z, texts, held, n=n_detect, seed=seed,
                    progress=progress).items()}
    except IrlensError as err:
        raise IrlensError(f"{err} (keyword results are in {out})") from None
    emb = embedding_scores(model, texts_llm, z, docs, held, n=n_score, seed=seed)
    frame["llm"] = [texts_llm.get(j) for j in frame.latent]
    frame["embedding_auroc_llm"] = [emb.get(j, np.nan) for j in frame.latent]
    columns = {"answer_accuracy": "detection_{}", "auroc": "detection_auroc_{}",
               "balanced_accuracy": "detection_bacc_{}", "yes_share": "yes_share_{}",
               "auroc_calibrated": "detection_auroc_calibrated_{}",
               "balanced_accuracy_calibrated": "detection_bacc_calibrated_{}"}
    for name, scores in detect.items():
        for key, column in columns.items():
            if any(key in v for v in scores.values()):
                frame[column.format(name)] = [scores.get(j, {}).get(key, np.nan)
                                              for j in frame.latent]
    subset = frame[frame.latent.isin(chosen)]
    summary.update({
        "llm": llm.name, "llm_latents": len(chosen),
        "embedding_auroc_llm": _describe(subset.embedding_auroc_llm),
        "embedding_auroc_keywords_same_latents": _describe(subset.embedding_auroc_keywords)})
    for column in frame.columns:
        if column.startswith(("detection_", "yes_share_")):
            summary[column] = _describe(subset[column])
    _write_table(out, frame, summary)
    save_browser(dictionary, out / "latents.html",
                 explanations={"keywords": keywords, "llm": texts_llm},
                 scores={"AUROC keywords": kw, "AUROC shuffled": ctrl, "AUROC llm": emb,
                         **{f"detection {key} llm": {j: v.get(key, np.nan)
                                                     for j, v in detect["llm"].items()}
                            for key in ("auroc", "answer_accuracy")
                            if any(key in v for v in detect["llm"].values())}})
    return summary
