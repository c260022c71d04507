"""`urep.plotting.new_figure` and the figure writers built on it leave matplotlib's backend and pyplot alone.

A notebook that imports urep keeps its inline backend: writing a figure file must neither call
`matplotlib.use` nor open pyplot figures.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

PNG_MAGIC = b"\x89PNG"


@pytest.fixture
def other_backend():
    """A non-Agg backend in force while the test runs (standing in for a notebook's inline backend)."""
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    yield "svg"
    plt.switch_backend(before)


def _segmentation_overlays(tmp_path):
    from urep.experiments.figures import segmentation_overlays

    images = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    masks = (images > 0.5).astype(np.float32)
    return [segmentation_overlays(images, masks, images, "lungs", tmp_path / "overlay.png")]


def _transfer_matrix(tmp_path):
    from urep.relatedness import plot_transfer_matrix

    matrix = pd.DataFrame([[np.nan, 0.1], [-0.2, np.nan]], index=["a", "b"], columns=["a", "b"])
    return [plot_transfer_matrix(matrix, tmp_path / "transfer.png")]


def _sample_grids(tmp_path):
    from urep.data.phantoms.grid import write_sample_grids

    return write_sample_grids(tmp_path, size=32, per_row=2)


def _tuning_objective(tmp_path):
    from urep.tuning import TrialRecord, plot_objective

    records = [TrialRecord(str(i), "COMPLETED" if value else "FAILED", {}, value, None, {})
               for i, value in enumerate((0.5, 0.3, None))]
    return [plot_objective(records, "val_loss", "min", tmp_path / "objective.png")]


@pytest.mark.parametrize("write", [_segmentation_overlays, _transfer_matrix, _sample_grids, _tuning_objective])
def test_writers_keep_backend_and_pyplot_untouched(tmp_path, other_backend, write):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    paths = write(tmp_path)
    assert paths and all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)
    assert matplotlib.get_backend() == other_backend
    assert plt.get_fignums() == open_before


def test_new_figure_renders_without_pyplot(tmp_path):
    from urep.plotting import new_figure

    fig = new_figure(figsize=(2, 2), dpi=50)
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "line.svg")
    fig.savefig(tmp_path / "line.png")
    assert (tmp_path / "line.png").read_bytes().startswith(PNG_MAGIC)
    assert b"<svg" in (tmp_path / "line.svg").read_bytes()
