"""Argument checks shared by the model builders: early errors that name the offending value."""

from __future__ import annotations

from collections.abc import Sequence


def check_input_shape(input_shape: Sequence[int], name: str = "input_shape") -> tuple[int, int, int]:
    """Return `input_shape` as a `(height, width, channels)` tuple of positive ints.

    Raises:
        ValueError: not three positive integers.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(_is_positive_int(v) for v in shape):
        raise ValueError(
            f"{name} must be (height, width, channels) of positive integers, got {input_shape!r}"
        )
    return tuple(int(v) for v in shape)


def check_filters(
    filters: Sequence[int], name: str = "filters", length: int | None = None
) -> tuple[int, ...]:
    """Return `filters` as a non-empty tuple of positive ints, of `length` items when given.

    Raises:
        ValueError: empty, wrong length, or a non-positive / non-integer item.
    """
    values = tuple(filters)
    if not values or not all(_is_positive_int(v) for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {filters!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} items, got {len(values)}: {filters!r}")
    return tuple(int(v) for v in values)


def check_positive_int(value: int, name: str) -> int:
    """Return `value` if it is a positive int.

    Raises:
        ValueError: otherwise.
    """
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_rate(value: float, name: str) -> float:
    """Return `value` if it is a dropout-like rate in `[0, 1)`.

    Raises:
        ValueError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_layer_indices(indices: Sequence[int], n_layers: int, name: str) -> tuple[int, ...]:
    """Return 1-based layer indices, each in `1..n_layers`.

    Raises:
        ValueError: an index outside `1..n_layers`.
    """
    values = tuple(indices)
    if not all(_is_positive_int(v) and v <= n_layers for v in values):
        raise ValueError(f"{name} must hold 1-based layer numbers in 1..{n_layers}, got {indices!r}")
    return tuple(int(v) for v in values)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
