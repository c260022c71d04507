"""Turn plain YAML data into typed, frozen dataclasses, naming the key path and the file on every error.

The dataclasses' type hints are the schema: `int`, `float` (ints accepted), `str`, `bool`, `Literal[...]`,
`X | None`, `tuple[X, ...]`, fixed `tuple[X, Y]`, `dict[str, X]`, `Any` (kept as is), nested dataclasses and
`Annotated[X, Rule(...)]` / `Annotated[str, Ref(...)]` (`urep.constraints`). Unknown keys, missing required
keys, wrong types and broken rules raise `ConfigError`; `check_refs` checks the `Ref`s of a built config.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from urep.constraints import Ref, Rule, rules_of


class ConfigError(ValueError):
    """An experiment config is invalid; the message names the key path and the file."""

    def __init__(self, message: str, key: str = "", file: str | Path | None = None) -> None:
        self.key = key
        self.file = str(file) if file is not None else None
        where = f"{key}: " if key else ""
        source = f" (in {file})" if file is not None else ""
        super().__init__(f"{where}{message}{source}")


class _RuleError(ConfigError):
    """A value of the right type that breaks a `Rule` (a union reports it rather than a type mismatch)."""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    tp = rules_of(tp)[0]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, key: str, file: str | Path | None) -> Any:
    """Convert `value` (from `yaml.safe_load`) to type `tp`.

    Args:
        tp: a type hint (see the module docstring for the supported forms).
        value: the raw value.
        key: dotted key path of the value, for error messages (e.g. `tasks[0].train.epochs`).
        file: the config file, for error messages.

    Returns:
        The converted value (tuples for lists, dataclass instances for mappings).

    Raises:
        ConfigError: wrong type, unknown key or missing required key.
    """
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in _CONVERTERS:
        return _CONVERTERS[origin](tp, value, key, file)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, file)
    if tp in _SCALARS:
        accepts, expected = _SCALARS[tp]
        if not accepts(value):
            raise ConfigError(f"expected {expected}, got {value!r}", key, file)
        return float(value) if tp is float else value
    raise TypeError(f"schema uses an unsupported type {tp!r} at {key}")


def _convert_annotated(tp: Any, value: Any, key: str, file: str | Path | None) -> Any:
    base, rules = rules_of(tp)
    converted = convert(base, value, key, file)
    for rule in rules:
        problem = rule.problem(converted) if isinstance(rule, Rule) else None
        if problem:
            raise _RuleError(problem, key, file)
    return converted


def _convert_union(tp: Any, value: Any, key: str, file: str | Path | None) -> Any:
    options = [option for option in typing.get_args(tp) if option is not type(None)]
    if value is None and len(options) < len(typing.get_args(tp)):
        return None
    errors = []
    for option in options:
        try:
            return convert(option, value, key, file)
        except _RuleError:
            raise  # the value has this option's type but breaks its rule: say which rule
        except ConfigError as err:
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", key, file)


def _convert_literal(tp: Any, value: Any, key: str, file: str | Path | None) -> Any:
    if not any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", key, file)
    return value


def _convert_tuple(tp: Any, value: Any, key: str, file: str | Path | None) -> tuple:
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list, got {value!r}", key, file)
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(value) != len(args):
        raise ConfigError(f"expected a list of {len(args)} items, got {value!r}", key, file)
    return tuple(convert(a, item, _join(key, i), file) for i, (a, item) in enumerate(zip(args, value, strict=True)))


def _convert_dict(tp: Any, value: Any, key: str, file: str | Path | None) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", key, file)
    value_type = typing.get_args(tp)[1]
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(f"keys must be strings, got {k!r}", key, file)
        out[k] = convert(value_type, v, _join(key, k), file)
    return out


_CONVERTERS = {Annotated: _convert_annotated, types.UnionType: _convert_union, typing.Union: _convert_union,
               Literal: _convert_literal, tuple: _convert_tuple, dict: _convert_dict}
_SCALARS = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def build(cls: type, raw: Any, key: str = "", file: str | Path | None = None) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and checking every field's type.

    Raises:
        ConfigError: `raw` is not a mapping, has an unknown key, lacks a required key, or a value has the
            wrong type. The message names the key path (e.g. `tasks[1].classes`) and `file`.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {raw!r}", key, file)
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}; expected one of: {', '.join(sorted(fields))}",
            _join(key, unknown[0]), file,
        )
    values = {}
    for name, field in fields.items():
        if name in raw:
            values[name] = convert(hints[name], raw[name], _join(key, name), file)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError("required key is missing", _join(key, name), file)
    return cls(**values)


def _refs(value: Any, tp: Any, key: str) -> Iterator[tuple[str, Any, Ref]]:
    """`(key path, value, Ref)` of every `Ref`-annotated value inside `value` (of type `tp`)."""
    base, rules = rules_of(tp)
    if value is not None:
        yield from ((key, value, rule) for rule in rules if isinstance(rule, Ref))
    origin, args = typing.get_origin(base), typing.get_args(base)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value), include_extras=True)
        for f in (f for f in dataclasses.fields(value) if f.init):
            yield from _refs(getattr(value, f.name), hints[f.name], _join(key, f.name))
    elif origin in (types.UnionType, typing.Union):
        for option in args:
            yield from _refs(value, option, key)
    elif origin is tuple and isinstance(value, tuple):
        item_types = (args[0],) * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        for i, (item_type, item) in enumerate(zip(item_types, value, strict=False)):
            yield from _refs(item, item_type, _join(key, i))
    elif origin is dict and isinstance(value, dict):
        for k, v in value.items():
            yield from _refs(v, args[1], _join(key, k))


def check_refs(obj: Any, names: dict[str, Any], file: str | Path | None = None) -> None:
    """Check that every `Ref`-annotated value of a built dataclass names an entry of its namespace.

    Args:
        obj: a dataclass instance (e.g. an `ExperimentConfig`).
        names: namespace -> the names it holds (e.g. `{"data": config.data.keys()}`).
        file: the config file, for error messages.

    Raises:
        ConfigError: `unknown data source 'x'; defined: [...]`, naming the key path and `file`.
    """
    for key, value, ref in _refs(obj, type(obj), ""):
        defined = names[ref.namespace]
        if value not in defined:
            raise ConfigError(f"unknown {ref.what or ref.namespace} {value!r}; defined: {sorted(defined)}", key, file)


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts back to plain YAML/JSON data (lists, dicts, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value
