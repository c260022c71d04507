"""The epoch engine: plateau and early-stopping rules, NaN stop, checkpoints and resume, run directories."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from training_helpers import autotune_spy, batches, disc_phantoms, tiny_encoder_and_heads

from urep.io import RunDirExistsError
from urep.training import NonFiniteInputError, NonFiniteLossError, Run, TrainConfig, TrainResult, train_model
from urep.training.loop import EarlyStopping, ReduceLROnPlateau

FAST = {"jit_compile": False, "progress_bar": False}


class _FakeOptimizer:
    def __init__(self, lr):
        self.learning_rate = lr


def test_reduce_lr_on_plateau_semantics():
    optimizer = _FakeOptimizer(1e-3)
    plateau = ReduceLROnPlateau(optimizer, factor=0.5, patience=2, min_lr=2e-4, mode="min", min_delta=0.01)
    reductions = [plateau.step(v) for v in [1.0, 0.995, 0.999, 0.98, 0.975, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]]
    # epoch 3: two epochs without an improvement > min_delta -> 5e-4 (and the wait restarts); 0.98 improves,
    # 0.975 does not (not < 0.98 - 0.01), 0.5 improves; epoch 8 -> 2.5e-4; epoch 10 -> min_lr; then nothing
    assert reductions == [None, None, 5e-4, None, None, None, None, 2.5e-4, None, 2e-4, None, None]
    assert optimizer.learning_rate == 2e-4


def test_early_stopping_semantics():
    early = EarlyStopping(patience=2, mode="max", min_delta=0.0)
    assert [early.step(v) for v in [0.5, 0.6, 0.6, 0.7, 0.65, 0.69]] == [False, False, False, False, False, True]
    never = EarlyStopping(patience=None, mode="min", min_delta=0.0)
    assert not any(never.step(v) for v in [1.0] * 10)


def _model_and_data(seed=0, n=16):
    x, y, _ = disc_phantoms(n, seed=seed)
    _, cls, _ = tiny_encoder_and_heads(seed=seed, dropout=0.25)
    return cls, x, y


def test_early_stopping_and_lr_reduction_trigger_in_training():
    model, x, y = _model_and_data()
    # a learning rate too small to change the validation loss by min_delta: no improvement after epoch 1
    config = TrainConfig(epochs=10, optimizer="sgd", learning_rate=1e-9, min_delta=1e-3, reduce_lr_patience=1,
                         reduce_lr_factor=0.5, min_learning_rate=0.0, early_stopping_patience=3, **FAST)
    result = train_model(model, "categorical_crossentropy", batches(x, y), batches(x, y), config, name="cls")
    assert result.epochs_run == 4 and result.stop_reason == "early_stopping"
    np.testing.assert_allclose(result.history["lr"], [1e-9, 5e-10, 2.5e-10, 1.25e-10], rtol=1e-5)
    assert result.best_epoch in (1, 2, 3, 4) and result.steps_run == 4 * 2
    json.dumps(result.to_dict())
    assert TrainResult.from_dict(result.to_dict()) == result


def test_losses_decrease_on_phantoms_within_a_few_steps():
    model, x, y = _model_and_data(n=32)
    config = TrainConfig(epochs=3, optimizer="adam", learning_rate=1e-2, monitor="loss", **FAST)
    result = train_model(model, "categorical_crossentropy", batches(x, y, seed=0), None, config, name="cls")
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.trainable_params == model.count_params() - 8  # batch-norm moving statistics
    assert result.seconds > 0 and result.seconds == pytest.approx(result.phase_seconds)


def _nan_after_first_epoch(x, y):
    bad = x.copy()
    bad[8:] = np.nan  # second batch of the epoch

    def make(epoch):
        return batches(bad if epoch >= 1 else x, y)(epoch)

    return make


def _assert_last_checkpoint_is_epoch_1(run_root):
    state = json.loads((run_root / "checkpoints" / "cls" / "state.json").read_text())
    assert state["epoch"] == 1 and not state["finished"] and state["checkpoint"] == "epochs/epoch-1"
    assert (run_root / "checkpoints" / "cls" / f"{state['best_checkpoint']}.index").exists()


def test_non_finite_input_batch_stops_with_task_epoch_step_and_keeps_the_last_checkpoint(tmp_path):
    # checked on the batch itself: a NaN image does not always reach the loss (oneDNN's max-pool turns NaN
    # into a finite number inside tf.function), so the loss check alone would miss it on some CPUs
    model, x, y = _model_and_data()
    config = TrainConfig(epochs=3, optimizer="adam", **FAST)
    with pytest.raises(NonFiniteInputError, match=r"batch of task 'cls' at epoch 2, step 2") as info:
        train_model(model, "categorical_crossentropy", _nan_after_first_epoch(x, y), batches(x, y), config,
                    name="cls", run=Run(tmp_path / "run"))
    assert (info.value.task, info.value.epoch, info.value.step) == ("cls", 2, 2)
    _assert_last_checkpoint_is_epoch_1(tmp_path / "run")


def test_the_finite_check_runs_in_the_input_pipeline_and_names_only_its_own_failures():
    import tensorflow as tf

    from urep.training.loop import finite_checked, raise_non_finite

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    labels = np.arange(6)
    clean = list(finite_checked(tf.data.Dataset.from_tensor_slices((x, labels)).batch(2)))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in clean]), x)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in clean]), labels)  # integers pass as they are
    x[3, 1] = np.inf
    iterator = iter(finite_checked(tf.data.Dataset.from_tensor_slices((x, labels)).batch(2)))
    next(iterator)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        next(iterator)
    with pytest.raises(NonFiniteInputError, match=r"batch of task 'seg' at epoch 4, step 2"):
        raise_non_finite(caught.value, "seg", 4, 2)
    other = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2] vs. [3]")
    with pytest.raises(tf.errors.InvalidArgumentError, match="Incompatible shapes"):
        raise_non_finite(other, "seg", 4, 2)


def test_diverging_loss_stops_with_task_epoch_step_and_keeps_the_last_checkpoint(tmp_path):
    model, x, y = _model_and_data()
    optimizer = keras.optimizers.SGD(0.01)

    def make(epoch):
        if epoch >= 1:  # from epoch 2 on a learning rate that blows the weights up at the first step
            optimizer.learning_rate.assign(1e30)
        return batches(x, y)(epoch)

    config = TrainConfig(epochs=3, optimizer="sgd", **FAST)
    with pytest.raises(NonFiniteLossError, match=r"task 'cls' at epoch 2, step 2") as info:
        train_model(model, "categorical_crossentropy", make, batches(x, y), config, name="cls",
                    optimizer=optimizer, run=Run(tmp_path / "run"))
    assert (info.value.task, info.value.epoch, info.value.step) == ("cls", 2, 2)
    assert not np.isfinite(info.value.value)
    _assert_last_checkpoint_is_epoch_1(tmp_path / "run")


class _Interrupt(Exception):
    pass


def _interrupt_at(x, y, epoch_to_stop):
    def make(epoch):
        if epoch == epoch_to_stop:
            raise _Interrupt
        return batches(x, y, seed=7)(epoch)

    return make


@pytest.mark.parametrize("optimizer", ["adam", {"name": "adam", "lookahead_steps": 3}], ids=["adam", "lookahead"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, optimizer):
    """With Lookahead (k 3, 2 steps per epoch) the merge falls after the resume: the slow weights come from disk."""
    x, y, _ = disc_phantoms(16, seed=1)
    config = TrainConfig(epochs=2, optimizer=optimizer, learning_rate=1e-2, seed=3, **FAST)

    straight = tiny_encoder_and_heads(seed=0, dropout=0.25)[1]
    result = train_model(straight, "categorical_crossentropy", batches(x, y, seed=7), batches(x, y), config,
                         name="cls", run=Run(tmp_path / "straight"))

    interrupted = tiny_encoder_and_heads(seed=0, dropout=0.25)[1]
    with pytest.raises(_Interrupt):
        train_model(interrupted, "categorical_crossentropy", _interrupt_at(x, y, 1), batches(x, y), config,
                    name="cls", run=Run(tmp_path / "resumed"))
    with pytest.raises(RunDirExistsError, match="--resume"):
        Run(tmp_path / "resumed")
    fresh = tiny_encoder_and_heads(seed=1, dropout=0.25)[1]  # different initial weights: all come from disk
    resumed = train_model(fresh, "categorical_crossentropy", batches(x, y, seed=7), batches(x, y), config,
                          name="cls", run=Run(tmp_path / "resumed", resume=True))
    for a, b in zip(straight.variables, fresh.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)  # bit-equal on CPU
    np.testing.assert_allclose(resumed.history["loss"], result.history["loss"], rtol=1e-6)
    assert resumed.epochs_run == 2 and resumed.steps_run == result.steps_run
    assert (tmp_path / "resumed" / "checkpoints" / "cls" / "cls.weights.h5").exists()
    # resuming a finished phase restores it without training
    again = tiny_encoder_and_heads(seed=2, dropout=0.25)[1]
    done = train_model(again, "categorical_crossentropy", _interrupt_at(x, y, 0), batches(x, y), config,
                       name="cls", run=Run(tmp_path / "resumed", resume=True))
    assert done == resumed
    for a, b in zip(fresh.variables, again.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_run_writes_tensorboard_and_best_weights(tmp_path):
    model, x, y = _model_and_data()
    run = Run(tmp_path / "run")
    result = train_model(model, "categorical_crossentropy", batches(x, y), batches(x, y),
                         TrainConfig(epochs=1, **FAST), name="cls", run=run)
    run.close()
    assert list((tmp_path / "run" / "tensorboard" / "cls" / "cls").glob("events.out.tfevents.*"))
    assert result.checkpoint.endswith("cls.weights.h5")
    with pytest.raises(RunDirExistsError):
        Run(tmp_path / "run")
    assert Run(tmp_path / "run", overwrite=True).root.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_phase_state_round_trips_through_json_and_refuses_unknown_keys():
    from urep.training.loop import PhaseState

    state = PhaseState.fresh("joint", "joint", ["cls", "seg"], 12)
    state.history["cls"]["loss"] = [0.5]
    state.task_best["seg"] = [1, 0.25]
    assert state.identity() == {"phase": "joint", "strategy": "joint", "tasks": ["cls", "seg"], "n_variables": 12}
    assert PhaseState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert state.steps == {"cls": 0, "seg": 0} and state.epoch == 0 and state.stop_reason == "max_epochs"
    with pytest.raises(ValueError, match=r"phase state of 'joint' has unknown keys \['epochs'\]"):
        PhaseState.from_dict({**state.to_dict(), "epochs": 3})


def test_epoch_dataset_turns_autotuning_off_unless_asked_and_keeps_the_values():
    from urep.data.batches import AugmentedBatches
    from urep.training.loop import epoch_dataset

    x, _, m = disc_phantoms(12, seed=4)
    source = AugmentedBatches(x, m, 4, seed=3, options={"rotation": 5, "zoom": 0.2, "horizontal_flip": True},
                              masks=True)
    off, on = epoch_dataset(source, 2), epoch_dataset(source, 2, autotune=True)
    assert off.options().autotune.enabled is False
    assert on.options().autotune.enabled is not False
    for (xa, ya), (xb, yb) in zip(off, on, strict=True):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    with pytest.raises(TypeError, match="tf.data.Dataset or a function"):
        epoch_dataset(lambda epoch: [1, 2], 0)


@pytest.mark.parametrize("autotune", [False, True])
def test_train_model_iterates_training_and_validation_data_with_the_configured_autotuning(monkeypatch, autotune):
    from urep.training import loop

    seen = autotune_spy(monkeypatch, loop)
    model, x, y = _model_and_data()
    train_model(model, "categorical_crossentropy", batches(x, y, seed=0), batches(x, y),
                TrainConfig(epochs=2, data_autotune=autotune, **FAST), name="cls")
    assert len(seen) == 5  # the step count for the progress bar, then two epochs of training and validation
    assert all((flag is not False) == autotune for flag in seen), seen
