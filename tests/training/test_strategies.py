"""Fine-tuning strategies on a tiny shared encoder: what each one updates, schedules and sums."""

from __future__ import annotations

import numpy as np
import pytest
from training_helpers import autotune_spy, batches, disc_phantoms, tiny_encoder_and_heads

from urep.training import STRATEGIES, NonFiniteInputError, Task, TrainConfig, finetune
from urep.training.strategies import alternating_ratio

FAST = {"jit_compile": False, "progress_bar": False, "optimizer": "adam", "learning_rate": 1e-2}


def _tasks(cls, seg, x, y, m, n_seg=None, seg_weight=1.0):
    n_seg = n_seg or len(x)
    return [
        Task("cls", "classification", cls, "categorical_crossentropy", batches(x, y, seed=1), batches(x, y),
             n_train=len(x)),
        Task("seg", "segmentation", seg, "binary_crossentropy", batches(x[:n_seg], m[:n_seg], seed=2),
             batches(x, m), n_train=n_seg, weight=seg_weight),
    ]


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _head_vars(model, encoder):
    shared = {id(v) for v in encoder.weights}
    return [v for v in model.weights if id(v) not in shared]


def test_registry_names():
    assert {"independent", "alternating", "joint"} <= set(STRATEGIES)


def test_every_strategy_resolves_lazily_through_one_registry_in_a_fresh_interpreter():
    """`finetune(..., "cross_stitch")` reaches the strategy without importing its module first."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from urep.training import Task, TrainConfig, finetune\n"
        "from urep.training.strategies import STRATEGIES, independent, resolve_strategy, strategy_names\n"
        "assert not {'urep.training.cross_stitch', 'urep.training.multimix'} & set(sys.modules)\n"
        "assert strategy_names() == ['alternating', 'cross_stitch', 'independent', 'joint', 'multimix']\n"
        "assert all(isinstance(target, str) for target in STRATEGIES.values())\n"
        "assert resolve_strategy('independent') is independent\n"
        "task = Task('a', 'classification', None, 'mse', lambda epoch: None)\n"
        "try:\n"
        "    finetune(None, [task], 'cross_stitch', TrainConfig(epochs=1))\n"
        "except ValueError as error:\n"
        "    assert 'cross_stitch needs at least 2 tasks' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('cross_stitch was not dispatched')\n"
        "from urep.training.cross_stitch import cross_stitch\n"
        "assert resolve_strategy('cross_stitch') is cross_stitch\n"
        "assert 'urep.training.multimix' not in sys.modules\n"
        "from urep.training.multimix import multimix_strategy\n"
        "assert resolve_strategy('multimix') is multimix_strategy\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_register_strategy_plugs_in_by_dotted_path_and_refuses_a_clash(monkeypatch):
    from urep.training import strategies

    monkeypatch.setitem(strategies.STRATEGIES, "probe", "urep.training.strategies:joint")
    assert strategies.resolve_strategy("probe") is strategies.joint
    monkeypatch.delitem(strategies.STRATEGIES, "probe")
    strategies.register_strategy("probe", "urep.training.strategies:independent")
    assert strategies.resolve_strategy("probe") is strategies.independent
    strategies.register_strategy("probe", "urep.training.strategies:independent")  # the same target again
    with pytest.raises(ValueError, match="'probe' is already registered"):
        strategies.register_strategy("probe", "urep.training.strategies:joint")
    with pytest.raises(ValueError, match="must be 'module:function'"):
        strategies.register_strategy("other", "urep.training.strategies")
    monkeypatch.delitem(strategies.STRATEGIES, "probe")


def test_independent_leaves_every_shared_variable_bit_identical_and_trains_heads(phantoms):
    x, y, m = phantoms
    encoder, cls, seg = tiny_encoder_and_heads()
    shared_before = _values(encoder.weights)
    heads_before = _values(_head_vars(cls, encoder) + _head_vars(seg, encoder))
    results = finetune(None, _tasks(cls, seg, x, y, m), "independent", TrainConfig(epochs=2, **FAST))
    for before, variable in zip(shared_before, encoder.weights, strict=True):
        np.testing.assert_array_equal(before, variable.numpy(), err_msg=variable.path)
    heads_after = _values(_head_vars(cls, encoder) + _head_vars(seg, encoder))
    assert all(not np.array_equal(a, b) for a, b in zip(heads_before, heads_after, strict=True) if a.size > 1)
    # heads only are trainable while frozen, and the encoder is trainable again afterwards
    assert results["cls"].trainable_params == 8 * 2 + 2
    assert results["cls"].total_params == cls.count_params()
    assert all(layer.trainable for layer in encoder.layers)
    assert results["seg"].history["loss"][-1] < results["seg"].history["loss"][0]
    assert results["cls"].phase == "independent/cls" and results["cls"].strategy == "independent"


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
def test_alternating_and_joint_update_the_shared_encoder_and_reduce_losses(phantoms, strategy):
    x, y, m = phantoms
    encoder, cls, seg = tiny_encoder_and_heads()
    trainable_before = _values(encoder.trainable_weights)
    seg_weight = 0.5 if strategy == "joint" else 1.0
    results = finetune(None, _tasks(cls, seg, x, y, m, seg_weight=seg_weight), strategy,
                       TrainConfig(epochs=3, **FAST))
    changed = [not np.array_equal(a, v.numpy()) for a, v in zip(trainable_before, encoder.trainable_weights,
                                                                strict=True)]
    assert all(changed)
    for name in ("cls", "seg"):
        history = results[name].history
        assert history["loss"][-1] < history["loss"][0], (name, history["loss"])
        assert len(history["val_loss"]) == 3 and len(history["lr"]) == 3
        assert results[name].trainable_params == sum(int(np.prod(v.shape)) for v in
                                                     (cls if name == "cls" else seg).trainable_weights)
    assert results["seg"].history["loss"][-1] < 0.6
    # task-wise early stopping is off by default
    assert not {"stopped_epoch", "taskwise_stopping"} & set(results["seg"].extra)
    # the tasks' seconds add up to the phase's wall clock
    total = results["cls"].seconds + results["seg"].seconds
    assert total == pytest.approx(results["cls"].phase_seconds, rel=1e-6)
    # the combined monitored value is the weighted sum of the tasks' validation losses
    combined = results["cls"].extra["phase_history"]["val_loss"]
    expected = np.add(results["cls"].history["val_loss"], seg_weight * np.asarray(results["seg"].history["val_loss"]))
    np.testing.assert_allclose(combined, expected, rtol=1e-6)
    if strategy == "joint":
        assert results["seg"].history["loss_weight"] == [0.5] * 3
        assert results["cls"].extra["loss_weighting"] == {"method": "fixed", "weights": {"cls": 1.0, "seg": 0.5}}


def test_alternating_schedule_visits_tasks_in_the_configured_ratio():
    x, y, m = disc_phantoms(32, seed=3)
    encoder, cls, seg = tiny_encoder_and_heads()
    # default: proportional to dataset sizes (32 vs 16 examples -> 2:1)
    tasks = _tasks(cls, seg, x, y, m, n_seg=16)
    for task in tasks:
        task.val = None
    assert alternating_ratio(tasks) == {"cls": 2, "seg": 1}
    config = TrainConfig(epochs=1, monitor="loss", **FAST)
    results = finetune(None, tasks, "alternating", config)
    schedule = results["cls"].extra["schedule"]
    assert schedule["first_epoch_segments"] == [["cls", 2], ["seg", 1]] * 2
    assert schedule["batches_per_epoch"] == [{"cls": 4, "seg": 2}]
    assert results["cls"].steps_run == 4 and results["seg"].steps_run == 2
    # explicit counts: 1 cls batch then 3 seg batches; seg (2 batches/epoch) wraps around its data
    results = finetune(None, tasks, "alternating", config, batches_per_task={"cls": 1, "seg": 3})
    schedule = results["seg"].extra["schedule"]
    assert schedule["first_epoch_segments"] == [["cls", 1], ["seg", 3]] * 4
    assert schedule["batches_per_epoch"] == [{"cls": 4, "seg": 12}]


def test_alternating_ratio_errors():
    x, y, m = disc_phantoms(8)
    _, cls, seg = tiny_encoder_and_heads()
    tasks = _tasks(cls, seg, x, y, m)
    with pytest.raises(ValueError, match="missing"):
        alternating_ratio(tasks, {"cls": 1})
    with pytest.raises(ValueError, match=">= 1"):
        alternating_ratio(tasks, {"cls": 1, "seg": 0})
    tasks[1].n_train = None
    with pytest.raises(ValueError, match="lack"):
        alternating_ratio(tasks)


def test_joint_loss_is_the_weighted_sum_of_the_task_losses():
    import keras

    from urep.training.distribute import get_dist_strategy
    from urep.training.loss_weighting import FixedWeights
    from urep.training.steps import JointStep

    x, y, m = disc_phantoms(8, seed=5)
    _, cls, seg = tiny_encoder_and_heads()
    cce, bce = keras.losses.CategoricalCrossentropy(), keras.losses.BinaryCrossentropy()
    expected_cls = float(cce(y, cls(x, training=True)))
    expected_seg = float(bce(m, seg(x[::-1], training=True)))
    weighting = FixedWeights({"cls": 0.3, "seg": 2.0})
    dist_strategy = get_dist_strategy()
    weighting.build(["cls", "seg"], ["classification", "segmentation"], [1.0, 1.0], dist_strategy)
    step = JointStep(["cls", "seg"], [cls, seg], [cce, bce], weighting, keras.optimizers.SGD(0.1), dist_strategy,
                     jit_compile=False)
    total, losses = step.train_step([(x, y), (x[::-1], m)])
    np.testing.assert_allclose(losses.numpy(), [expected_cls, expected_seg], rtol=1e-5)
    assert float(total) == pytest.approx(0.3 * expected_cls + 2.0 * expected_seg, rel=1e-5)


def test_finetune_with_a_multitask_model_assembly(phantoms):
    import keras

    from urep.models import MultiTaskModel

    x, y, m = phantoms
    encoder, _, _ = tiny_encoder_and_heads()
    assembly = MultiTaskModel(encoder, name="tiny")
    assembly.add_classification_head("cls", n_classes=2, dense_units=8)
    assembly.add_head("seg", lambda enc, name: keras.Model(enc.input, keras.layers.Conv2D(
        1, 3, padding="same", activation="sigmoid", name=f"{name}_out")(keras.layers.UpSampling2D(
            4, name=f"{name}_up")(enc.output))), kind="segmentation")
    tasks = [Task("cls", "classification", None, "categorical_crossentropy", batches(x, y), n_train=32),
             Task("seg", "segmentation", None, "binary_crossentropy", batches(x, m), n_train=32)]
    shared_before = _values(assembly.shared_variables)
    config = TrainConfig(epochs=1, monitor="loss", **FAST)
    results = finetune(assembly, tasks, "independent", config)
    for before, variable in zip(shared_before, assembly.shared_variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    assert not assembly.shared_frozen
    assert results["cls"].trainable_params == sum(int(np.prod(v.shape)) for v in
                                                  assembly.head_variables("cls", trainable_only=True))


def test_finetune_rejects_bad_input(phantoms):
    x, y, m = phantoms
    _, cls, seg = tiny_encoder_and_heads()
    tasks = _tasks(cls, seg, x, y, m)
    with pytest.raises(ValueError, match="unknown fine-tuning strategy 'mixed'"):
        finetune(None, tasks, "mixed", TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="unique"):
        finetune(None, [tasks[0], tasks[0]], "joint", TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="kind must be one of"):
        Task("a", "detection", cls, "mse", batches(x, y))
    with pytest.raises(ValueError, match="task name"):
        Task("a/b", "classification", cls, "mse", batches(x, y))
    with pytest.raises(ValueError, match="no model"):
        finetune(None, [Task("a", "classification", None, "mse", batches(x, y))], "joint", TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="needs validation data"):
        finetune(None, [Task("cls", "classification", cls, "categorical_crossentropy", batches(x, y))],
                 "independent", TrainConfig(epochs=1, **FAST))


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
def test_taskwise_stopping_freezes_a_task_whose_validation_loss_rises(phantoms, strategy):
    from urep.training.strategies import alternating_engine, joint_engine

    x, y, m = phantoms
    encoder, cls, seg = tiny_encoder_and_heads()
    tasks = _tasks(cls, seg, x, y, m)
    tasks[1].val = batches(x, 1.0 - m)  # inverted masks: the better seg trains, the worse it validates
    config = TrainConfig(epochs=4, restore_best_weights=False, early_stopping_patience=None,
                         taskwise_stopping={"k": 1, "main": "cls"}, **FAST)
    engine = (alternating_engine if strategy == "alternating" else joint_engine)(None, tasks, config)
    heads = {"cls": _head_vars(cls, encoder), "seg": _head_vars(seg, encoder)}
    at_start = []
    train_epoch = engine.train_epoch

    def recording_epoch(epoch, bar):
        at_start.append({name: _values(variables) for name, variables in heads.items()})
        return train_epoch(epoch, bar)

    engine.train_epoch = recording_epoch
    results = engine.fit()
    stopped = results["seg"].extra["stopped_epoch"]
    assert stopped == 2, results["seg"].extra["taskwise_stopping"]
    assert results["cls"].extra["stopped_epoch"] is None
    assert results["cls"].extra["taskwise_stopping"]["stopped_at"] == {"seg": 2}
    assert results["seg"].epochs_run == 4 and results["seg"].stop_reason == "max_epochs"
    final = {name: _values(variables) for name, variables in heads.items()}
    for before, after in zip(at_start[stopped]["seg"], final["seg"], strict=True):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(a, b) for a, b in zip(at_start[stopped]["cls"], final["cls"], strict=True))
    assert np.isnan(results["seg"].history["loss"][stopped:]).all()
    assert np.isfinite(results["seg"].history["val_loss"]).all()
    assert results["seg"].steps_run < results["cls"].steps_run


def test_taskwise_stopping_settings_are_validated(phantoms):
    x, y, m = phantoms
    _, cls, seg = tiny_encoder_and_heads()
    with pytest.raises(ValueError, match="taskwise_stopping.k"):
        TrainConfig(taskwise_stopping={"k": 0})
    with pytest.raises(ValueError, match="unknown taskwise_stopping keys"):
        TrainConfig(taskwise_stopping={"patience": 3})
    tasks = _tasks(cls, seg, x, y, m)
    config = TrainConfig(epochs=1, taskwise_stopping=True, **FAST)
    with pytest.raises(ValueError, match="fixed loss weights"):
        finetune(None, tasks, "joint", config, loss_weighting="uncertainty")
    with pytest.raises(ValueError, match="not among tasks"):
        finetune(None, tasks, "alternating", TrainConfig(epochs=1, taskwise_stopping={"main": "zz"}, **FAST))
    tasks[1].val = None
    with pytest.raises(ValueError, match="no validation data"):
        finetune(None, tasks, "alternating", TrainConfig(epochs=1, monitor="loss", taskwise_stopping=True, **FAST))


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
def test_an_interrupted_shared_phase_resumes_to_the_uninterrupted_weights(phantoms, strategy, tmp_path):
    """Killed during epoch 2 and resumed with differently initialised models: every shared and head variable
    ends bit-equal to the uninterrupted run's (all state comes from the phase checkpoint)."""
    from urep.training import Run

    x, y, m = phantoms
    config = TrainConfig(epochs=3, seed=5, **FAST)

    def run(init_seed, root, interrupt_at=None, resume=False):
        encoder, cls, seg = tiny_encoder_and_heads(seed=init_seed)
        tasks = _tasks(cls, seg, x, y, m)
        if interrupt_at is not None:
            make = tasks[0].train

            def interrupted(epoch):
                if epoch == interrupt_at:
                    raise _Interrupt
                return make(epoch)

            tasks[0].train = interrupted
        results = finetune(None, tasks, strategy, config, run=Run(root, resume=resume))
        return results, cls.variables + _head_vars(seg, encoder)

    straight, expected = run(0, tmp_path / "straight")
    with pytest.raises(_Interrupt):
        run(0, tmp_path / "resumed", interrupt_at=1)
    resumed, variables = run(1, tmp_path / "resumed", resume=True)
    for a, b in zip(expected, variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    for name in ("cls", "seg"):
        np.testing.assert_allclose(resumed[name].history["loss"], straight[name].history["loss"], rtol=1e-6)


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
def test_a_non_finite_segmentation_batch_stops_the_multi_task_strategies_naming_the_task(strategy):
    x, y, m = disc_phantoms(16, seed=0)
    encoder, cls, seg = tiny_encoder_and_heads(seed=0)
    bad = x.copy()
    bad[0, 3, 3, 0] = np.inf
    tasks = _tasks(cls, seg, x, y, m)
    tasks[1] = Task("seg", "segmentation", seg, "binary_crossentropy", batches(bad, m), batches(x, m),
                    n_train=len(x))
    with pytest.raises(NonFiniteInputError, match=r"batch of task 'seg' at epoch 1, step \d"):
        finetune(encoder, tasks, strategy, TrainConfig(epochs=1, **FAST))


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
def test_the_multi_task_strategies_name_the_step_of_the_non_finite_batch(strategy):
    """In order, without shuffling: the segmentation batch 2 of 2 holds NaN; alternating steps go cls 1, seg 1,
    cls 2, seg 2 (step 4); joint steps take one batch of each task (step 2)."""
    x, y, m = disc_phantoms(16, seed=0)
    encoder, cls, seg = tiny_encoder_and_heads(seed=0)
    bad = x.copy()
    bad[12, 3, 3, 0] = np.nan
    tasks = [Task("cls", "classification", cls, "categorical_crossentropy", batches(x, y), batches(x, y),
                  n_train=len(x)),
             Task("seg", "segmentation", seg, "binary_crossentropy", batches(bad, m), batches(x, m), n_train=len(x))]
    step = {"alternating": 4, "joint": 2}[strategy]
    with pytest.raises(NonFiniteInputError, match=rf"batch of task 'seg' at epoch 1, step {step}:"):
        finetune(encoder, tasks, strategy, TrainConfig(epochs=1, **FAST))


@pytest.mark.parametrize("strategy", ["alternating", "joint"])
@pytest.mark.parametrize("autotune", [False, True])
def test_shared_strategies_iterate_every_task_with_the_configured_autotuning(phantoms, monkeypatch, strategy,
                                                                            autotune):
    from urep.training import loop, strategies

    seen = autotune_spy(monkeypatch, loop, strategies)
    x, y, m = phantoms
    _, cls, seg = tiny_encoder_and_heads()
    finetune(None, _tasks(cls, seg, x, y, m), strategy, TrainConfig(epochs=1, data_autotune=autotune, **FAST))
    assert len(seen) >= 4  # both tasks' training data and both validation sets (and step counts)
    assert all((flag is not False) == autotune for flag in seen), seen
