"""Every `*_phantom.yaml` at tiny size: data generated and split, every model built, and the U-Rep ones
run end to end without XLA (those run end to end by another test only with UREP_SLOW_TESTS=1)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from urep.experiments.baselines import baseline_model
from urep.experiments.config import ExperimentConfig, list_configs, load_any, load_suite_parts
from urep.experiments.pipeline import UrepPipeline
from urep.experiments.scale import shrink


def _phantom_experiments() -> list[ExperimentConfig]:
    configs = []
    for name in list_configs():
        if not name.endswith("_phantom"):
            continue
        loaded = load_any(name)
        configs += load_suite_parts(loaded) if not isinstance(loaded, ExperimentConfig) else [loaded]
    return configs


PHANTOM_CONFIGS = {c.name: c for c in _phantom_experiments()}
# The MultiMix twins take over 40 s each at tiny size; test_multimix_experiment.py runs one budget end to end.
END_TO_END = sorted(name for name, config in PHANTOM_CONFIGS.items() if config.experiment == "urep")
# Run end to end at tiny size elsewhere (the demo test; test_super_resolution_source.py); here they run only
# with UREP_SLOW_TESTS=1.
COVERED_ELSEWHERE = {"cxr_heterogeneous_phantom", "doppler_heterogeneous_phantom",
                     "cxr_super_resolution_phantom"}
_SLOW = pytest.mark.skipif(os.environ.get("UREP_SLOW_TESTS") != "1",
                           reason="also run end to end by another test; set UREP_SLOW_TESTS=1")


@pytest.mark.parametrize("name", sorted(PHANTOM_CONFIGS))
def test_phantom_config_builds_data_and_models(name, tmp_path):
    config = shrink(PHANTOM_CONFIGS[name], patients=8)
    pipeline = UrepPipeline(config, tmp_path)
    pipeline.load_data()
    for task in config.tasks:
        data = pipeline.task_data[task.name]
        assert len(data.test) > 0 and len(data.folds) == max(config.cross_validation.folds, 1)
        for train, val in data.folds:
            assert len(train) and len(val)
            assert not set(data.pool.patients[train]) & set(data.pool.patients[val])
        if task.test_data is None:
            assert not set(data.pool.patients) & set(data.test.patients)
            # the same patient-level split as the source representation: its test patients are never trained on
            assert {pipeline.parts[p] for p in data.test.patients} == {"test"}
        if task.kind == "classification":
            assert set(np.unique(data.pool.labels)) <= set(range(len(task.classes)))
        else:
            assert data.pool.masks.shape[1:] == (*config.image_size, 1)
    pipeline.source_model = pipeline.build_source_model()
    pipeline.normalizer = None
    if config.tasks:
        assembly = pipeline._assembly(config.strategies[0], 0)
        batch = np.zeros((2, *config.image_size, config.channels), np.float32)
        for task in config.tasks:
            out = np.asarray(assembly.task_model(task.name)(batch, training=False))
            expected = (2, len(task.classes)) if task.kind == "classification" else (2, *config.image_size, 1)
            assert out.shape == expected, task.name
            baseline = baseline_model(pipeline, task, 0)
            assert np.asarray(baseline(batch, training=False)).shape == expected


@pytest.mark.parametrize("name", [pytest.param(n, marks=_SLOW) if n in COVERED_ELSEWHERE else n
                                  for n in END_TO_END])
def test_phantom_config_runs_end_to_end(name, tmp_path):
    from urep.experiments.runner import run_experiment

    config = shrink(PHANTOM_CONFIGS[name], patients=8, folds=2)
    results = run_experiment(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["name"] == name == results["name"]
    if config.experiment == "pairwise_transfer":
        assert set(saved["transfer"]["matrix"]) == {task.name for task in config.tasks}
        assert (tmp_path / "run" / "tables" / "transfer_matrix.csv").is_file()
        return
    for task in config.tasks:
        assert set(saved["tasks"][task.name]["methods"]) == set(config.strategies) | (
            {"baseline"} if config.baseline.enabled else set())
    for key in config.paper_tables:
        assert (tmp_path / "run" / "tables" / f"{key}.md").is_file()
