"""Linear probes of relevance on per-layer representations, with control tasks.

Two tasks, both evaluated with grouped k-fold (scikit-learn ``GroupKFold``, groups =
queries, so no query is in both train and test):

- ``listwise`` (Task 1, after Reichman & Heck, EMNLP Findings 2024, as reproduced by
  Yao, Wang & Zuccon, SIGIR 2025): input [q; p_1..p_N] with one relevant passage and
  N-1 BM25 hard negatives in shuffled order; a linear layer picks the relevant one;
  chance is 1/N. ``listwise="concat"`` (default) is the reproduction's probe: one
  multinomial logistic regression over the concatenation, N outputs. ``"shared"`` is a
  linear scorer shared over candidates on [p, q*p], trained pointwise (relevant or not)
  and read as the argmax over each query's candidates.
- ``pairwise`` (Task 2): logistic regression on [q, p, q*p, |q-p|] -> relevant or not,
  one relevant and one hard negative per query (balanced classes); chance 0.5.

The control task (Hewitt & Liang, EMNLP 2019) gives every input *type*, here a passage
identity, a random behaviour fixed wherever it recurs, and trains the same probe on the
labels that behaviour implies (:func:`control_labels`): a probe can only get them by
memorising passages, and only for passages it saw in training. *Selectivity* is
accuracy minus control accuracy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irlens._warn import warn
from irlens.data import Dataset
from irlens.errors import IrlensError

__all__ = ["LISTWISE", "TASKS", "ProbeItem", "build_items", "control_labels", "control_seen",
           "fold_accuracies", "passage_values", "task_data"]

TASKS = ("listwise", "pairwise")
LISTWISE = ("concat", "shared")


@dataclass(frozen=True)
class ProbeItem:
    """One query with its candidates (shuffled); ``label`` indexes the relevant one;
    ``negative`` indexes the hard negative used by the pairwise task."""

    qid: str
    query: str
    doc_ids: tuple[str, ...]
    label: int
    negative: int


def check_items_config(n_candidates: int, depth: int, folds: int) -> None:
    """Reject impossible settings before any data or model loads."""
    if not isinstance(n_candidates, int) or n_candidates < 2:
        raise IrlensError(f"n_candidates must be an integer >= 2 (one relevant passage and at "
                          f"least one negative), got {n_candidates}")
    if depth < n_candidates - 1:
        raise IrlensError(f"N={n_candidates} needs {n_candidates - 1} hard negatives but the "
                          f"BM25 depth is {depth}; raise --depth or lower --candidates")
    if not isinstance(folds, int) or folds < 2:
        raise IrlensError(f"folds must be an integer >= 2, got {folds}")


def build_items(dataset: Dataset, n_candidates: int = 5, *, max_queries: int | None = None,
                seed: int = 0, depth: int = 100, min_relevance: int = 1, folds: int = 5,
                ) -> list[ProbeItem]:
    """Per query: one relevant passage and its ``n_candidates - 1`` top-ranked BM25
    passages judged below ``min_relevance`` (hard negatives), shuffled; queries are drawn
    in a seeded order, up to ``max_queries``. Queries with too few negatives are skipped
    (with a warning); fewer usable queries than ``folds`` is an error."""
    check_items_config(n_candidates, depth, folds)
    from irlens.retrieval import bm25_search

    judged = [q for q in dataset.query_ids if dataset.relevant(q, min_relevance)]
    if not judged:
        raise IrlensError(f"{dataset.name} ({dataset.split}) has no query with a relevant "
                          f"document (grade >= {min_relevance}); pick another split or "
                          "lower min_relevance")
    rng = random.Random(seed)
    order = sorted(judged)
    rng.shuffle(order)
    if max_queries is not None:
        order = order[:max_queries * 2 + 10]  # spare queries for the ones skipped
    run = bm25_search(dataset, k=depth, progress=False)
    items, short = [], 0
    for qid in order:
        if max_queries is not None and len(items) >= max_queries:
            break
        grades = dataset.qrels.get(qid, {})
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        negatives = [d for d, _ in ranked if grades.get(d, 0) < min_relevance]
        if len(negatives) < n_candidates - 1:
            short += 1
            continue
        positive = rng.choice(sorted(dataset.relevant(qid, min_relevance)))
        docs = [positive, *negatives[:n_candidates - 1]]
        perm = list(range(n_candidates))
        rng.shuffle(perm)
        shuffled = tuple(docs[i] for i in perm)
        label = perm.index(0)
        negative = rng.choice([i for i in range(n_candidates) if i != label])
        items.append(ProbeItem(qid, dataset.queries[qid], shuffled, label, negative))
    if len(items) < folds:
        raise IrlensError(f"only {len(items)} queries of {dataset.name} ({dataset.split}) "
                          f"have {n_candidates - 1} BM25 hard negatives in the top {depth} "
                          f"({short} have fewer), but {folds}-fold probing needs at least "
                          f"{folds}; lower --candidates or --folds, or raise --depth")
    if short:
        warn(f"{short} queries had fewer than {n_candidates - 1} BM25 hard negatives in the "
             f"top {depth} and were skipped")
    return items


def task_data(task: str, q: np.ndarray, docs: np.ndarray, items: Sequence[ProbeItem],
              listwise: str = "concat") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and query groups for one layer and pooling.

    ``q``: [n_items, H]; ``docs``: [n_items, N, H] in each item's (shuffled) order.
    Shared listwise rows are candidates (labels 0/1, grouped by item); the scorer's
    argmax per item is what :func:`fold_accuracies` scores.
    """
    groups = np.arange(len(items))
    labels = np.array([it.label for it in items])
    if task == "listwise":
        if listwise == "concat":
            return np.concatenate([q, docs.reshape(len(items), -1)], axis=1), labels, groups
        n = docs.shape[1]
        qq = np.repeat(q[:, None], n, axis=1)
        feats = np.concatenate([docs, qq * docs], axis=-1).reshape(len(items) * n, -1)
        y = (np.arange(n)[None] == labels[:, None]).astype(int).reshape(-1)
        return feats, y, np.repeat(groups, n)
    if task == "pairwise":
        rows = np.arange(len(items))
        neg = np.array([it.negative for it in items])
        p = np.concatenate([docs[rows, labels], docs[rows, neg]])
        qq = np.concatenate([q, q])
        feats = np.concatenate([qq, p, qq * p, np.abs(qq - p)], axis=1)
        y = np.concatenate([np.ones(len(items), int), np.zeros(len(items), int)])
        return feats, y, np.concatenate([groups, groups])
    raise IrlensError(f"unknown task '{task}'; use {', '.join(TASKS)}")


def _classifier(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000,
                                                              random_state=seed))


def passage_values(doc_ids: Sequence[str], seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per passage identity (a hash of seed and id): the same
    wherever the passage recurs, in any item and at any position."""
    out = np.empty(len(doc_ids))
    for i, doc in enumerate(doc_ids):
        digest = hashlib.blake2b(f"{seed}\x00{doc}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0 ** 64
    return out


def control_labels(task: str, items: Sequence[ProbeItem], listwise: str = "concat",
                   seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task, aligned with :func:`task_data`'s rows.

    Each passage identity gets a random value u (:func:`passage_values`). Listwise: the
    "relevant" candidate is the one with the largest u (uniform over positions, as the
    real label; for the shared scorer, one-hot over the candidates). Pairwise: a row is
    labelled 1 when its passage's u < 0.5 (Bernoulli(0.5), the real labels' rate). The
    labels are a fixed function of passage identities, so a probe predicts a test row's
    only by having memorised its passages in training."""
    if task not in TASKS:
        raise IrlensError(f"unknown task '{task}'; use {', '.join(TASKS)}")
    n = len(items[0].doc_ids)
    u = passage_values([d for it in items for d in it.doc_ids], seed).reshape(len(items), n)
    if task == "listwise":
        pick = u.argmax(1)
        if listwise == "concat":
            return pick
        return (np.arange(n)[None] == pick[:, None]).astype(int).reshape(-1)
    rows = np.arange(len(items))
    labels = np.array([it.label for it in items])
    neg = np.array([it.negative for it in items])
    return (np.concatenate([u[rows, labels], u[rows, neg]]) < 0.5).astype(int)


def _row_passages(task: str, items: Sequence[ProbeItem]) -> list[set[str]]:
    """The passages each :func:`task_data` row shows (listwise concat: all candidates)."""
    if task == "pairwise":
        return ([{it.doc_ids[it.label]} for it in items]
                + [{it.doc_ids[it.negative]} for it in items])
    return [set(it.doc_ids) for it in items]


def control_seen(task: str, items: Sequence[ProbeItem], groups: np.ndarray,
                 folds: int = 5) -> float:
    """Share of test rows (over :func:`fold_accuracies`' folds) whose passages all occur
    in that fold's training rows: the only rows a memorising probe can get right on the
    control task beyond chance. (Shared listwise rows are candidates: one passage each.)"""
    from sklearn.model_selection import GroupKFold

    shown = _row_passages(task, items)
    if len(groups) != len(shown):  # shared listwise: one row per candidate
        shown = [{d} for it in items for d in it.doc_ids]
    seen = total = 0
    for train, test in GroupKFold(n_splits=folds).split(groups, groups=groups):
        known = set().union(*(shown[i] for i in train))
        seen += sum(shown[i] <= known for i in test)
        total += len(test)
    return seen / max(total, 1)


def fold_accuracies(task: str, feats: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
                    folds: int = 5, c: float = 1.0, seed: int = 0, listwise: str = "concat",
                    ) -> np.ndarray:
    """Test accuracy per fold of grouped k-fold; for the shared listwise scorer, the
    accuracy of the argmax over each test item's candidates."""
    from sklearn.model_selection import GroupKFold

    shared = task == "listwise" and listwise == "shared"
    n_groups = len(np.unique(groups))
    if n_groups < folds:
        raise IrlensError(f"{n_groups} queries cannot fill {folds} folds; lower --folds")
    out = np.zeros(folds)
    splitter = GroupKFold(n_splits=folds)
    for k, (train, test) in enumerate(splitter.split(feats, y, groups)):
        if len(np.unique(y[train])) < 2:
            out[k] = np.mean(y[test] == y[train][0])
            continue
        clf = _classifier(c, seed).fit(feats[train], y[train])
        if shared:
            scores = clf.decision_function(feats[test])
            items = groups[test]
            n = len(test) // len(np.unique(items))
            picked = scores.reshape(-1, n).argmax(1)
            truth = y[test].reshape(-1, n).argmax(1)
            out[k] = np.mean(picked == truth)
        else:
            out[k] = np.mean(clf.predict(feats[test]) == y[test])
    return out
