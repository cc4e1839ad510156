"""The artefact protocol: round trips, atomic folders, refusing foreign rows on resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from irlens.artifacts import Artifact, Manifest, Store, atomic_dir, make_manifest, resume
from irlens.errors import IrlensError


@dataclass(repr=False)
class Scores(Artifact):
    kind: ClassVar[str] = "test-scores"
    array_fields: ClassVar[tuple[str, ...]] = ("values",)

    manifest: Manifest
    values: np.ndarray
    label: str

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"i": range(len(self.values)), "value": self.values})


def _scores(seed: int = 0) -> Scores:
    rng = np.random.default_rng(seed)
    return Scores(make_manifest("test-scores", {"seed": seed}), rng.normal(size=5), "x")


def test_round_trip_keeps_arrays_fields_and_table(tmp_path):
    s = _scores(3)
    s.save(tmp_path / "a")
    back = Scores.load(tmp_path / "a")
    np.testing.assert_array_equal(back.values, s.values)
    assert back.label == "x" and back.manifest.config == {"seed": 3}
    assert pd.read_parquet(tmp_path / "a" / "table.parquet")["value"].tolist() == \
        s.values.tolist()
    assert repr(back).startswith("<Scores values[5]")


def test_load_refuses_another_kind(tmp_path):
    s = _scores()
    s.save(tmp_path / "a")
    (tmp_path / "a" / "manifest.json").write_text(
        (tmp_path / "a" / "manifest.json").read_text().replace("test-scores", "other"))
    with pytest.raises(IrlensError, match="not a 'test-scores'"):
        Scores.load(tmp_path / "a")


def test_atomic_dir_leaves_old_folder_on_error(tmp_path):
    _scores(1).save(tmp_path / "a")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "a") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("crash")
    assert Scores.load(tmp_path / "a").manifest.config == {"seed": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_resume_runs_only_missing_jobs_and_refuses_changed_config(tmp_path):
    calls: list[str] = []

    def job(key: str, seed: int):
        def run() -> Scores:
            calls.append(key)
            return _scores(seed)
        return run

    store = Store(tmp_path / "study", make_manifest("study", {"n": 2}))
    first = resume(store, {"a": job("a", 1)}, Scores)
    again = resume(Store(tmp_path / "study", make_manifest("study", {"n": 2})),
                   {"a": job("a", 1), "b": job("b", 2)}, Scores)
    assert calls == ["a", "b"]
    np.testing.assert_array_equal(again["a"].values, first["a"].values)
    with pytest.raises(IrlensError, match="config differs in n"):
        Store(tmp_path / "study", make_manifest("study", {"n": 3}))


def test_a_store_that_finished_no_job_does_not_refuse_the_corrected_rerun(tmp_path):
    """Issue 20: a run that failed after writing its manifest but before its first job
    (e.g. a bad option found late) refused the corrected rerun ("config differs")."""
    Store(tmp_path / "study", make_manifest("study", {"resid": "bogus"}))
    store = Store(tmp_path / "study", make_manifest("study", {"resid": "roles"}))
    assert store.manifest.config == {"resid": "roles"}
    assert json.loads((tmp_path / "study" / "manifest.json").read_text())["config"] == \
        {"resid": "roles"}
    resume(store, {"a": lambda: _scores(1)}, Scores)
    with pytest.raises(IrlensError, match="cannot be resumed: its config differs in resid"):
        Store(tmp_path / "study", make_manifest("study", {"resid": "positions"}))


def test_atomic_dir_puts_the_old_folder_back_when_publishing_fails(tmp_path, monkeypatch):
    import os

    _scores(1).save(tmp_path / "a")
    real = os.replace

    def crash_on_publish(src, dst):
        if ".tmp-" in os.fspath(src) and os.fspath(dst) == os.fspath(tmp_path / "a"):
            raise OSError("simulated crash while publishing")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_publish)
    with pytest.raises(OSError, match="simulated crash"):
        _scores(2).save(tmp_path / "a")
    monkeypatch.undo()
    assert Scores.load(tmp_path / "a").manifest.config == {"seed": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]
