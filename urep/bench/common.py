"""What every benchmark shares: repeated timing, median/min/max summaries, the machine record, tables.

A benchmark's `run(...)` returns a *section* (`section`); its `tables` (`table`) are what `bench.md` shows, a
cell being a number, a string, None or a *stat* (`summarize`'s median/min/max dict), and its `data` the raw
measurements for `bench.json`. Warm-up calls are left out of timings (`time_calls`).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: The folder `urep` is imported from: put on a child process's PYTHONPATH so it imports the same urep.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: Keys every stat cell has (`summarize` adds "n" and "values").
STAT_KEYS = ("median", "min", "max")


def summarize(values: Sequence[float]) -> dict:
    """Median, min and max of repeated measurements.

    Args:
        values: one number per repetition (at least one).

    Returns:
        `{"median", "min", "max", "n", "values"}`.

    Raises:
        ValueError: no values, or a value that is not a finite number.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one measurement, got none")
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise ValueError(f"measurements must be finite numbers, got {values}")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def is_stat(value: Any) -> bool:
    """True for a `summarize` dict."""
    return isinstance(value, dict) and all(key in value for key in STAT_KEYS)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn`, after `warmup` calls that are not timed.

    Args:
        fn: the work to time; it must finish its work before returning (convert results to NumPy or
            Python numbers so TensorFlow's asynchronous execution is included).
        repeats: timed calls (>= 1).
        warmup: untimed calls first (tracing, compilation, caches).

    Returns:
        One duration in seconds per timed call.

    Raises:
        ValueError: `repeats` < 1 or `warmup` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """`numerator / denominator`, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _memory_total_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    """The machine and software the numbers were measured with.

    Returns:
        `{"cpu", "cores", "cores_usable", "memory_mb", "python", "platform", "tensorflow", "keras",
        "tf_xla_flags", "xla_default", "date", "load_average", "environment"}`. `xla_default` is urep's
        `TrainConfig().jit_compile`; each benchmark records the XLA setting it used in its settings.
    """
    import keras
    import tensorflow as tf

    from urep.env import cpu_model, environment
    from urep.training import TrainConfig

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_mb": _memory_total_mb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_xla_flags": os.environ.get("TF_XLA_FLAGS", ""),
        "xla_default": TrainConfig().jit_compile,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "load_average": load_average(),
        "environment": environment(),
    }


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str | None = None) -> dict:
    """One Markdown table of a section.

    Raises:
        ValueError: a row whose length differs from the columns'.
    """
    columns = list(columns)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"table {title!r}: row {list(row)!r} has {len(row)} cells, expected {len(columns)}")
    return {"title": title, "columns": columns, "rows": [list(r) for r in rows], "note": note}


def section(name: str, title: str, *, settings: dict | None = None, tables: Sequence[dict] = (),
            data: Any = None, notes: Sequence[str] = (), figures: Sequence[str] = (),
            headlines: Sequence[Sequence[Any]] = ()) -> dict:
    """A benchmark's result (see the module docstring).

    `headlines` are rows `[measure, measured, paper or expected]` for the summary table of `bench.md`.
    """
    headlines = [list(h) for h in headlines]
    for row in headlines:
        if len(row) != 3:
            raise ValueError(f"section {name!r}: headline {row!r} must be [measure, measured, reference]")
    return {"name": name, "title": title, "settings": dict(settings or {}), "tables": list(tables),
            "data": data, "notes": list(notes), "figures": list(figures), "headlines": headlines}


def format_cell(value: Any, digits: int = 3) -> str:
    """A table cell: stats as `median (min-max)`, floats with `digits` significant digits, ints with
    thousands separators, None as an em dash."""
    if value is None:
        return "—"
    if is_stat(value):
        if value["min"] == value["max"]:
            return format_cell(value["median"], digits)
        return (f"{format_cell(value['median'], digits)} "
                f"({format_cell(value['min'], digits)}–{format_cell(value['max'], digits)})")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "—"
        if value == int(value) and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table (numbers right-aligned)."""
    header = "| " + " | ".join(str(c) for c in columns) + " |"
    numeric = [all(isinstance(r[i], (int, float)) or is_stat(r[i]) or r[i] is None for r in rows) and rows
               for i in range(len(columns))]
    rule = "|" + "|".join("---:" if numeric[i] else "---" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def stat_leaves(record: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """Every stat-like dict (with median, min and max) inside a nested record, with its key path.

    Used to tabulate the records of benchmarks written by other modules without knowing their layout.
    """
    if isinstance(record, dict):
        if is_stat(record):
            return [(path, record)]
        leaves = []
        for key, value in record.items():
            if key in ("environment", "machine"):
                continue
            leaves.extend(stat_leaves(value, (*path, str(key))))
        return leaves
    if isinstance(record, list):
        leaves = []
        for index, value in enumerate(record):
            leaves.extend(stat_leaves(value, (*path, str(index))))
        return leaves
    return []


def standalone_main(description: str, run: Callable[..., dict], render: Callable[[dict], str],
                    quick_help: str) -> None:
    """Command line of a delegated benchmark run alone: `--out DIR [--quick]`, INFO logging, then
    `render(run(out, quick=...))` printed.

    Args:
        description: the parser's description (the module docstring's first line).
        run: the benchmark's `run(out_dir, quick=...) -> record`.
        render: the record as a plain-text table.
        quick_help: what `--quick` does.
    """
    import argparse
    import logging

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(render(run(args.out, quick=args.quick)))
