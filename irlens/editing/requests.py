"""Edit requests drawn from real data: what to insert into or remove from a ranking.

- **remove**: (test query, its top-ranked relevant document). After the edit the query
  should no longer retrieve that document in its top 10.
- **insert**: (test query, a document neither judged relevant nor in its current top
  100), drawn at random with a seed. After the edit the query should retrieve it in its
  top 10.

Each request carries the rivals the edit must beat (insert: the current top 30) or fall
behind (remove: the other documents of the current top 40), and its generalisation queries: other
queries judging the document relevant, and the edit query with its words reordered and
with one word dropped (Meng et al. 2022's paraphrase idea, built without an LLM).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from irlens.data import Dataset
from irlens.errors import IrlensError
from irlens.models import BiEncoder

__all__ = ["KINDS", "EditRequest", "Ranking", "check_request", "make_requests", "rank_corpus"]

KINDS = ("insert", "remove")


@dataclass
class EditRequest:
    """One fact to insert or remove: ``query`` should (not) retrieve ``doc_id``."""

    kind: str
    query_id: str
    query: str
    doc_id: str
    doc: str
    competitors: list[str] = field(default_factory=list)  # texts to beat / fall behind
    rank_before: int = 0
    paraphrases: list[str] = field(default_factory=list)
    related_queries: dict[str, str] = field(default_factory=dict)  # qid -> text
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise IrlensError(f"unknown edit kind '{self.kind}'; use insert or remove")


@dataclass
class Ranking:
    """Every test query's scores over the whole corpus, from one model state."""

    doc_ids: list[str]
    query_ids: list[str]
    docs: torch.Tensor  # [n_docs, dim]
    queries: torch.Tensor  # [n_queries, dim]
    scores: torch.Tensor  # [n_queries, n_docs]

    def top(self, qid: str, k: int) -> list[str]:
        row = self.scores[self.query_ids.index(qid)]
        return [self.doc_ids[j] for j in torch.topk(row, min(k, len(row))).indices.tolist()]

    def rank(self, qid: str, doc_id: str) -> int:
        row = self.scores[self.query_ids.index(qid)]
        return 1 + int((row > row[self.doc_ids.index(doc_id)]).sum())


@torch.no_grad()
def rank_corpus(model: BiEncoder, dataset: Dataset, docs: torch.Tensor | None = None,
                progress: bool = False) -> Ranking:
    """Encode the corpus (unless ``docs`` is given) and the queries, score all pairs."""
    if docs is None:
        docs = model.encode_docs(dataset.doc_texts(), progress=progress)
    queries = model.encode_queries(dataset.query_texts())
    return Ranking(dataset.doc_ids, dataset.query_ids, docs, queries,
                   model.similarity(queries, docs))


def _paraphrases(query: str, rng: random.Random) -> list[str]:
    words = query.split()
    if len(words) < 2:
        return []
    shuffled = words[:]
    while shuffled == words:
        rng.shuffle(shuffled)
    drop = rng.randrange(len(words))
    return [" ".join(shuffled), " ".join(w for i, w in enumerate(words) if i != drop)]


def make_requests(model: BiEncoder, dataset: Dataset, kind: str, n: int, *, seed: int = 0,
                  ranking: Ranking | None = None, progress: bool = False
                  ) -> list[EditRequest]:
    """``n`` edit requests of ``kind`` from ``dataset``'s judged queries (see module doc)."""
    if kind not in KINDS:
        raise IrlensError(f"unknown edit kind '{kind}'; use insert or remove")
    if n < 1:
        raise IrlensError(f"n must be >= 1 edit request, got {n}")
    if not dataset.qrels:
        raise IrlensError(f"{dataset.name} has no judged queries in split {dataset.split}; "
                          "pick a split with qrels")
    ranking = ranking or rank_corpus(model, dataset, progress=progress)
    rng = random.Random(seed)
    texts = dict(zip(dataset.doc_ids, dataset.doc_texts(), strict=True))
    qids = [q for q in dataset.query_ids if dataset.relevant(q)]
    rng.shuffle(qids)
    requests = []
    for qid in qids:
        relevant = dataset.relevant(qid)
        if kind == "remove":
            top = ranking.top(qid, 41)
            hits = [d for d in top[:10] if d in relevant]
            if not hits:
                continue
            doc_id, competitors = hits[0], [d for d in top if d != hits[0]][:40]
        else:
            top100 = set(ranking.top(qid, 100))
            pool = [d for d in dataset.doc_ids if d not in top100 and d not in relevant]
            if not pool:
                continue
            doc_id, competitors = rng.choice(pool), ranking.top(qid, 30)
        # other queries judging the document relevant, where the edit has work to do
        related = {q: dataset.queries[q] for q in dataset.query_ids
                   if q != qid and doc_id in dataset.relevant(q)
                   and (ranking.rank(q, doc_id) <= 10) == (kind == "remove")}
        requests.append(EditRequest(
            kind, qid, dataset.queries[qid], doc_id, texts[doc_id],
            [texts[d] for d in competitors], ranking.rank(qid, doc_id),
            _paraphrases(dataset.queries[qid], rng), related))
        if len(requests) == n:
            break
    if not requests:
        raise IrlensError(f"no {kind} request could be made from {dataset.name}: no judged "
                          "query has a relevant document in its top 10" if kind == "remove"
                          else "every document is relevant or in the top 100")
    return requests


def check_request(request: EditRequest, ranking: Ranking) -> None:
    """One-line errors for requests that cannot be measured or need no edit."""
    if request.doc_id not in ranking.doc_ids:
        raise IrlensError(f"document '{request.doc_id}' is not in the corpus; pick a "
                          "document id from the dataset")
    if request.query_id not in ranking.query_ids:
        raise IrlensError(f"query '{request.query_id}' is not among the split's queries")
    rank = ranking.rank(request.query_id, request.doc_id)
    if request.kind == "insert" and rank <= 10:
        raise IrlensError(f"document '{request.doc_id}' is already in the top 10 of query "
                          f"'{request.query_id}' (rank {rank}); nothing to insert")
    if request.kind == "remove" and rank > 10:
        raise IrlensError(f"document '{request.doc_id}' is not in the top 10 of query "
                          f"'{request.query_id}' (rank {rank}); nothing to remove")
