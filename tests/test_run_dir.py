"""`urep.run_dir.RunDir`: the run directory layout, and the writers that follow it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from urep.run_dir import RunDir


def test_paths_of_the_documented_layout(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.root == tmp_path and isinstance(run.root, Path)
    expected = {
        "marker": ".urep-run", "config": "config.yaml", "log": "log.txt", "results": "results.json",
        "fingerprint": "fingerprint.json", "report": "report.md", "tables": "tables", "figures": "figures",
        "models": "models", "manifest": "models/manifest.json", "normalizer": "normalizer.json",
        "checkpoints": "checkpoints", "tensorboard": "tensorboard", "data": "data", "explain": "explain",
    }
    for name, relative in expected.items():
        assert getattr(run, name) == tmp_path / relative, name
    assert run.checkpoint("independent/seg") == tmp_path / "checkpoints" / "independent" / "seg"
    assert run.table("journal_table2", "csv") == tmp_path / "tables" / "journal_table2.csv"
    assert run.model("joint", "lung") == tmp_path / "models" / "joint" / "lung.keras"
    assert run.relative(run.model("source", "denoising")) == "models/source/denoising.keras"
    assert not any(tmp_path.iterdir())  # naming paths creates nothing
    assert RunDir(tmp_path) == run and hash(RunDir(tmp_path)) == hash(run)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.root = tmp_path / "other"
    with pytest.raises(ValueError, match="is not in the subpath"):
        run.relative(tmp_path.parent / "elsewhere.keras")


def test_run_dir_helpers_use_the_marker_run_dir_names(tmp_path):
    from urep.io import MARKER, is_run_dir, prepare_run_dir

    folder = prepare_run_dir(tmp_path / "run")
    assert RunDir(folder).marker.is_file() and MARKER == RunDir(folder).marker.name
    assert is_run_dir(folder)
    RunDir(folder).marker.unlink()
    assert not is_run_dir(folder)


def test_training_run_writes_checkpoints_and_tensorboard_where_run_dir_says(tmp_path):
    from urep.training.run import Run

    run = Run(tmp_path / "run")
    layout = RunDir(run.root)
    assert run.checkpoint("independent/cls").directory == layout.checkpoint("independent/cls")
    run.log_scalars("source", "cdae", 0, {"loss": 1.0})
    run.close()
    assert any((layout.tensorboard / "source" / "cdae").iterdir())


def test_save_and_load_run_models_follow_the_layout(tmp_path):
    import keras
    import numpy as np

    from urep.data import MeanNormalizer
    from urep.explain import TaskEntry, load_run_models, save_run_models

    layout = RunDir(tmp_path)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    entry = TaskEntry(name="cls", path=layout.relative(layout.model("joint", "cls")), kind="classification",
                      classes=("a", "b"), image_size=(8, 8), channels=1, strategy="joint",
                      gradcam_layer="dense")
    normalizer = MeanNormalizer().fit(np.full((2, 8, 8, 1), 0.5, np.float32))
    assert save_run_models(tmp_path, {"cls": model}, {"cls": entry}, normalizer) == layout.manifest
    assert layout.model("joint", "cls").is_file() and layout.normalizer.is_file()
    assert load_run_models(tmp_path).entry("cls").path == "models/joint/cls.keras"
