"""urep.tuning: search spaces, hypermodels on tiny phantoms, the resumable grid, results, distributed mode."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import numpy as np
import pandas as pd
import pytest

from urep import tuning
from urep.data import read_image, read_mask
from urep.data.datasets import load as load_dataset
from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms
from urep.models import cdae, dilated_cnn
from urep.training.config import TrainConfig
from urep.tuning import (
    CDAEHyperModel,
    DilatedCNNHyperModel,
    HeadHyperModel,
    ResumableGridSearchOracle,
    SearchSpaceError,
    TuningData,
    make_tuner,
    parse_search_space,
)

REPO = Path(__file__).resolve().parents[1]
TINY = TrainConfig(epochs=1, batch_size=4, jit_compile=False, max_steps_per_epoch=1)
TINY_SPACE = {"kernel_size": [3, 5], "optimizer": ["sgd", "adam"]}


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cxr(tmp_path_factory):
    """Ten 16x16 CXR phantoms with lung masks: images `(10, 16, 16, 1)`, masks `(10, 16, 16, 1)`."""
    root = make_cxr_phantoms(tmp_path_factory.mktemp("cxr"), n_patients=10, views_per_patient=1, size=32, seed=3)
    df = load_dataset("folder", root)
    images = np.stack([read_image(p, size=(16, 16)) for p in df["image"]])[..., None].astype("float32")
    masks = np.stack([read_mask(p, size=(16, 16)) for p in df["mask"]])[..., None].astype("float32")
    return images, masks


@pytest.fixture(scope="module")
def doppler(tmp_path_factory):
    """Twelve 16x16 Doppler phantoms and one-hot flow labels `(12, 3)`."""
    root = make_doppler_phantoms(tmp_path_factory.mktemp("doppler"), n_patients=4, images_per_patient=3,
                                 size=32, seed=2)
    df = load_dataset("folder", root)
    images = np.stack([read_image(p, size=(16, 16)) for p in df["image"]])[..., None].astype("float32")
    flows = sorted(df["flow"].unique())
    labels = np.eye(len(flows), dtype="float32")[[flows.index(f) for f in df["flow"]]]
    return images, labels


def denoising_data(images: np.ndarray) -> TuningData:
    def corrupt(clean, epoch):
        noise = np.random.default_rng(epoch).normal(0, 0.03, clean.shape)
        return np.clip(clean + noise, 0, 1).astype("float32")

    return TuningData(images[:6], images[:6], corrupt(images[6:], 99), images[6:], corrupt=corrupt)


def product(space: dict) -> set[tuple]:
    return set(itertools.product(*space.values()))


# -- search spaces -------------------------------------------------------------------------------------------
def test_paper_spaces_are_the_defaults_and_their_sizes():
    images = np.zeros((4, 16, 16, 1), "float32")
    data = TuningData(images, images, images, images)
    assert CDAEHyperModel(data).space == {"kernel_size": (3, 5, 7), "optimizer": ("sgd", "adam", "rmsprop")}
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    space = DilatedCNNHyperModel(TuningData(images, labels, images, labels)).space
    assert np.prod([len(v) for v in space.values()]) == 3 * 2 * 3 * 3 * 3
    assert space["dropout"] == (0.1, 0.3, 0.5) and space["batch_size"] == (16, 32, 64)


def test_search_space_merges_forms_and_normalises_values():
    space = parse_search_space(
        {"optimizer": ["Adam", "sgd"], "learning_rate": {"min": "1e-4", "max": 1e-2, "sampling": "log"},
         "batch_size": 8},
        tuning.PAPER_CDAE_SPACE, CDAEHyperModel.KNOBS)
    assert space == {"kernel_size": (3, 5, 7), "optimizer": ("adam", "sgd"),
                     "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"}, "batch_size": 8}
    hp = keras_tuner.HyperParameters()
    values = tuning.declare(hp, space)
    assert values == {"kernel_size": 3, "optimizer": "adam", "learning_rate": 1e-4, "batch_size": 8}
    assert [p.name for p in hp.space] == ["kernel_size", "optimizer", "learning_rate", "batch_size"]


@pytest.mark.parametrize("space, key, message", [
    ({"filters": [4, 8]}, "filters", "unknown knob"),
    ({"kernel_size": []}, "kernel_size", "at least one value"),
    ({"kernel_size": [3, 3]}, "kernel_size", "repeated"),
    ({"kernel_size": [3, 0]}, "kernel_size", "integer >= 1"),
    ({"optimizer": ["adamw"]}, "optimizer", "one of"),
    ({"learning_rate": [-1.0]}, "learning_rate", "> 0"),
    ({"learning_rate": {"min": 1e-2, "max": 1e-4}}, "learning_rate", "min < max"),
    ({"learning_rate": {"min": 1e-4, "max": 1e-2, "steps": 3}}, "learning_rate", "unknown range key"),
    ({"batch_size": {"min": 8}}, "batch_size", "`min` and `max`"),
])
def test_bad_search_space_names_the_knob(space, key, message):
    with pytest.raises(SearchSpaceError, match=message) as info:
        parse_search_space(space, tuning.PAPER_CDAE_SPACE, CDAEHyperModel.KNOBS)
    assert info.value.key == key and str(info.value).startswith(f"search_space.{key}:")


def test_objective_must_be_logged_and_direction_is_resolved():
    images = np.zeros((4, 16, 16, 1), "float32")
    labels = np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    data = TuningData(images, labels, images, labels)
    model = DilatedCNNHyperModel(data, objective="val_accuracy")
    assert (model.objective, model.direction) == ("val_accuracy", "max")
    assert model.kt_objective.direction == "max"
    with pytest.raises(ValueError, match="'val_dice' is not logged.*val_accuracy"):
        DilatedCNNHyperModel(data, objective="val_dice")
    with pytest.raises(ValueError, match="direction"):
        DilatedCNNHyperModel(data, direction="down")


def test_trial_config_takes_the_trials_optimizer_rate_batch_and_hyperband_epochs():
    images = np.zeros((4, 16, 16, 1), "float32")
    base = TrainConfig(epochs=9, batch_size=16, optimizer={"name": "rmsprop", "momentum": 0.5}, seed=4)
    model = CDAEHyperModel(TuningData(images, images, images, images), train_config=base)
    config = model.trial_config({"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 32})
    assert (config.optimizer.name, config.optimizer.learning_rate, config.learning_rate) == ("sgd", 0.05, 0.05)
    assert (config.optimizer.momentum, config.batch_size, config.epochs, config.seed) == (0.5, 32, 9, 4)
    assert config.monitor == "val_loss" and not config.tensorboard
    kept = model.trial_config({})
    assert (kept.optimizer.name, kept.learning_rate, kept.batch_size) == ("rmsprop", 1e-3, 16)
    assert model.trial_config({}, epochs=6, initial_epoch=2).epochs == 4


def test_builders_receive_the_knobs(doppler):
    images, labels = doppler
    model = DilatedCNNHyperModel(TuningData(images, labels, images, labels),
                                 model_kwargs={"filters": [4, 4, 4, 4, 4, 4], "dense_units": 8})
    built = model.build_model({"kernel_size": 5, "dilation_rate": 3, "dropout": 0.3})
    assert built.get_layer("conv1").kernel_size == (5, 5)
    assert built.get_layer("conv4").dilation_rate == (3, 3) and built.get_layer("conv3").dilation_rate == (1, 1)
    assert built.get_layer("dropout").rate == 0.3 and built.output.shape[-1] == labels.shape[1]


# -- the grid oracle (cheap trials: run_trial returns a number) ---------------------------------------------
class CountingTuner(keras_tuner.Tuner):
    """Records each trial's values; raises KeyboardInterrupt (a kill) on call `interrupt_at`."""

    def __init__(self, *args, interrupt_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls, self.interrupt_at = [], interrupt_at

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        self.calls.append((values["a"], values["b"]))
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return float(values["a"] * 10 + values["b"])


SPACE_AB = {"a": (1, 2), "b": (1, 2, 3)}


def counting_tuner(directory, oracle_class=ResumableGridSearchOracle, max_trials=None, **kwargs):
    def build(hp):
        hp.Choice("a", list(SPACE_AB["a"]))
        hp.Choice("b", list(SPACE_AB["b"]))

    oracle = oracle_class(objective=keras_tuner.Objective("score", "min"), max_trials=max_trials)
    return CountingTuner(oracle=oracle, hypermodel=build, directory=str(directory), project_name="p", **kwargs)


def completed(tuner) -> list[tuple]:
    return sorted((t.hyperparameters.values["a"], t.hyperparameters.values["b"])
                  for t in tuner.oracle.trials.values() if t.status == "COMPLETED")


def test_stock_grid_search_does_not_resume(tmp_path):
    """Keras Tuner 1.4.8's own grid stops on reload: the reason for `ResumableGridSearchOracle`. If this
    fails after an upgrade, Keras Tuner resumes grids itself and the workaround may go."""
    stock = keras_tuner.oracles.GridSearchOracle
    first = counting_tuner(tmp_path, stock, max_trials=2)
    first.search()
    again = counting_tuner(tmp_path, stock)
    again.search()
    assert again.calls == [] and len(completed(again)) == 2


def test_resumed_grid_continues_after_max_trials(tmp_path):
    first = counting_tuner(tmp_path, max_trials=2)
    first.search()
    assert first.calls == [(1, 1), (1, 2)]
    again = counting_tuner(tmp_path, max_trials=None)
    again.search()
    assert again.calls == [(1, 3), (2, 1), (2, 2), (2, 3)]
    assert completed(again) == sorted(product(SPACE_AB))


def test_resumed_grid_after_interruption_reruns_only_the_interrupted_trial(tmp_path):
    first = counting_tuner(tmp_path, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        first.search()
    assert first.calls == [(1, 1), (1, 2), (1, 3)]
    again = counting_tuner(tmp_path)
    again.search()
    assert again.calls == [(1, 3), (2, 1), (2, 2), (2, 3)]
    assert completed(again) == sorted(product(SPACE_AB)) and len(again.oracle.trials) == 6


# -- real tiny trials ----------------------------------------------------------------------------------------
def test_grid_visits_every_combination_once_and_writes_results(cxr, tmp_path):
    images, _ = cxr
    hypermodel = CDAEHyperModel(denoising_data(images), model_kwargs={"filters": [4, 8]}, search_space=TINY_SPACE,
                                train_config=TINY)
    tuner = make_tuner("grid", hypermodel, tmp_path / "search")
    tuning.search(tuner)
    records = tuning.trial_records(tuner)
    visited = [(r.values["kernel_size"], r.values["optimizer"]) for r in records]
    assert sorted(visited) == sorted(product(TINY_SPACE)) and len(visited) == 4
    assert all(r.status == "COMPLETED" and r.objective > 0 and r.train_seconds > 0 for r in records)
    for record in records:
        assert record.objective == record.metrics["val_loss"]
        checkpoint = Path(tuner.get_trial_dir(record.trial_id)) / "checkpoint.weights.h5"
        assert checkpoint.is_file()
    paths = tuning.write_results(tuner, tmp_path / "out", "val_loss", "min")
    table = pd.read_csv(paths["trials.csv"])
    assert list(table.columns) == ["trial", "status", "kernel_size", "optimizer", "val_loss", "train_seconds"]
    assert len(table) == 4 and paths["trials.md"].read_text().count("\n") == 6
    assert paths["objective.png"].read_bytes()[:4] == b"\x89PNG"
    best = json.loads(paths["best.json"].read_text())
    assert best["value"] == pytest.approx(table["val_loss"].min())
    assert tuning.best_values(tuner) == best["values"]
    restored = tuner.get_best_models(1)[0]
    assert restored.get_layer("enc_conv1").kernel_size[0] == best["values"]["kernel_size"]


def test_killed_grid_search_resumes_without_rerunning_finished_trials(cxr, tmp_path):
    images, _ = cxr
    arrays = tmp_path / "images.npz"
    np.savez(arrays, images=images)
    log = tmp_path / "log.jsonl"
    command = [sys.executable, str(REPO / "tests" / "tuning_worker.py"), "--arrays", str(arrays),
               "--project", str(tmp_path / "search"), "--log", str(log)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run([*command, "--die-after", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    first_pid = events[0]["pid"]
    ended = [tuple(e["values"].values()) for e in events if e["event"] == "end"]
    finished_before = [tuple(e["values"].values()) for e in events if e["event"] == "end" and e["pid"] == first_pid]
    started_after = [tuple(e["values"].values()) for e in events if e["event"] == "start" and e["pid"] != first_pid]
    assert len(finished_before) == 2
    assert not set(finished_before) & set(started_after), "a finished trial ran again"
    assert sorted(ended) == sorted(product(tuning_worker_space())), "every combination finished exactly once"
    trials = [json.loads(p.read_text()) for p in (tmp_path / "search" / "search").glob("trial_*/trial.json")]
    assert len(trials) == 4 and {t["status"] for t in trials} == {"COMPLETED"}


def tuning_worker_space() -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from tuning_worker import SPACE
    finally:
        sys.path.pop(0)
    return SPACE


def test_head_trials_start_from_the_source_and_train_only_the_head(cxr, tmp_path):
    images, masks = cxr
    source = cdae(input_shape=(16, 16, 1), filters=(4, 8), name="source")
    source_weights = [w.copy() for w in source.get_weights()]
    data = TuningData(images[:6], masks[:6], images[6:], masks[6:])
    with pytest.raises(SearchSpaceError, match="dropout"):
        HeadHyperModel(data, source, kind="segmentation", search_space={"dropout": [0.5]})
    hypermodel = HeadHyperModel(data, source, kind="segmentation", train_config=TINY,
                                search_space={"optimizer": ["adam"], "learning_rate": [0.01]})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    encoder_before = [v.numpy().copy() for v in model.get_layer("enc_conv1").weights]
    head_before = model.get_layer("head_mask").get_weights()[0].copy()
    metrics = hypermodel.fit(hp, model)
    assert set(metrics) == {"loss", "val_loss", "train_seconds"}
    for before, after in zip(encoder_before, model.get_layer("enc_conv1").weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert not np.allclose(head_before, model.get_layer("head_mask").get_weights()[0])
    second = hypermodel.build(keras_tuner.HyperParameters())
    np.testing.assert_array_equal(second.get_layer("enc_conv1").get_weights()[0], source_weights[0])
    for expected, actual in zip(source_weights, source.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_classification_head_tunes_dropout_on_a_dilated_source(doppler):
    images, labels = doppler
    source = dilated_cnn(input_shape=(16, 16, 1), filters=(4, 4, 4, 8, 8, 8), dense_units=8, n_classes=3)
    data = TuningData(images[:8], labels[:8], images[8:], labels[8:])
    hypermodel = HeadHyperModel(data, source, head_kwargs={"dense_units": 8}, objective="val_accuracy",
                                train_config=TINY)
    assert hypermodel.direction == "max" and "dropout" in hypermodel.space
    hp = keras_tuner.HyperParameters()
    hp.values.update({"dropout": 0.5, "optimizer": "adam", "learning_rate": 0.01})
    model = hypermodel.build(hp)
    assert model.get_layer("head_dropout").rate == 0.5 and model.output.shape[-1] == 3
    assert not model.get_layer("conv1").trainable and model.get_layer("head_fc").trainable
    head_before = model.get_layer("head_fc").get_weights()[0].copy()
    metrics = hypermodel.fit(hp, model)
    assert not np.allclose(head_before, model.get_layer("head_fc").get_weights()[0]), "the head was trained"
    # the reported objective is the accuracy of the trained model on the validation images (one epoch: the best)
    predicted = model.predict(data.x_val, verbose=0).argmax(axis=1)
    assert metrics["val_accuracy"] == pytest.approx(float(np.mean(predicted == data.y_val.argmax(axis=1))))


def test_make_tuner_by_name(cxr, tmp_path):
    images, _ = cxr
    hypermodel = CDAEHyperModel(denoising_data(images), model_kwargs={"filters": [4, 8]}, search_space=TINY_SPACE,
                                train_config=TrainConfig(epochs=4, jit_compile=False))
    kinds = {"grid": ResumableGridSearchOracle, "random": keras_tuner.oracles.RandomSearchOracle,
             "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
             "hyperband": keras_tuner.oracles.HyperbandOracle}
    for name, oracle in kinds.items():
        tuner = make_tuner(name, hypermodel, tmp_path / name, max_trials=3)
        assert isinstance(tuner.oracle, oracle) and tuner.oracle.max_trials == 3
        assert tuner.oracle.objective.name == "val_loss"
    assert make_tuner("random", hypermodel, tmp_path / "r2").oracle.max_trials == 10
    with pytest.raises(ValueError, match="unknown tuner 'talos'"):
        make_tuner("talos", hypermodel, tmp_path / "x")
    with pytest.raises(ValueError, match="max_trials"):
        make_tuner("grid", hypermodel, tmp_path / "y", max_trials=0)


# -- distributed: one chief and two workers on loopback -------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_distributed_chief_and_two_workers_run_each_trial_once(tmp_path):
    """`urep tune` as chief + 2 workers (KERASTUNER_* variables), grid of 6: every trial runs exactly once."""
    root = make_cxr_phantoms(tmp_path / "phantoms", n_patients=10, views_per_patient=1, size=32, seed=5)
    config = {
        "name": "distributed_tiny", "image_size": [16, 16], "channels": 1, "batchnorm_momentum": 0.9,
        "data": {"cxr": {"root": str(root)}},
        "source": {"kind": "cdae", "data": ["cxr"], "model": {"filters": [4, 8]}},
        "tasks": [], "baseline": {"enabled": False}, "cross_validation": {"folds": 0},
        "explain": {"gradcam": False},
        "training": {"source": {"batch_size": 4, "epochs": 1, "max_steps_per_epoch": 1, "jit_compile": False}},
        "tuning": {"search_space": {"kernel_size": [3, 5], "optimizer": ["sgd", "adam", "rmsprop"]}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(free_port())}
    command = [sys.executable, "-m", "urep", "tune", str(path), "--out", str(out)]
    started = time.monotonic()
    processes = {}
    try:
        for role in ("chief", "tuner0", "tuner1"):
            processes[role] = subprocess.Popen(command, env={**env, "KERASTUNER_TUNER_ID": role},
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outputs = {role: p.communicate(timeout=300)[0] for role, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for role, process in processes.items():
        assert process.returncode == 0, f"{role} failed:\n{outputs[role][-3000:]}"
    elapsed = time.monotonic() - started
    assert elapsed < 300, f"the distributed search took {elapsed:.0f} s"
    trained = {role: [line for line in outputs[role].splitlines() if "urep.tuning: trial {" in line]
               for role in processes}
    assert trained["chief"] == [], "the chief serves the oracle and trains nothing"
    assert len(trained["tuner0"]) + len(trained["tuner1"]) == 6, outputs
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 6 and set(table["status"]) == {"COMPLETED"}
    visited = set(zip(table["kernel_size"], table["optimizer"], strict=True))
    assert visited == product(config["tuning"]["search_space"])
    assert (out / "best_config.yaml").is_file()
