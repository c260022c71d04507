"""`urep run --resume` on a run whose heads had all finished (no results.json yet): every head phase of every
strategy, and the baselines, is restored from its checkpoint, none is trained again, and the results repeat."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from urep.experiments.config import load_any
from urep.experiments.runner import run_experiment
from urep.experiments.scale import shrink


def test_resume_restores_every_finished_head_phase(tmp_path, monkeypatch):
    from urep.training.loop import PhaseEngine

    config = shrink(load_any("cxr_heterogeneous_phantom"), patients=8, folds=0, epochs=1)
    config = dataclasses.replace(config, strategies=("independent", "alternating", "joint"),
                                 explain=dataclasses.replace(config.explain, gradcam=False))
    first = run_experiment(config, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "results.json").unlink()
    phases = {str(p.relative_to(tmp_path / "b").parent)
              for p in (tmp_path / "b" / "checkpoints").rglob("state.json")}
    per_task = {f"checkpoints/{method}/fold0/{task.name}"
                for method in ("independent", "baseline") for task in config.tasks}
    assert phases == {"checkpoints/source", "checkpoints/alternating/fold0",
                      "checkpoints/joint/fold0", *per_task}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished phase was trained again")

    monkeypatch.setattr(PhaseEngine, "_one_epoch", no_training)
    second = run_experiment(config, tmp_path / "b", resume=True)
    assert json.loads((tmp_path / "b" / "results.json").read_text())["resumed"] is True
    for task, entry in first["tasks"].items():
        assert set(entry["methods"]) == {"independent", "alternating", "joint", "baseline"}
        for method, measured in entry["methods"].items():
            assert second["tasks"][task]["methods"][method]["metrics"] == pytest.approx(measured["metrics"]), (
                task, method)
