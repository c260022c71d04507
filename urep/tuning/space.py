"""Search spaces: the papers' default spaces, knob types, and the parser from config mappings to `hp` calls.

A space maps a knob name to a list (`hp.Choice`), a scalar (`hp.Fixed`) or `{min, max, step, sampling}`
(`hp.Int`/`hp.Float`); `parse_search_space` merges it over a hypermodel's defaults and raises
`SearchSpaceError` (naming the knob) on anything else; `declare` registers a parsed space on `hp`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner

from urep.training.config import OPTIMIZERS

#: U-Rep 1 / CDAE (journal section 4.1.1): Talos chose kernel 3 and RMSprop.
PAPER_CDAE_SPACE: dict[str, Any] = {"kernel_size": [3, 5, 7], "optimizer": ["sgd", "adam", "rmsprop"]}
#: U-Rep 2 / dilated CNN (journal section 4.2.1): Talos chose 3, 2, 0.5, Adam, 16.
PAPER_DILATED_CNN_SPACE: dict[str, Any] = {
    "kernel_size": [3, 5, 7],
    "dilation_rate": [2, 3],
    "dropout": [0.1, 0.3, 0.5],
    "optimizer": ["sgd", "adam", "rmsprop"],
    "batch_size": [16, 32, 64],
}
#: Heads: the papers name dropout, optimizer and learning rate but no values; these are our choice.
DEFAULT_HEAD_SPACE: dict[str, Any] = {
    "dropout": [0.3, 0.5],
    "optimizer": ["sgd", "adam", "rmsprop"],
    "learning_rate": [1e-2, 1e-3, 1e-4],
}

#: Type of every knob a hypermodel may expose: "int" (>= 1), "rate" (in [0, 1)), "positive" (> 0) or
#: "optimizer" (one of `urep.training.config.OPTIMIZERS`).
KNOB_TYPES = {
    "kernel_size": "int",
    "dilation_rate": "int",
    "dense_units": "int",
    "batch_size": "int",
    "dropout": "rate",
    "learning_rate": "positive",
    "optimizer": "optimizer",
}
_RANGE_KEYS = {"min", "max", "step", "sampling"}
_SAMPLINGS = ("linear", "log", "reverse_log")


class SearchSpaceError(ValueError):
    """A search space entry is invalid; `key` is the knob's name (the message starts with it)."""

    def __init__(self, message: str, key: str) -> None:
        self.key, self.detail = key, message
        super().__init__(f"search_space.{key}: {message}" if key else f"search_space: {message}")



def _knob_value(name: str, value: Any) -> Any:
    """One value of knob `name`, checked and normalised (numeric strings such as YAML's `1e-3` accepted)."""
    kind = KNOB_TYPES[name]
    if kind == "optimizer":
        if not isinstance(value, str) or value.lower() not in OPTIMIZERS:
            raise SearchSpaceError(f"expected one of {list(OPTIMIZERS)}, got {value!r}", name)
        return value.lower()
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SearchSpaceError(f"expected an integer >= 1, got {value!r}", name)
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SearchSpaceError(f"expected a number, got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"expected a number, got {value!r}", name)
    value = float(value)
    if kind == "rate" and not 0 <= value < 1:
        raise SearchSpaceError(f"expected a number in [0, 1), got {value!r}", name)
    if kind == "positive" and not value > 0:
        raise SearchSpaceError(f"expected a number > 0, got {value!r}", name)
    return value


def _check_range(name: str, spec: Mapping) -> dict:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        raise SearchSpaceError(f"unknown range key {unknown[0]!r}; expected some of {sorted(_RANGE_KEYS)}", name)
    if KNOB_TYPES[name] == "optimizer":
        raise SearchSpaceError("the optimizer is a list of names, not a range", name)
    if "min" not in spec or "max" not in spec:
        raise SearchSpaceError("a range needs `min` and `max`", name)
    low, high = _knob_value(name, spec["min"]), _knob_value(name, spec["max"])
    if not low < high:
        raise SearchSpaceError(f"expected min < max, got min {low!r}, max {high!r}", name)
    out = {"min": low, "max": high, "sampling": spec.get("sampling", "linear")}
    if out["sampling"] not in _SAMPLINGS:
        raise SearchSpaceError(f"sampling must be one of {list(_SAMPLINGS)}, got {out['sampling']!r}", name)
    if "step" in spec:
        out["step"] = _knob_value(name, spec["step"])
    return out


def parse_search_space(space: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                       knobs: Sequence[str]) -> dict[str, Any]:
    """Merge `space` over `defaults` key by key and check every entry.

    Args:
        space: knob name -> a list of values (`hp.Choice`), a scalar (`hp.Fixed`) or a range mapping
            `{min, max, step (optional), sampling: linear | log | reverse_log}` (`hp.Int`/`hp.Float`).
        defaults: the hypermodel's default space (same forms).
        knobs: the knob names the hypermodel knows.

    Returns:
        The merged space: name -> tuple of values, a scalar, or a checked range dict, in grid order (the
        defaults' order, then new keys in the order given; Keras Tuner's grid varies the last one fastest).

    Raises:
        SearchSpaceError: unknown knob, empty or repeated choices, or a value of the wrong type or range.
    """
    if space is not None and not isinstance(space, Mapping):
        raise SearchSpaceError(f"expected a mapping of knob -> values, got {space!r}", "")
    merged = {**defaults, **(space or {})}
    out: dict[str, Any] = {}
    for name, spec in merged.items():
        if name not in knobs:
            raise SearchSpaceError(f"unknown knob; this hypermodel tunes {sorted(knobs)}", name)
        if isinstance(spec, Mapping):
            out[name] = _check_range(name, spec)
        elif isinstance(spec, (list, tuple)):
            if not spec:
                raise SearchSpaceError("expected at least one value", name)
            values = tuple(_knob_value(name, v) for v in spec)
            if len(set(values)) != len(values):
                raise SearchSpaceError(f"repeated values in {list(spec)!r}", name)
            out[name] = values
        else:
            out[name] = _knob_value(name, spec)
    return out


def declare(hp: keras_tuner.HyperParameters, space: Mapping[str, Any]) -> dict[str, Any]:
    """Register every knob of a parsed space on `hp` (in order) and return this trial's values."""
    values = {}
    for name, spec in space.items():
        if isinstance(spec, tuple):
            values[name] = hp.Choice(name, list(spec), default=spec[0])
        elif isinstance(spec, dict):
            if KNOB_TYPES[name] == "int":
                values[name] = hp.Int(name, spec["min"], spec["max"], step=spec.get("step"),
                                      sampling=spec["sampling"])
            else:
                values[name] = hp.Float(name, spec["min"], spec["max"], step=spec.get("step"),
                                        sampling=spec["sampling"])
        else:
            values[name] = hp.Fixed(name, spec)
    return values

