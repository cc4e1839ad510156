"""The result of attributing one (query, document) score to tokens.

A :class:`TokenAttribution` holds one pair: every token the model saw (query side then
document side for a bi-encoder, the one ``[CLS] q [SEP] d [SEP]`` sequence for a
cross-encoder), its segment label (:class:`irlens.models.Segment`), its score, and the
word it belongs to; plus the explained score, the baseline score and the completeness
gap. ``words()`` merges word pieces into words (a word's score is the sum of its pieces).
A result is an :class:`~irlens.artifacts.Artifact`: ``save(folder)``/``load(folder)``
(per-token arrays in safetensors, the rest and the manifest in JSON), ``to_frame()`` (one
row per token) and a short ``repr``; lists of results also round-trip through JSON and
Parquet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from irlens._io import atomic_path
from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.errors import IrlensError
from irlens.models import Segment

__all__ = ["TokenAttribution", "Word"]


@dataclass(frozen=True)
class Word:
    """A whole word: its text, summed score, segment and whether a space precedes it."""

    text: str
    score: float
    segment: int
    space_before: bool


@dataclass(repr=False)
class TokenAttribution(Artifact):
    """Token attributions of one (query, document) pair.

    Attributes:
        query, doc: the texts as the model saw them (prefix added, ``max_doc_tokens`` cut).
        tokens, scores, segments: one entry per token; special tokens score 0.
        word_ids: index of the word a token belongs to (-1 for special tokens).
        offsets: (start, end) of each token in its own text (query or doc).
        score: F(x), the explained scalar (``output``: similarity, logit or prob).
        baseline_score: F(x') with every explained token at its baseline (NaN if none).
        expected_sum: what the scores should sum to: F(x) - F(x') for IG; for SIG the sum
            over tokens of F(x) - F(x with that token at its baseline).
        completeness_gap: |sum(scores) - expected_sum| for IG; for SIG the sum over
            tokens of each path's gap. NaN for methods without completeness.
        gap_scale: |F(x) - F(x')| (IG) or the sum of |per-token deltas| (SIG).
        method, parameters, model_id, output: what produced the numbers.
        truncated: the query or document was cut to fit (``max_length``/``max_doc_tokens``).
        manifest: the method spec, parameters and model fingerprint.
    """

    kind: ClassVar[str] = "token-attribution"
    array_fields: ClassVar[tuple[str, ...]] = ("scores", "segments", "word_ids", "offsets")

    query: str
    doc: str
    tokens: list[str]
    scores: list[float]
    segments: list[int]
    word_ids: list[int]
    offsets: list[tuple[int, int]]
    score: float
    baseline_score: float
    expected_sum: float
    completeness_gap: float
    gap_scale: float
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    output: str = "similarity"
    truncated: bool = False
    manifest: Manifest = field(default_factory=lambda: make_manifest("token-attribution"),
                               compare=False)

    def summary(self) -> str:
        gap = "" if math.isnan(self.relative_gap) else f", gap {self.relative_gap:.1%}"
        return (f"{self.method} {len(self.tokens)} tokens, score {self.score:.4f}, "
                f"baseline {self.baseline_score:.4f}{gap}")

    def to_frame(self) -> pd.DataFrame:
        """One row per token: position, token, segment, word id, offsets and score."""
        return pd.DataFrame({
            "position": np.arange(len(self.tokens)), "token": self.tokens,
            "segment": self.segments, "word_id": self.word_ids,
            "start": [o[0] for o in self.offsets], "end": [o[1] for o in self.offsets],
            "score": self.scores})

    @classmethod
    def _from_saved(cls, **kw: Any) -> TokenAttribution:
        kw["scores"] = [float(v) for v in kw["scores"]]
        kw["segments"] = [int(v) for v in kw["segments"]]
        kw["word_ids"] = [int(v) for v in kw["word_ids"]]
        kw["offsets"] = [(int(a), int(b)) for a, b in np.asarray(kw["offsets"]).reshape(-1, 2)]
        return cls(**kw)

    @property
    def relative_gap(self) -> float:
        """Completeness gap as a fraction of ``gap_scale`` (NaN without completeness)."""
        if math.isnan(self.completeness_gap):
            return math.nan
        return self.completeness_gap / max(self.gap_scale, 1e-12)

    def words(self) -> list[Word]:
        """Word pieces merged into words, in order; special tokens are left out."""
        words: list[Word] = []
        starts: list[int] = []
        current = -1
        prev_end: dict[int, int] = {}
        for tok_word, seg, score, (start, end) in zip(self.word_ids, self.segments,
                                                      self.scores, self.offsets, strict=True):
            if tok_word < 0:
                continue
            text = self.query if seg == Segment.QUERY else self.doc
            if tok_word != current:
                last = prev_end.get(seg, -1)
                words.append(Word(text[start:end], float(score), seg, 0 <= last < start))
                starts.append(start)
                current = tok_word
            else:
                w = words[-1]
                words[-1] = Word(text[starts[-1]:end], w.score + float(score), w.segment,
                                 w.space_before)
            prev_end[seg] = end
        return words

    def top_tokens(self, k: int, segment: int | None = None) -> list[int]:
        """Positions of the ``k`` highest-scoring non-special tokens (of ``segment``)."""
        keep = [i for i, w in enumerate(self.word_ids)
                if w >= 0 and (segment is None or self.segments[i] == segment)]
        keep.sort(key=lambda i: -self.scores[i])
        return keep[:k]

    def normalized_scores(self) -> list[float]:
        """Scores divided by their L2 norm (the SIG paper's word-score normalisation)."""
        norm = math.sqrt(sum(s * s for s in self.scores)) or 1.0
        return [s / norm for s in self.scores]

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("manifest")
        out["offsets"] = [list(o) for o in self.offsets]
        for key in ("baseline_score", "expected_sum", "completeness_gap", "gap_scale"):
            if math.isnan(out[key]):
                out[key] = None
        out["relative_gap"] = None if math.isnan(self.relative_gap) else self.relative_gap
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenAttribution:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["offsets"] = [tuple(o) for o in kwargs["offsets"]]
        for key in ("baseline_score", "expected_sum", "completeness_gap", "gap_scale"):
            if kwargs.get(key) is None:
                kwargs[key] = math.nan
        return cls(**kwargs)

    def to_json(self) -> str:
        """One result as a JSON string (NaN written as null)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> TokenAttribution:
        return cls.from_dict(json.loads(text))

    @staticmethod
    def to_parquet(results: list[TokenAttribution], path: str | Path) -> Path:
        """Write a list of results to Parquet, one row per pair, atomically."""
        import pandas as pd

        rows = []
        for r in results:
            row = r.to_dict()
            row["parameters"] = json.dumps(row["parameters"], sort_keys=True)
            rows.append(row)
        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)
        return Path(path)

    @classmethod
    def from_parquet(cls, path: str | Path) -> list[TokenAttribution]:
        """Read results written by :meth:`to_parquet`."""
        import pandas as pd

        if not Path(path).is_file():
            raise IrlensError(f"no attribution file at {path}; write one with to_parquet first")
        out = []
        for row in pd.read_parquet(path).to_dict("records"):
            row = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            row["offsets"] = [list(o) for o in row["offsets"]]
            row["parameters"] = json.loads(row["parameters"])
            for key in ("baseline_score", "expected_sum", "completeness_gap", "gap_scale"):
                if row.get(key) is not None and math.isnan(row[key]):
                    row[key] = None
            out.append(cls.from_dict(row))
        return out
