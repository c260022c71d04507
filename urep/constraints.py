"""Value constraints declared on dataclass fields, checked generically.

A field says what it admits in its type: `epochs: Annotated[int, Rule(min=1)] = 64`, or for the items of a
list `tuple[Annotated[int, Rule(min=0)], ...]`; a reference to another section is `Annotated[str, Ref("data")]`.
`urep.experiments.schema` checks them while reading a config (errors name key, value and file);
`check_fields` checks a dataclass built in Python (its `__post_init__`). Plain Python, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

__all__ = ["Rule", "Ref", "rules_of", "check_fields"]


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Rule:
    """What a number or a list admits beyond its type; `None` values are not checked.

    Attributes:
        min: inclusive lower bound.
        max: inclusive upper bound.
        gt: exclusive lower bound.
        lt: exclusive upper bound.
        min_items: a list holds at least this many items.
        unique: a list holds no item twice.
        check: `value -> problem text or None` for a rule the bounds cannot say (it may raise `ValueError`,
            whose text is the problem).
        expected: the expectation in messages, instead of the one spelled from the bounds.
    """

    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    min_items: int | None = None
    unique: bool = False
    check: Callable[[Any], str | None] | None = None
    expected: str | None = None

    def describe(self) -> str:
        """The expectation in words: `at least 1`, `in [0, 1)`, `positive`, ..."""
        if self.expected is not None:
            return self.expected
        low = (f"[{_bound(self.min)}" if self.min is not None else f"({_bound(self.gt)}"
               if self.gt is not None else None)
        high = (f"{_bound(self.max)}]" if self.max is not None else f"{_bound(self.lt)})"
                if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if self.gt == 0 and not high:
            return "positive"
        if low:
            return f"at least {low[1:]}" if self.min is not None else f"greater than {low[1:]}"
        if high:
            return f"at most {high[:-1]}" if self.max is not None else f"less than {high[:-1]}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why `value` breaks the rule (`must be ..., got ...`), or None when it keeps it."""
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if self.min_items is not None and len(value) < self.min_items:
                return f"needs at least {self.min_items} item(s), got {list(value)}"
            if self.unique and len(set(value)) != len(value):
                return f"items must be distinct, got {list(value)}"
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and self.describe():
            in_range = ((self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                        and (self.gt is None or value > self.gt) and (self.lt is None or value < self.lt)
                        and math.isfinite(value))
            if not in_range:
                return f"must be {self.describe()}, got {value!r}"
        if self.check is not None:
            try:
                return self.check(value)
            except ValueError as error:
                return str(error)
        return None


@dataclass(frozen=True)
class Ref:
    """The value names an entry of another part of the config (`data`: a data source, `tasks`: a task).

    Attributes:
        namespace: what it names; the checker is given the names of each namespace.
        what: the kind of entry in messages (`data source`, `task`).
    """

    namespace: str
    what: str = ""


def rules_of(hint: Any) -> tuple[Any, list[Rule | Ref]]:
    """`(the bare type, the Rule/Ref annotations)` of a type hint (`Annotated` or not)."""
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, [e for e in extras if isinstance(e, (Rule, Ref))]
    return hint, []


def _is_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_type(value, option) for option in typing.get_args(tp))
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if tp is Any or origin is not None:
        return True  # containers and Literal: checked by their owner
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def check_fields(obj: Any, prefix: str = "") -> None:
    """Check a dataclass instance's field types (scalars, `Literal`, unions of them) and `Rule`s.

    For a dataclass built in Python: call it in `__post_init__`.

    Raises:
        ValueError: `"{prefix}{field} must be ..., got {value!r}"` for the first field in error.
    """
    hints = _hints(type(obj))
    for field in dataclasses.fields(obj):
        tp, rules = rules_of(hints[field.name])
        value = getattr(obj, field.name)
        if not _is_type(value, tp):
            raise ValueError(f"{prefix}{field.name} must be {_type_words(tp)}, got {value!r}")
        for rule in rules:
            problem = rule.problem(value) if isinstance(rule, Rule) else None
            if problem:
                raise ValueError(f"{prefix}{field.name} {problem}")


def _type_words(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is not None:
        return " or ".join(_type_words(option) for option in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "None"}.get(tp, getattr(tp, "__name__", str(tp)))
