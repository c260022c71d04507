"""Field constraints (`urep.constraints`): the expectation in words, the problem text, `check_fields`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from urep.constraints import Ref, Rule, check_fields, rules_of


@pytest.mark.parametrize("rule, words", [
    (Rule(min=1), "at least 1"),
    (Rule(gt=0), "positive"),
    (Rule(gt=0.5), "greater than 0.5"),
    (Rule(max=3), "at most 3"),
    (Rule(lt=1), "less than 1"),
    (Rule(min=0, lt=180), "in [0, 180)"),
    (Rule(gt=0, lt=1), "in (0, 1)"),
    (Rule(min=0, max=1), "in [0, 1]"),
    (Rule(min=1, expected="`all` or at least 1"), "`all` or at least 1"),
])
def test_rule_describes_its_bounds(rule, words):
    assert rule.describe() == words


def test_rule_problem_names_the_value_and_the_expectation():
    assert Rule(min=1).problem(0) == "must be at least 1, got 0"
    assert Rule(min=0, lt=180).problem(180.0) == "must be in [0, 180), got 180.0"
    assert Rule(gt=0).problem(float("nan")) == "must be positive, got nan"
    assert Rule(min=1).problem(1) is None and Rule(min=1).problem(None) is None
    assert Rule(min_items=1).problem(()) == "needs at least 1 item(s), got []"
    assert Rule(unique=True).problem((1, 2, 1)) == "items must be distinct, got [1, 2, 1]"
    assert Rule(unique=True).problem((1, 2)) is None


def test_rule_check_returns_or_raises_the_problem():
    def even(n: int) -> str | None:
        return None if n % 2 == 0 else f"must be even, got {n}"

    def raises(value: int) -> None:
        raise ValueError(f"bad {value}")

    assert Rule(check=even).problem(3) == "must be even, got 3" and Rule(check=even).problem(4) is None
    assert Rule(check=raises).problem(7) == "bad 7"


def test_rules_of_splits_annotated_hints():
    assert rules_of(Annotated[int, Rule(min=1), Ref("data"), "other"]) == (int, [Rule(min=1), Ref("data")])
    assert rules_of(int) == (int, [])


@dataclass
class _Settings:
    epochs: Annotated[int, Rule(min=1)] = 1
    rate: Annotated[float, Rule(gt=0)] = 0.1
    patience: Annotated[int | None, Rule(min=0)] = None
    name: str = "x"
    flag: bool = True

    def __post_init__(self) -> None:
        check_fields(self, prefix="settings.")


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "settings.epochs must be at least 1, got 0"),
    ({"epochs": True}, "settings.epochs must be an integer, got True"),
    ({"epochs": 2.0}, "settings.epochs must be an integer, got 2.0"),
    ({"rate": "fast"}, "settings.rate must be a number, got 'fast'"),
    ({"rate": 0}, "settings.rate must be positive, got 0"),
    ({"patience": -1}, "settings.patience must be at least 0, got -1"),
    ({"patience": "3"}, "settings.patience must be an integer or None, got '3'"),
    ({"name": 3}, "settings.name must be a string, got 3"),
    ({"flag": 1}, "settings.flag must be true or false, got 1"),
])
def test_check_fields_names_the_field_the_value_and_the_expectation(changes, message):
    with pytest.raises(ValueError) as err:
        _Settings(**changes)
    assert str(err.value) == message


def test_check_fields_accepts_valid_values():
    assert _Settings(epochs=3, rate=1, patience=0).rate == 1
