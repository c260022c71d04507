"""Turn plain YAML data into typed, frozen dataclasses, naming the key path and the file on every error.

The conversion is driven by the dataclasses' type hints, so a config class is its own schema:
`int`, `float` (ints accepted), `str`, `bool`, `Literal[...]`, `X | None`, `tuple[X, ...]`, fixed
`tuple[X, Y]`, `dict[str, X]`, `Any` (kept as is) and nested dataclasses. Unknown keys, missing required keys
and wrong types raise `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """An experiment config is invalid; the message names the key path and the file."""

    def __init__(self, message: str, key: str = "", file: str | Path | None = None) -> None:
        self.key = key
        self.file = str(file) if file is not None else None
        where = f"{key}: " if key else ""
        source = f" (in {file})" if file is not None else ""
        super().__init__(f"{where}{message}{source}")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
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
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return convert(option, value, key, file)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", key, file)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", key, file)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", key, file)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], item, _join(key, i), file) for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"expected a list of {len(args)} items, got {value!r}", key, file)
        return tuple(convert(a, item, _join(key, i), file) for i, (a, item) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", key, file)
        key_type, value_type = args
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"keys must be strings, got {k!r}", key, file)
            out[k] = convert(value_type, v, _join(key, k), file)
        return out
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, file)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key, file)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", key, file)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key, file)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key, file)
        return value
    raise TypeError(f"schema uses an unsupported type {tp!r} at {key}")


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
    hints = typing.get_type_hints(cls)
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


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts back to plain YAML/JSON data (lists, dicts, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value
