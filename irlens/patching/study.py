"""Patching over a dataset: per-pair jobs (resumable), averages with 95% CIs, heatmaps.

Each sampled relevant pair is perturbed by the axiom (pairs it cannot apply to are
skipped and counted by reason; pairs whose clean and corrupted scores differ by less
than ``min_delta`` are skipped too, since the normalised effect divides by that
difference). Residual effects are averaged per token *role* (``cls``, ``query``,
``sep``, ``doc``, ``term`` = pieces of the axiom's query term in the document, ``end``)
because positions differ between pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from irlens.artifacts import Artifact, Manifest, Store, make_manifest, resume
from irlens.data import Dataset, sample_pairs
from irlens.errors import IrlensError
from irlens.patching.axioms import AXIOMS, document_frequencies, filler_texts, perturb
from irlens.patching.patch import ROLES, patch_pair

__all__ = ["PairPatchResult", "PatchingStudy", "heatmap_figure", "patching_study",
           "study_pairs"]

DIRECTIONS = ("denoise", "noise")


@dataclass(repr=False)
class PairPatchResult(Artifact):
    """One pair's effects: ``heads`` [2, L, A], ``ffn`` [2, L], ``roles`` [2, L, R] (mean
    residual effect over the positions of each role; NaN where a role is absent)."""

    kind: ClassVar[str] = "patch-pair"
    array_fields: ClassVar[tuple[str, ...]] = ("heads", "ffn", "roles")
    heads: np.ndarray
    ffn: np.ndarray
    roles: np.ndarray
    clean: float
    corrupted: float
    skipped: str = ""
    manifest: Manifest = field(default_factory=lambda: Manifest("patch-pair"))


@dataclass(repr=False)
class PatchingStudy(Artifact):
    """Averages over pairs (index 0 = denoising, 1 = noising), with 95% t intervals."""

    kind: ClassVar[str] = "patching-study"
    array_fields: ClassVar[tuple[str, ...]] = ("heads_mean", "heads_ci", "ffn_mean", "ffn_ci",
                                               "roles_mean", "roles_ci")
    heads_mean: np.ndarray
    heads_ci: np.ndarray
    ffn_mean: np.ndarray
    ffn_ci: np.ndarray
    roles_mean: np.ndarray
    roles_ci: np.ndarray
    axiom: str
    n_pairs: int
    skipped: dict[str, int]
    axiom_holds: float  # share of used pairs with clean > corrupted
    mean_delta: float
    manifest: Manifest = field(default_factory=lambda: Manifest("patching-study"))

    def top_components(self, k: int = 5, direction: str = "denoise") -> list[dict[str, Any]]:
        """The ``k`` heads or FFN layers that matter most: the largest mean denoising
        effect (restores the most), or the smallest mean noising effect (its corruption
        alone removes the most)."""
        d = DIRECTIONS.index(direction)
        rows = [{"component": f"layer.{li}.attn.heads[{h}]", "layer": li, "head": h,
                 "effect": float(v), "ci": float(self.heads_ci[d, li, h])}
                for (li, h), v in np.ndenumerate(self.heads_mean[d])]
        rows += [{"component": f"layer.{li}.ffn.out", "layer": li, "head": None,
                  "effect": float(v), "ci": float(self.ffn_ci[d, li])}
                 for li, v in enumerate(self.ffn_mean[d])]
        sign = -1.0 if direction == "denoise" else 1.0
        return sorted(rows, key=lambda r: sign * r["effect"])[:k]

    def to_frame(self) -> pd.DataFrame:
        out = []
        for name in DIRECTIONS:
            for row in self.top_components(10**6, name):
                out.append({"direction": name, **row, "head": -1 if row["head"] is None
                            else row["head"]})
        return pd.DataFrame(out)

    def summary(self) -> str:
        return f"{self.axiom}, {self.n_pairs} pairs, axiom holds {self.axiom_holds:.0%}"


def _ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from scipy import stats

    n = np.sum(~np.isnan(values), axis=0)
    with warnings.catch_warnings():  # all-NaN cells (a role absent everywhere) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
    half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sem
    return mean, np.where(n > 1, half, np.nan)


def study_pairs(dataset: Dataset, axiom: str, n_pairs: int, seed: int = 0,
                min_relevance: int = 1, max_doc_words: int | None = 60):
    """Perturbations of up to ``n_pairs`` sampled relevant pairs, and the skip reasons."""
    if axiom not in AXIOMS:
        raise IrlensError(f"unknown axiom '{axiom}'; use {', '.join(AXIOMS)}")
    pairs = sample_pairs(dataset, n_pairs, seed=seed, min_relevance=min_relevance)
    df, n_docs = document_frequencies(d.contents for d in dataset.corpus.values())
    judged = {d for q in dataset.qrels.values() for d in q}
    fillers = filler_texts({k: v.contents for k, v in dataset.corpus.items()}, judged,
                           len(pairs), seed=seed) if axiom == "lnc1" else [""] * len(pairs)
    out, skipped = [], {}
    for (qid, doc_id), filler in zip(pairs, fillers, strict=True):
        doc = dataset.corpus[doc_id].contents
        if max_doc_words:
            doc = " ".join(doc.split()[:max_doc_words])
        pert = perturb(axiom, dataset.queries[qid], doc, df, n_docs, filler)
        if isinstance(pert, str):
            skipped[pert] = skipped.get(pert, 0) + 1
        else:
            out.append((qid, doc_id, pert))
    return out, skipped


def patching_study(model, dataset: Dataset, axiom: str = "tfc1", n_pairs: int = 100,
                   folder=None, seed: int = 0, min_relevance: int = 1,
                   max_doc_words: int | None = 60, min_delta: float = 1e-3,
                   resid: str = "positions", progress: bool = True) -> PatchingStudy:
    """Patch heads, FFN outputs and residual positions for each perturbed pair; finished
    pairs are kept in ``folder`` (a :class:`Store`) and never recomputed."""
    import tempfile

    config = {"axiom": axiom, "n_pairs": n_pairs, "seed": seed, "min_relevance":
              min_relevance, "max_doc_words": max_doc_words, "min_delta": min_delta, "resid": resid}
    perts, skipped = study_pairs(dataset, axiom, n_pairs, seed, min_relevance, max_doc_words)
    if not perts:
        raise IrlensError(f"the {axiom} perturbation applies to none of the {n_pairs} pairs "
                          f"({skipped}); use another axiom or more pairs")
    store = Store(folder or tempfile.mkdtemp(prefix="irlens-patch-"),
                  make_manifest("patching-study", config, model=model, data=dataset))

    def job(pert):
        def run() -> PairPatchResult:
            res = patch_pair(model, pert, resid=resid)
            delta = res.clean - res.corrupted
            roles = np.full((2, len(res.ffn["denoise"]), len(ROLES)), np.nan)
            for d, name in enumerate(DIRECTIONS):
                r = res.resid[name].numpy()
                if resid == "roles":
                    roles[d] = r
                    continue
                labels = np.array(res.roles[name])
                for k, role in enumerate(ROLES):
                    cols = r[:, labels == role]
                    if cols.size and not np.isnan(cols).all():
                        roles[d, :, k] = np.nanmean(cols, axis=1)
            return PairPatchResult(
                heads=np.stack([res.heads[d].numpy() for d in DIRECTIONS]),
                ffn=np.stack([res.ffn[d].numpy() for d in DIRECTIONS]), roles=roles,
                clean=res.clean, corrupted=res.corrupted,
                skipped="" if abs(delta) >= min_delta else "score difference below min_delta",
                manifest=make_manifest("patch-pair", config, model=model, data=dataset))
        return run

    jobs = {f"{qid}--{doc_id}".replace("/", "_"): job(p) for qid, doc_id, p in perts}
    done = resume(store, jobs, PairPatchResult, progress=progress, desc=f"patch {axiom}")
    used = [r for r in done.values() if not r.skipped]
    for r in done.values():
        if r.skipped:
            skipped[r.skipped] = skipped.get(r.skipped, 0) + 1
    if not used:
        raise IrlensError(f"no pair changed the score by at least min_delta={min_delta}; "
                          "lower --min-delta")
    if len(used) == 1:
        from irlens._warn import warn

        warn("only one usable pair: the effects have no confidence interval; sample more "
             "--pairs")
    hm, hc = _ci(np.stack([r.heads for r in used]))
    fm, fc = _ci(np.stack([r.ffn for r in used]))
    rm, rc = _ci(np.stack([r.roles for r in used]))
    return PatchingStudy(
        heads_mean=hm, heads_ci=hc, ffn_mean=fm, ffn_ci=fc, roles_mean=rm, roles_ci=rc,
        axiom=axiom, n_pairs=len(used), skipped=skipped,
        axiom_holds=float(np.mean([r.clean > r.corrupted for r in used])),
        mean_delta=float(np.mean([r.clean - r.corrupted for r in used])),
        manifest=make_manifest("patching-study", config, model=model, data=dataset))


def heatmap_figure(study: PatchingStudy, direction: str = "denoise"):
    """Layer x head and layer x position-role heatmaps (mean effect; CI in the title)."""
    from matplotlib.figure import Figure

    d = DIRECTIONS.index(direction)
    fig = Figure(figsize=(11, 3.6))
    for k, (data, ci, xlabels, title) in enumerate((
            (study.heads_mean[d], study.heads_ci[d], None, "attention heads"),
            (np.c_[study.roles_mean[d], study.ffn_mean[d][:, None]],
             np.c_[study.roles_ci[d], study.ffn_ci[d][:, None]],
             [*ROLES, "FFN"], "residual by token role | FFN"))):
        ax = fig.add_subplot(1, 2, k + 1)
        scale = float(np.nanmax(np.abs(data))) or 1.0
        im = ax.imshow(data, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_ylabel("layer")
        finite = ci[np.isfinite(ci)]
        width = f"±{finite.max():.2f}" if finite.size else "n/a: one pair"
        ax.set_title(f"{title} (max 95% CI {width})", fontsize=9)
        if xlabels:
            ax.set_xticks(range(len(xlabels)), xlabels, rotation=45, fontsize=8)
        else:
            ax.set_xlabel("head")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{study.axiom} {direction}: (patched - corrupted) / (clean - corrupted), "
                 f"{study.n_pairs} pairs", fontsize=10)
    fig.tight_layout()
    return fig
