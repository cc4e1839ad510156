"""Atomic writes of tables and figures: a write that fails midway leaves the previous file
untouched and no partial or temporary file behind (what fidelity.csv, steering.csv,
ablate-top.csv and the patching heatmaps are written through)."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from irlens._io import write_table
from irlens.report import figure_png


class _Boom:
    def __str__(self) -> str:
        raise RuntimeError("disk full")

    __repr__ = __str__
    __format__ = lambda self, spec: str(self)  # noqa: E731


@pytest.mark.parametrize("name", ["fidelity.csv", "fidelity.parquet"])
def test_a_table_write_that_fails_midway_keeps_the_previous_file(tmp_path, name):
    path = tmp_path / name
    good = pd.DataFrame({"k": [16, 64], "kept": [0.93, 0.96]})
    write_table(path, good)
    before = path.read_bytes()
    bad = pd.DataFrame({"k": [1, 2, 3], "kept": [0.1, 0.2, _Boom()]})
    with pytest.raises(Exception):  # noqa: B017 - pandas or pyarrow, either way
        write_table(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    read = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    pd.testing.assert_frame_equal(read, good)


def test_a_figure_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    path = tmp_path / "heatmap-denoise.png"
    fig = Figure()
    fig.add_subplot().imshow([[0, 1], [1, 0]])
    figure_png(fig, path, dpi=50)
    before = path.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    class Broken:
        def savefig(self, target, **kwargs):
            # writes part of the image, then fails (a full disk, Ctrl-C)
            target.write(before[:100])
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        figure_png(Broken(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
