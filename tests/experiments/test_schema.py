"""The config schema (`urep.experiments.schema`): type hints and their `Rule`/`Ref` annotations as the schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest

from urep.constraints import Ref, Rule
from urep.experiments.schema import ConfigError, build, check_refs, convert, to_plain

Budget = Annotated[int, Rule(min=1, expected="`all` or at least 1")] | Literal["all"]


@dataclass(frozen=True)
class _Task:
    name: str
    data: Annotated[str, Ref("data", "data source")]
    test_data: Annotated[str, Ref("data", "data source")] | None = None


@dataclass(frozen=True)
class _Config:
    tasks: tuple[_Task, ...] = ()
    sources: dict[str, Any] = field(default_factory=dict)
    size: tuple[Annotated[int, Rule(gt=0)], Annotated[int, Rule(gt=0)]] = (8, 8)
    budgets: tuple[tuple[Budget, Budget], ...] = ()
    seeds: Annotated[tuple[Annotated[int, Rule(min=0)], ...], Rule(unique=True)] = ()
    channels: Literal[1, 3] = 1
    main: Annotated[str | None, Ref("tasks", "task")] = None


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        build(_Config, raw, "", "exp.yaml")
    return str(err.value)


@pytest.mark.parametrize("raw, message", [
    ({"size": [8, 0]}, "size[1]: must be positive, got 0 (in exp.yaml)"),
    ({"seeds": [1, -2]}, "seeds[1]: must be at least 0, got -2 (in exp.yaml)"),
    ({"seeds": [1, 1]}, "seeds: items must be distinct, got [1, 1] (in exp.yaml)"),
    # a union reports the broken rule of the option whose type matched, not a type mismatch
    ({"budgets": [[0, "all"]]}, "budgets[0][0]: must be `all` or at least 1, got 0 (in exp.yaml)"),
    ({"budgets": [[5, "some"]]}, "budgets[0][1]: expected int or one of 'all', got 'some' (in exp.yaml)"),
    # Literal values match by type too: true is not 1
    ({"channels": True}, "channels: expected one of 1, 3, got True (in exp.yaml)"),
    ({"channels": 2}, "channels: expected one of 1, 3, got 2 (in exp.yaml)"),
])
def test_rules_on_fields_and_items_name_key_value_expectation_and_file(raw, message):
    assert _error(raw) == message


def test_valid_values_convert():
    config = build(_Config, {"size": [4, 6], "budgets": [[10, "all"]], "seeds": [0, 3], "channels": 3})
    assert (config.size, config.budgets, config.seeds, config.channels) == ((4, 6), ((10, "all"),), (0, 3), 3)
    assert convert(Annotated[float, Rule(gt=0)], 2, "x", None) == 2.0
    assert to_plain(config)["budgets"] == [[10, "all"]]


def test_check_refs_finds_references_in_nested_lists_and_optional_fields():
    config = build(_Config, {"tasks": [{"name": "a", "data": "one"}, {"name": "b", "data": "one", "test_data": "two"}],
                             "main": "b"})
    check_refs(config, {"data": {"one", "two"}, "tasks": ["a", "b"]}, "exp.yaml")
    with pytest.raises(ConfigError) as err:
        check_refs(config, {"data": {"one"}, "tasks": ["a", "b"]}, "exp.yaml")
    assert str(err.value) == "tasks[1].test_data: unknown data source 'two'; defined: ['one'] (in exp.yaml)"
    with pytest.raises(ConfigError, match=r"^main: unknown task 'b'; defined: \['a'\]"):
        check_refs(config, {"data": {"one", "two"}, "tasks": ["a"]})
