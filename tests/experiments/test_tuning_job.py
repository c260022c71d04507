"""urep.experiments.tuning: where `best_config` puts the best values (no training; the CLI tests run searches)."""

from __future__ import annotations

from urep.experiments.tuning import TuningJob, TuningSettings, best_config

RAW = {
    "name": "exp",
    "source": {"kind": "cdae", "data": ["cxr"]},
    "tasks": [{"name": "cls", "kind": "classification", "data": "cxr", "head": {"dense_units": 32}},
              {"name": "seg", "kind": "segmentation", "data": "cxr"}],
    "training": None,
}


def test_source_values_go_to_source_model_and_training_source_without_touching_the_input():
    job = TuningJob(TuningSettings(), None, RAW, "exp.yaml")
    tuned = best_config(job, {"kernel_size": 5, "dilation_rate": 2, "optimizer": "adam", "batch_size": 16})
    assert tuned["name"] == "exp_tuned"
    assert tuned["source"]["model"] == {"kernel_size": 5, "dilation_rate": 2}
    assert tuned["training"] == {"source": {"optimizer": "adam", "batch_size": 16}}
    assert RAW["name"] == "exp" and "model" not in RAW["source"] and RAW["training"] is None


def test_head_values_go_to_the_task_its_head_and_training_heads():
    job = TuningJob(TuningSettings(target="cls"), None, RAW, "exp.yaml")
    tuned = best_config(job, {"dropout": 0.3, "optimizer": "sgd", "learning_rate": 1e-3, "batch_size": 8})
    task = tuned["tasks"][0]
    assert task["head"] == {"dense_units": 32, "dropout": 0.3}
    assert task["optimizer"] == "sgd" and task["learning_rate"] == 1e-3
    assert tuned["training"] == {"heads": {"batch_size": 8}}
    assert tuned["tasks"][1] == RAW["tasks"][1]
    assert RAW["tasks"][0]["head"] == {"dense_units": 32}
