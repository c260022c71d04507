"""`cross_stitch` as a strategy of an experiment config: trained by the pipeline, reported in the same tables."""

from __future__ import annotations

import pytest

from urep.experiments.config import ConfigError, parse_config

PHANTOM = {"generator": "cxr", "n_patients": 8, "per_patient": 2, "size": 32, "seed": 1,
           "options": {"labels": ["normal", "abnormal"]}}
TRAIN = {"epochs": 1, "batch_size": 4, "max_steps_per_epoch": 1, "early_stopping_patience": None,
         "jit_compile": False}


def tiny_config(**changes) -> dict:
    """A two-task CXR phantom experiment at 32x32, one step per phase, no folds, baseline or Grad-CAM."""
    raw = {
        "name": "tiny_cross_stitch", "image_size": [32, 32], "batchnorm_momentum": 0.9,
        "data": {"phantoms": {"phantom": PHANTOM}},
        "source": {"kind": "cdae", "data": ["phantoms"], "model": {"filters": [4, 8, 8, 8]},
                   "eval_noise": [{"kind": "gaussian", "level": 0.03}], "examples": 0},
        "tasks": [{"name": "lungs", "kind": "segmentation", "data": "phantoms"},
                  {"name": "abnormal", "kind": "classification", "data": "phantoms",
                   "classes": ["normal", "abnormal"], "head": {"dense_units": 8}}],
        "strategies": ["independent", "cross_stitch"],
        "baseline": {"enabled": False},
        "training": {"source": dict(TRAIN), "heads": dict(TRAIN), "baseline": dict(TRAIN)},
        "cross_validation": {"folds": 0},
        "statistics": {"tests": ["mcnemar"]},
        "explain": {"gradcam": False},
        "figures": False,
    }
    raw.update(changes)
    return raw


def test_cross_stitch_runs_as_a_strategy_and_is_reported_beside_the_others(tmp_path):
    """The pipeline's strategy stage on an untrained source (the source and the other strategies are the
    existing, separately tested stages): cross-stitch results land where the report's tables read them."""
    from urep.data import MeanNormalizer
    from urep.experiments.config import config_to_dict
    from urep.experiments.pipeline import UrepPipeline
    from urep.experiments.report import metrics_table

    config = parse_config(tiny_config())
    pipeline = UrepPipeline(config, tmp_path)
    pipeline.load_data()
    pipeline.source_model = pipeline.build_source_model()
    pipeline.normalizer = MeanNormalizer().fit(pipeline.task_data["lungs"].pool.images)
    pipeline.run_strategy("cross_stitch")
    results = {**pipeline.results, "config": config_to_dict(config)}
    for task in ("lungs", "abnormal"):
        assert set(results["tasks"][task]["methods"]) == {"cross_stitch"}
    heads = [m for m in results["models"] if m["method"] == "cross_stitch"]
    assert {m["task"] for m in heads} == {"lungs", "abnormal"}
    assert all(m["tasks"] == ["lungs", "abnormal"] and m["cross_stitch"]["mixing_matrices"] for m in heads)
    rows = metrics_table(results).to_markdown()
    assert rows.count("Cross-stitch") == 2
    model = pipeline.saved_models["cross_stitch/lungs"]
    assert any("cross_stitch" in layer.name for layer in model.layers)


@pytest.mark.parametrize("changes, match", [
    ({"strategies": ["cross_stitch", "joint"]}, "cannot be the first strategy"),
    ({"strategies": ["joint", "cross_stitch"],
      "tasks": [{"name": "lungs", "kind": "segmentation", "data": "phantoms"}]}, "at least 2 tasks"),
])
def test_cross_stitch_config_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config(**changes))
