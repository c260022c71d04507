"""`urep tune`: config forms and errors, results, resume, best config through `urep run`, head targets."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from urep.cli import main
from urep.data import MeanNormalizer
from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms
from urep.experiments.config import load_config
from urep.experiments.schema import ConfigError
from urep.experiments.tuning import load_tuning
from urep.models import dilated_cnn

SPACE = {"kernel_size": [3, 5], "optimizer": ["sgd", "adam"]}


@pytest.fixture(scope="module")
def phantom_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    return {"cxr": make_cxr_phantoms(root / "cxr", n_patients=10, views_per_patient=1, size=32, seed=4),
            "doppler": make_doppler_phantoms(root / "doppler", n_patients=6, images_per_patient=3, size=32, seed=4)}


def denoising_config(cxr_root, **tuning) -> dict:
    return {
        "name": "tune_tiny", "image_size": [16, 16], "channels": 1, "batchnorm_momentum": 0.9,
        "data": {"cxr": {"root": str(cxr_root)}},
        "source": {"kind": "cdae", "data": ["cxr"], "model": {"filters": [4, 8]}},
        "tasks": [], "baseline": {"enabled": False}, "cross_validation": {"folds": 0},
        "explain": {"gradcam": False}, "figures": False,
        "training": {"source": {"optimizer": "rmsprop", "batch_size": 4, "epochs": 1, "max_steps_per_epoch": 1,
                                "jit_compile": False}},
        "tuning": {"search_space": SPACE, **tuning},
    }


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def trial_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "urep.tuning" and r.getMessage().startswith("trial {")]


# -- config forms and errors (no training) --------------------------------------------------------------------
def test_standalone_tuning_yaml_names_its_experiment_relative_to_itself(phantom_roots, tmp_path):
    experiment = denoising_config(phantom_roots["cxr"])
    del experiment["tuning"]
    write(tmp_path / "exp.yaml", experiment)
    path = write(tmp_path / "tune.yaml", {"base": "exp.yaml", "tuning": {"tuner": "random", "max_trials": 3}})
    job = load_tuning(path, {"objective": "loss", "max_trials": None})
    assert job.experiment.name == "tune_tiny" and job.settings.tuner == "random"
    assert (job.settings.max_trials, job.settings.objective) == (3, "loss")
    assert job.settings.search_space == {} and "tuning" not in job.raw_experiment


@pytest.mark.parametrize("tuning, key, message", [
    ({"bogus": 1}, "tuning.bogus", "unknown key 'bogus'"),
    ({"tuner": "talos"}, "tuning.tuner", "one of 'grid'"),
    ({"search_space": {"kernel_size": [3, "big"]}}, "tuning.search_space.kernel_size", "integer >= 1"),
    ({"search_space": {"dilation_rate": [2, 3]}}, "tuning.search_space.dilation_rate", "unknown knob"),
    ({"target": "lungs"}, "tuning.target", "'source' or a task name"),
    ({"max_trials": 0}, "tuning.max_trials", ">= 1"),
])
def test_bad_tuning_section_names_key_and_file(phantom_roots, tmp_path, tuning, key, message):
    config = denoising_config(phantom_roots["cxr"])
    config["tuning"] = tuning
    path = write(tmp_path / "bad.yaml", config)
    with pytest.raises(ConfigError, match=message) as info:
        load_tuning(path)
    assert info.value.key == key and info.value.file == path


def test_cli_reports_config_errors_with_exit_status_2(phantom_roots, tmp_path, capsys):
    config = denoising_config(phantom_roots["cxr"], objective="val_accuracy")
    path = write(tmp_path / "c.yaml", config)
    assert main(["tune", path, "--out", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr().out
    assert "tuning.objective" in printed and "val_accuracy" in printed and path in printed
    assert main(["tune", path, "--out", str(tmp_path / "o2"), "--resume", "--overwrite"]) == 2


# -- a whole search -------------------------------------------------------------------------------------------
def test_tune_resume_and_best_config_reloads_and_trains(phantom_roots, tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    path = write(tmp_path / "exp.yaml", denoising_config(phantom_roots["cxr"]))
    out = tmp_path / "out"
    assert main(["tune", path, "--out", str(out), "--max-trials", "2"]) == 0
    assert len(trial_lines(caplog)) == 2 and len(pd.read_csv(out / "trials.csv")) == 2

    assert main(["tune", path, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().out
    changed = denoising_config(phantom_roots["cxr"], search_space={"kernel_size": [3, 7]})
    assert main(["tune", write(tmp_path / "changed.yaml", changed), "--out", str(out), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().out

    caplog.clear()
    assert main(["tune", path, "--out", str(out), "--resume"]) == 0
    resumed = trial_lines(caplog)
    assert len(resumed) == 2, "only the two combinations not tried yet run"
    table = pd.read_csv(out / "trials.csv")
    assert sorted(zip(table["kernel_size"], table["optimizer"], strict=True)) == [
        (3, "adam"), (3, "sgd"), (5, "adam"), (5, "sgd")]
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == pytest.approx(table["val_loss"].min())
    assert (out / "objective.png").is_file() and (out / "trials.md").is_file()

    tuned = load_config(out / "best_config.yaml")
    assert tuned.name == "tune_tiny_tuned"
    assert tuned.source.model == {"filters": [4, 8], "kernel_size": best["values"]["kernel_size"]}
    assert tuned.training.source.optimizer == best["values"]["optimizer"]
    assert tuned.training.source.batch_size == 4
    run = tmp_path / "run"
    assert main(["run", str(out / "best_config.yaml"), "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert [m["epochs_run"] for m in results["models"] if m["role"] == "source"] == [1]
    source = keras.models.load_model(run / "models" / "source" / "denoising.keras", compile=False)
    assert source.get_layer("enc_conv1").kernel_size[0] == best["values"]["kernel_size"]


def test_head_target_tunes_on_a_source_run(phantom_roots, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = tmp_path / "source_run"
    source = dilated_cnn(input_shape=(16, 16, 1), filters=(4, 4, 4, 8, 8, 8), dense_units=8, n_classes=3)
    (run / "models" / "source").mkdir(parents=True)
    source.save(run / "models" / "source" / "source.keras")
    normalizer = MeanNormalizer().fit(np.full((2, 16, 16, 1), 0.4, "float32"))
    (run / "normalizer.json").write_text(json.dumps(normalizer.to_dict()))
    config = {
        "name": "head_tiny", "image_size": [16, 16], "channels": 1,
        "data": {"doppler": {"root": str(phantom_roots["doppler"])}},
        "source": {"kind": "dilated_cnn", "data": ["doppler"], "label": "flow", "classes": ["MV", "MA", "TR"],
                   "model": {"filters": [4, 4, 4, 8, 8, 8], "dense_units": 8}},
        "tasks": [{"name": "mv_vs_tr", "kind": "classification", "data": "doppler", "label": "flow",
                   "classes": ["MV", "TR"], "head": {"dense_units": 8}}],
        "strategies": ["independent"], "baseline": {"enabled": False}, "cross_validation": {"folds": 0},
        "explain": {"gradcam": False},
        "training": {"heads": {"batch_size": 4, "epochs": 1, "max_steps_per_epoch": 1, "jit_compile": False}},
        "tuning": {"target": "mv_vs_tr", "source_run": "source_run", "objective": "val_accuracy",
                   "search_space": {"dropout": [0.3, 0.5], "optimizer": ["adam"], "learning_rate": [0.01]}},
    }
    path = write(tmp_path / "head.yaml", config)
    out = tmp_path / "out"
    assert main(["tune", path, "--out", str(out)]) == 0
    assert len(trial_lines(caplog)) == 2
    table = pd.read_csv(out / "trials.csv")
    assert list(table["dropout"]) == [0.3, 0.5] and "val_accuracy" in table.columns
    best = json.loads((out / "best.json").read_text())
    assert best["direction"] == "max" and best["value"] == pytest.approx(table["val_accuracy"].max())
    tuned = load_config(out / "best_config.yaml")
    task = tuned.task("mv_vs_tr")
    assert task.head == {"dense_units": 8, "dropout": best["values"]["dropout"]}
    assert (task.optimizer, task.learning_rate) == ("adam", 0.01)
