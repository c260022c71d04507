"""Overall progress of a multi-stage run: a console line per finished stage with its time and an ETA.

`Stages(["load data", "train source", ...], label)` logs what follows; `with stages.stage("train source"):`
times one stage and logs `stage 2 of 9 done: train source in 41 s (elapsed 1.0 min, ETA ~6 min)`. The ETA
scales the time spent so far by the stages' relative `weights` (training stages weigh most); it is a rough
guide, not a promise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """`42 s`, `3.5 min` or `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Stages:
    """The ordered stages of a run, for progress lines.

    Args:
        names: the stages in the order they run.
        label: what runs (e.g. the experiment's name), prefixed to every line.
        weights: relative expected cost of each stage (default 1 each), for the ETA.

    Raises:
        ValueError: `weights` has a different length than `names` or a negative value.
    """

    def __init__(self, names: Sequence[str], label: str, weights: Sequence[float] | None = None) -> None:
        weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
        if len(weights) != len(names) or any(w < 0 for w in weights):
            raise ValueError(f"weights must be {len(names)} non-negative numbers, got {weights}")
        self.names, self.label, self.weights = list(names), label, weights
        self.done: list[str] = []
        self.started = time.perf_counter()
        logger.info("%s: %d stages follow: %s", label, len(names), ", ".join(self.names))

    def eta(self, elapsed: float) -> float | None:
        """Seconds left, from the time spent on the stages done so far and the weights of those left."""
        done = sum(w for n, w in zip(self.names, self.weights, strict=True) if n in self.done)
        left = sum(w for n, w in zip(self.names, self.weights, strict=True) if n not in self.done)
        if done <= 0:
            return None
        return elapsed / done * left

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the stage `name` (one of `names`) and log a line when it ends.

        Raises:
            ValueError: `name` is not one of the stages.
        """
        if name not in self.names:
            raise ValueError(f"unknown stage {name!r}; expected one of {self.names}")
        index = self.names.index(name) + 1
        start = time.perf_counter()
        yield
        self.done.append(name)
        now = time.perf_counter()
        elapsed = now - self.started
        eta = self.eta(elapsed)
        tail = "" if index == len(self.names) else (
            f", ETA ~{format_duration(eta)}" if eta is not None else "")
        logger.info("%s: stage %d of %d done: %s in %s (elapsed %s%s)", self.label, index, len(self.names), name,
                    format_duration(now - start), format_duration(elapsed), tail)
