"""Task-wise early stopping (Zhang et al. 2014): the formula's terms, decisions, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urep.training.taskwise_stopping import (
    TaskwiseEarlyStopping,
    generalization_gap,
    stopping_criterion,
    training_trend,
)


def test_trend_by_hand():
    # strip [3, 2, 1]: median 2, sum 6 -> 2 * 2 / (6 - 2 * 2) = 2
    assert training_trend([4.0, 3.0, 2.0, 1.0], k=2) == pytest.approx(2.0)


def test_trend_is_k_on_a_plateau_and_small_while_falling_fast():
    assert training_trend([0.5] * 6, k=5) == pytest.approx(5.0)
    fast = [2.0 ** -i for i in range(6)]  # 1, 1/2, ..., 1/32: a strip dominated by its early values
    assert training_trend(fast, k=5) < 1.0


def test_trend_is_zero_when_the_strip_ends_in_a_sharp_drop():
    # strip [1, 1, 1, 1, 0]: median 1, sum 4 -> denominator 4 - 4 * 1 = 0: still dropping, not stopped
    assert training_trend([1.0, 1.0, 1.0, 1.0, 0.0], k=4) == 0.0


def test_gap_by_hand_and_importance():
    assert generalization_gap([4.0, 2.0, 1.0], 1.5) == pytest.approx(0.5)
    assert generalization_gap([4.0, 2.0, 1.0], 1.5, importance=2.0) == pytest.approx(0.25)
    assert generalization_gap([4.0, 2.0, 1.0], 0.5) == pytest.approx(-0.5)
    assert np.isfinite(generalization_gap([0.0, 0.0], 0.1))


def test_criterion_waits_for_a_full_strip():
    assert stopping_criterion([1.0, 0.9], 1.0, k=2) is None
    assert stopping_criterion([4.0, 3.0, 2.0, 1.0], 1.5, k=2) == pytest.approx(1.0)


def overfitting_history(epochs: int = 12) -> tuple[list[float], list[float]]:
    """Training error plateaus at 0.2 while validation error climbs from 0.22."""
    train = [1.0, 0.6, 0.4, 0.3, 0.25] + [0.2] * (epochs - 5)
    val = [1.0, 0.65, 0.45, 0.33, 0.28, 0.22] + [0.22 + 0.02 * i for i in range(1, epochs - 5)]
    return train, val


def test_auxiliary_task_that_overfits_stops_and_main_task_does_not():
    train, val = overfitting_history()
    stopper = TaskwiseEarlyStopping(["main", "aux"], main="main", k=3, epsilon=1.0)
    stopped_at = None
    for epoch, (tr, va) in enumerate(zip(train, val, strict=True), start=1):
        newly = stopper.update_all({"main": tr, "aux": tr}, {"main": va, "aux": va})
        if newly:
            assert newly == frozenset({"aux"})
            stopped_at = epoch
            break
    # the strip is flat from epoch 9 (T = 3), where G = (0.28 - 0.2) / 0.2 = 0.4 > 1/3; at epoch 8
    # T = 2.4 and G = 0.3 give 0.72 < 1
    assert stopped_at == 9
    assert stopper.stopped == frozenset({"aux"})
    assert stopper.should_train("main") and not stopper.should_train("aux")
    assert stopper.stopped_at == {"aux": 9}
    # later updates of a stopped task are ignored; the main task keeps recording
    assert stopper.update("aux", 0.1, 5.0) is True
    assert len(stopper.train_errors["aux"]) == 9
    assert stopper.update("main", 0.2, 5.0) is False


def test_task_still_learning_fast_is_not_stopped():
    stopper = TaskwiseEarlyStopping(["aux"], k=3, epsilon=1.0)
    for epoch in range(10):
        train = 2.0 ** -epoch
        assert stopper.update("aux", train, 1.1 * train) is False


def test_more_important_task_is_stopped_later():
    train, val = overfitting_history(20)

    def stop_epoch(importance: float) -> int | None:
        stopper = TaskwiseEarlyStopping(["aux"], k=3, epsilon=1.0, importance=importance)
        for epoch, (tr, va) in enumerate(zip(train, val, strict=True), start=1):
            if stopper.update("aux", tr, va):
                return epoch
        return None

    assert stop_epoch(1.0) < stop_epoch(3.0)


def test_state_round_trip_is_json_and_resumes():
    train, val = overfitting_history()
    stopper = TaskwiseEarlyStopping(["a", "b"], main=["a"], k=3, importance={"b": 2.0})
    for tr, va in zip(train[:6], val[:6], strict=True):
        stopper.update_all({"a": tr, "b": tr}, {"a": va, "b": va})
    state = json.loads(json.dumps(stopper.state()))
    resumed = TaskwiseEarlyStopping.from_state(state)
    assert resumed.state() == stopper.state()
    assert resumed.criterion("b") == pytest.approx(stopper.criterion("b"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tasks": []}, "non-empty"),
        ({"tasks": ["a", "a"]}, "distinct"),
        ({"tasks": ["a"], "main": "b"}, "main task"),
        ({"tasks": ["a"], "k": 0}, "k must"),
        ({"tasks": ["a"], "epsilon": 0}, "epsilon"),
        ({"tasks": ["a"], "importance": {"a": -1.0}}, "importance"),
        ({"tasks": ["a"], "importance": {"zz": 1.0}}, "unknown tasks"),
    ],
)
def test_bad_construction_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TaskwiseEarlyStopping(**kwargs)


def test_bad_updates_raise():
    stopper = TaskwiseEarlyStopping(["a", "b"])
    with pytest.raises(KeyError, match="unknown task"):
        stopper.update("zz", 0.1, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        stopper.update("a", -0.1, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        stopper.update("a", 0.1, float("nan"))
    with pytest.raises(ValueError, match="active tasks"):
        stopper.update_all({"a": 0.1}, {"a": 0.1})
    with pytest.raises(ValueError, match="k \\+ 1"):
        training_trend([1.0], k=2)
