"""``irlens train cross-encoder`` keeps stdout pure JSON and stderr free of ANSI codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiny import tiny_model_dir
from tiny_data import write_beir

REPO = Path(__file__).resolve().parents[1]


def test_train_prints_only_json_on_stdout(tiny_root, tmp_path):
    """Before the fix the trainer's loss dicts came first on stdout (json.loads failed)
    and transformers' coloured load report put raw ANSI codes on stderr."""
    triples = tmp_path / "t.tsv"
    triples.write_text("what do cats eat\tcats eat mice\tthe market fell\n"
                       "stock news\tthe market fell\tcats sleep\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "irlens", "train", "cross-encoder", "--data", str(triples),
         "--base", str(tiny_model_dir(tiny_root, "bert", "bi")), "--batch-size", "4",
         "--max-length", "32", "--device", "cpu", "--eval-data",
         str(write_beir(tmp_path / "beir")), "--eval-depth", "5", "--out",
         str(tmp_path / "ce")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["model_dir"] == str(tmp_path / "ce") and payload["n_pairs"] == 4
    assert "\x1b[" not in proc.stderr and "'loss'" in proc.stderr
