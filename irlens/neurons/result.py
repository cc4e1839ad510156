"""The result of NIG on a batch of pairs, per unit and segment: an irlens artefact."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from irlens._io import atomic_path
from irlens.artifacts import Artifact, Manifest, make_manifest
from irlens.errors import IrlensError

__all__ = ["SEGMENTS", "NeuronAttribution"]

SEGMENTS = ("cls", "query", "sep", "doc", "end", "prefix")
"""Segment axis of every aggregated array: ``[CLS] query [SEP] document [SEP]``, and a
prompt prefix (e.g. ``"query: "``) where the model has one."""

_META_KEY = b"irlens.nig"


@dataclass(repr=False)
class NeuronAttribution(Artifact):
    """Conductance of every FFN unit and attention head, per pair, summed per segment.

    Shapes (P pairs, L layers, I FFN units, A heads, S = 6 segments in :data:`SEGMENTS`):

    - ``ffn`` [P, L, S, I]: a unit's attribution summed over the tokens of each segment;
      ``ffn.sum(2)`` is the total over all positions.
    - ``attn`` [P, L, A, S, S]: a head's attribution summed over each block of query
      positions (rows) x key positions (columns); None when attention was not attributed.
    - ``score``, ``baseline_score`` [P]: ``F`` at the input and at the baseline.
    - ``resid`` [P, L]: summed conductance of the layer output (``layer.{i}.resid``). That
      layer is a cut of the network, so it equals ``F(x) - F(x')`` up to the quadrature
      error: :attr:`completeness_gap` is the per-layer check.

    FFN units and attention probabilities are *not* cuts (the residual stream bypasses
    them): their per-layer sums (:attr:`ffn_layer_sum`, :attr:`attn_layer_sum`) are the
    part of the score change that flows through them.

    ``save(folder)``/``load(folder)``: arrays in safetensors, the rest in the manifest
    (NIG parameters, model fingerprint, hook names); ``to_frame()``: one row per pair
    and layer.
    """

    kind: ClassVar[str] = "neuron-attribution"
    array_fields: ClassVar[tuple[str, ...]] = ("ffn", "attn", "score", "baseline_score",
                                               "resid")

    model_id: str
    hook_names: list[str]
    ffn: np.ndarray
    attn: np.ndarray | None
    score: np.ndarray
    baseline_score: np.ndarray
    resid: np.ndarray | None
    parameters: dict[str, Any] = field(default_factory=dict)
    segments: tuple[str, ...] = SEGMENTS
    manifest: Manifest = field(default_factory=lambda: make_manifest("neuron-attribution"),
                               compare=False)

    def summary(self) -> str:
        return f"{len(self)} pairs, {self.n_layers} layers, {self.ffn.shape[-1]} FFN units"

    def to_frame(self) -> pd.DataFrame:
        """One row per pair and layer: scores, FFN/attention sums, layer-output gap."""
        p, n = len(self), self.n_layers
        frame = {"pair": np.repeat(np.arange(p), n), "layer": np.tile(np.arange(n), p),
                 "score": np.repeat(self.score, n),
                 "baseline_score": np.repeat(self.baseline_score, n),
                 "ffn_sum": self.ffn_layer_sum.ravel()}
        if self.attn is not None:
            frame["attn_sum"] = self.attn_layer_sum.ravel()
        if self.resid is not None:
            frame["resid"] = self.resid.ravel()
            frame["gap"] = self.completeness_gap.ravel()
        return pd.DataFrame(frame)

    @classmethod
    def _from_saved(cls, **kw: Any) -> NeuronAttribution:
        kw["segments"] = tuple(kw["segments"])
        return cls(**kw)

    def __len__(self) -> int:
        return int(self.ffn.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.ffn.shape[1])

    @property
    def delta(self) -> np.ndarray:
        """``F(x) - F(x')`` per pair [P]."""
        return self.score - self.baseline_score

    @property
    def ffn_total(self) -> np.ndarray:
        """FFN attribution over all positions [P, L, I]."""
        return self.ffn.sum(axis=2)

    @property
    def attn_total(self) -> np.ndarray | None:
        """Attention attribution over all position pairs [P, L, A]."""
        return None if self.attn is None else self.attn.sum(axis=(3, 4))

    @property
    def ffn_layer_sum(self) -> np.ndarray:
        return self.ffn.sum(axis=(2, 3))

    @property
    def attn_layer_sum(self) -> np.ndarray | None:
        return None if self.attn is None else self.attn.sum(axis=(2, 3, 4))

    @property
    def completeness_gap(self) -> np.ndarray | None:
        """Per pair and layer: summed layer-output conductance minus ``F(x) - F(x')``."""
        return None if self.resid is None else self.resid - self.delta[:, None]

    def completeness(self) -> pd.DataFrame:
        """One row per layer: mean |gap| (absolute and relative to |delta|) and FFN/attention
        shares of the score change (mean over pairs)."""
        delta = self.delta[:, None]
        safe = np.where(np.abs(delta) > 1e-12, delta, np.nan)
        rows = {"layer": np.arange(self.n_layers),
                "ffn_share": np.nanmean(self.ffn_layer_sum / safe, axis=0)}
        if self.attn is not None:
            rows["attn_share"] = np.nanmean(self.attn_layer_sum / safe, axis=0)
        if self.resid is not None:
            gap = self.completeness_gap
            rows["abs_gap"] = np.abs(gap).mean(axis=0)
            rows["rel_gap"] = np.nanmean(np.abs(gap / safe), axis=0)
        return pd.DataFrame(rows)

    def subset(self, index: np.ndarray | list[int]) -> NeuronAttribution:
        idx = np.asarray(index, dtype=int)
        return NeuronAttribution(
            self.model_id, list(self.hook_names), self.ffn[idx],
            None if self.attn is None else self.attn[idx], self.score[idx],
            self.baseline_score[idx], None if self.resid is None else self.resid[idx],
            dict(self.parameters), self.segments, self.manifest)

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> str:
        """Summary as JSON: parameters, scores and per-layer completeness (not the arrays)."""
        return json.dumps({
            "model_id": self.model_id, "hook_names": self.hook_names,
            "parameters": self.parameters, "n_pairs": len(self),
            "score": self.score.tolist(), "baseline_score": self.baseline_score.tolist(),
            "completeness": self.completeness().to_dict(orient="list"),
        }, indent=2)

    def to_parquet(self, path: str | Path) -> Path:
        """One row per pair (arrays flattened, float32); shapes and parameters in metadata."""
        columns = {
            "pair": pa.array(np.arange(len(self)), pa.int32()),
            "score": pa.array(self.score, pa.float64()),
            "baseline_score": pa.array(self.baseline_score, pa.float64()),
            "ffn": _fixed_list(self.ffn),
        }
        if self.attn is not None:
            columns["attn"] = _fixed_list(self.attn)
        if self.resid is not None:
            columns["resid"] = _fixed_list(self.resid, np.float64)
        meta = {"model_id": self.model_id, "hook_names": self.hook_names,
                "parameters": self.parameters, "segments": list(self.segments),
                "ffn_shape": list(self.ffn.shape[1:]),
                "attn_shape": None if self.attn is None else list(self.attn.shape[1:])}
        table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta)})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return Path(path)

    @classmethod
    def from_parquet(cls, path: str | Path) -> NeuronAttribution:
        path = Path(path)
        if not path.is_file():
            raise IrlensError(f"no such NIG file: {path}")
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise IrlensError(f"{path} is not an irlens NIG file (no irlens.nig metadata)")
        meta = json.loads(raw)
        n = table.num_rows

        def arr(name: str, shape: list[int]) -> np.ndarray:
            flat = table.column(name).combine_chunks().flatten().to_numpy()
            return flat.reshape(n, *shape).astype(np.float64)

        attn = arr("attn", meta["attn_shape"]) if meta["attn_shape"] else None
        resid = arr("resid", [meta["ffn_shape"][0]]) if "resid" in table.column_names else None
        return cls(meta["model_id"], meta["hook_names"], arr("ffn", meta["ffn_shape"]), attn,
                   table.column("score").to_numpy(), table.column("baseline_score").to_numpy(),
                   resid, meta["parameters"], tuple(meta["segments"]))

    @classmethod
    def concat(cls, parts: list[NeuronAttribution]) -> NeuronAttribution:
        """Pairs of several results of the same configuration, in order."""
        if not parts:
            raise IrlensError("nothing to concatenate: no NIG results given")
        first = parts[0]
        for part in parts[1:]:
            if part.ffn.shape[1:] != first.ffn.shape[1:] or part.parameters != first.parameters:
                raise IrlensError("cannot concatenate NIG results of different models or "
                                  "parameters")
        return cls(first.model_id, first.hook_names,
                   np.concatenate([p.ffn for p in parts]),
                   None if first.attn is None else np.concatenate([p.attn for p in parts]),
                   np.concatenate([p.score for p in parts]),
                   np.concatenate([p.baseline_score for p in parts]),
                   None if first.resid is None else np.concatenate([p.resid for p in parts]),
                   dict(first.parameters), first.segments, first.manifest)


def _fixed_list(a: np.ndarray, dtype: type = np.float32) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
