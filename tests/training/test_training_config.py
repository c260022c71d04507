"""Training configuration: the papers' defaults, validation with clear errors, optimizers."""

from __future__ import annotations

import keras
import pytest

from urep.training.config import OptimizerConfig, TrainConfig, make_optimizer, resolve_mode


def test_defaults_follow_the_papers():
    config = TrainConfig()
    assert config.batch_size == 16 and config.learning_rate == 1e-3 and config.monitor == "val_loss"
    assert config.optimizer == OptimizerConfig("adam", 1e-3) and config.epochs == 64
    assert config.mode == "min"


def test_learning_rate_overrides_the_optimizer_and_dicts_round_trip():
    config = TrainConfig(optimizer={"name": "RMSprop", "learning_rate": 0.01}, learning_rate=0.002)
    assert config.optimizer.name == "rmsprop" and config.optimizer.learning_rate == 0.002
    assert TrainConfig(optimizer=OptimizerConfig("sgd", 0.05)).learning_rate == 0.05
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"epochs": 2.0}, "epochs must be an integer, got 2.0"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"optimizer": "adagrad"}, "optimizer name must be one of"),
    ({"learning_rate": -1}, "learning_rate must be positive, got -1"),
    ({"learning_rate": float("inf")}, "learning_rate must be positive, got inf"),
    ({"optimizer": {"name": "sgd", "momentum": 1.0}}, r"optimizer momentum must be in \[0, 1\), got 1.0"),
    ({"progress_bar": "auto"}, "progress_bar must be true or false or None, got 'auto'"),
    ({"reduce_lr_factor": 1.5}, "reduce_lr_factor must be in"),
    ({"early_stopping_patience": -1}, "early_stopping_patience"),
    ({"monitor": "accuracy"}, "monitor must be"),
    ({"mixed_precision": "float16"}, "mixed_precision must be one of 'mixed_float16', 'mixed_bfloat16' or None"),
    ({"jit_compile": "yes"}, "jit_compile must be true or false"),
    ({"max_steps_per_epoch": 0}, "max_steps_per_epoch"),
    ({"seed": -3}, "seed"),
])
def test_invalid_values_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match=r"unknown training config keys \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match=r"unknown optimizer config keys \['beta'\]"):
        OptimizerConfig.from_dict({"name": "adam", "beta": 0.1})


def test_make_optimizer_builds_each_kind():
    assert isinstance(make_optimizer("sgd"), keras.optimizers.SGD)
    rmsprop = make_optimizer(OptimizerConfig("rmsprop", 0.01, momentum=0.5))
    assert isinstance(rmsprop, keras.optimizers.RMSprop) and rmsprop.momentum == 0.5
    assert float(rmsprop.learning_rate) == pytest.approx(0.01)


def test_monitor_mode():
    assert resolve_mode("val_accuracy") == "max" and resolve_mode("val_dice_coefficient") == "max"
    assert resolve_mode("val_loss") == "min" and resolve_mode("val_psnr", "min") == "min"
    assert TrainConfig(monitor="val_auc").mode == "max"
