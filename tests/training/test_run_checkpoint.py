"""Phase checkpoints (`urep.training.run.PhaseCheckpoint`): variables paired by path, not by order."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from urep.training.run import PhaseCheckpoint, match_keys, variable_keys


class _Net(keras.Model):
    """Dense `body` -> Dropout -> Dense `head`; with `head_first` the head's layer (and variables) come first."""

    def __init__(self, head_first: bool, head: str, seed: int) -> None:
        super().__init__(name="net")
        if head_first:
            self.head, self.body = keras.layers.Dense(2, name=head), keras.layers.Dense(4, name="body")
        else:
            self.body, self.head = keras.layers.Dense(4, name="body"), keras.layers.Dense(2, name=head)
        self.drop = keras.layers.Dropout(0.5, seed=seed, name="drop")

    def call(self, x, training=False):
        return self.head(self.drop(self.body(x), training=training))


def _model(build_head_first: bool, head: str = "head", seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = _Net(build_head_first, head, seed)
    model(np.zeros((1, 3), "float32"))
    return model


def _trained(model: keras.Model) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build(model.trainable_variables)
    model.variables[0].assign(np.arange(12, dtype="float32").reshape(3, 4))
    for variable in optimizer.variables:  # distinct values in every slot
        variable.assign(np.full(variable.shape, 7.0 + len(variable.path), dtype=variable.dtype))
    seed_state = next(v for v in model.variables if "seed_generator" in v.path)
    seed_state.assign(np.array([11, 13], dtype=seed_state.dtype))
    return optimizer


def _values_by_key(variables) -> dict[str, np.ndarray]:
    keys = [re.sub(r"(seed_generator|adam)_\d+", r"\1", k) for k in variable_keys(variables)]
    return dict(zip(keys, (v.numpy() for v in variables), strict=True))


def test_restore_pairs_variables_by_path_when_created_in_another_order(tmp_path):
    saved = _model(build_head_first=False, seed=0)
    optimizer = _trained(saved)
    variables = [*saved.variables, *optimizer.variables]
    checkpoint = PhaseCheckpoint(tmp_path / "phase")
    checkpoint.save(1, variables, {"epoch": 1})
    state = checkpoint.load_state()
    assert state == {"epoch": 1, "checkpoint": "epochs/epoch-1"}

    restored = _model(build_head_first=True, seed=1)  # other initial values, other variable order
    restored_optimizer = keras.optimizers.Adam(0.1)
    restored_optimizer.build(restored.trainable_variables[::-1])  # slots in another order
    restored_variables = [*restored.variables, *restored_optimizer.variables]
    assert [v.path for v in restored.variables][:2] == ["net/head/kernel", "net/head/bias"]
    assert [v.path for v in saved.variables][:2] == ["net/body/kernel", "net/body/bias"]
    PhaseCheckpoint(tmp_path / "phase").restore(state, restored_variables[::-1])  # any order of the list

    expected, found = _values_by_key(variables), _values_by_key(restored_variables)
    assert set(found) == set(expected) and len(found) == len(variables)
    for key, value in expected.items():
        np.testing.assert_array_equal(found[key], value, err_msg=key)
    np.testing.assert_array_equal(restored.get_layer("body").kernel.numpy(), np.arange(12).reshape(3, 4))
    # the dropout's seed-generator state (a global `seed_generator_N` name) travels too
    assert [v.numpy().tolist() for v in restored.variables if "seed_generator" in v.path] == [[11, 13]]


def test_restore_refuses_a_model_with_other_layer_names(tmp_path):
    saved = _model(build_head_first=False)
    checkpoint = PhaseCheckpoint(tmp_path / "phase")
    checkpoint.save(1, saved.variables, {"epoch": 1})
    other = _model(build_head_first=False, head="classifier")
    with pytest.raises(ValueError, match=r"only in the checkpoint \['net/head/bias', 'net/head/kernel'\], only in "
                                         r"the run \['net/classifier/bias', 'net/classifier/kernel'\]"):
        checkpoint.restore(checkpoint.load_state(), other.variables)


def test_best_values_are_read_without_assigning_them(tmp_path):
    model = _model(build_head_first=False)
    checkpoint = PhaseCheckpoint(tmp_path / "phase")
    name = checkpoint.save_best(3, model.variables)
    before = [v.numpy() for v in model.variables]
    model.get_layer("body").kernel.assign(np.zeros((3, 4), "float32"))
    values = checkpoint.best_values({"best_checkpoint": name}, model.variables)
    assert name == "best/best-3"
    for value, kept in zip(values, before, strict=True):
        np.testing.assert_array_equal(value, kept)
    assert not model.get_layer("body").kernel.numpy().any()
    assert checkpoint.best_values({"best_checkpoint": None}, model.variables) is None


def test_keeps_the_last_epochs_and_commits_the_state_after_the_checkpoint(tmp_path):
    model = _model(build_head_first=False)
    checkpoint = PhaseCheckpoint(tmp_path / "phase", keep=2)
    for epoch in (1, 2, 3):
        checkpoint.save(epoch, model.variables, {"epoch": epoch})
    checkpoint.save(3, model.variables, {"epoch": 3, "finished": True}, final=True)
    assert sorted(p.name for p in (tmp_path / "phase" / "epochs").glob("*.index")) == ["epoch-2.index",
                                                                                     "epoch-3.index"]
    state = json.loads((tmp_path / "phase" / "state.json").read_text())
    assert state == {"epoch": 3, "finished": True, "checkpoint": "final/final-3"}
    (tmp_path / "phase" / "final" / "final-3.index").unlink()  # a state naming a missing checkpoint
    with pytest.raises(ValueError, match=r"state.json names .*final-3, which does not exist"):
        checkpoint.load_state()
    with pytest.raises(ValueError, match="keep must be at least 2"):
        PhaseCheckpoint(tmp_path / "other", keep=1)


def test_match_keys_pairs_automatic_name_counters_in_creation_order():
    saved = ["dense/kernel", "dense_1/kernel", "adam/dense_1_kernel_momentum", "head/bias"]
    rebuilt = ["dense_12/kernel", "dense_9/kernel", "adam_2/dense_9_kernel_momentum", "head/bias"]
    assert match_keys(saved, rebuilt, "ckpt") == {"dense/kernel": 1, "dense_1/kernel": 0,
                                                   "adam/dense_1_kernel_momentum": 2, "head/bias": 3}
    with pytest.raises(ValueError, match="does not match the run's variables"):
        match_keys(saved, rebuilt[:3], "ckpt")
