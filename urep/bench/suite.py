"""The benchmark suite: runs the benchmarks, writes `bench.json`, `bench.md` and the figures.

`run_suite(out_dir, quick, only, repeats)` runs the benchmarks of `BENCHMARKS` in order, rewriting both files
after each; a benchmark whose module is absent is recorded as `missing`, one that raises as `failed` with its
error, and the suite goes on. The `DELEGATED` ones return their own records, tabulated here; `ISOLATED` ones
run in a fresh Python process. Usage: `urep bench [--quick] --out DIR [--only NAME ...] [--repeats N]`, or
`python -m urep.bench.suite --out DIR ...`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from urep.bench.common import (
    PACKAGE_ROOT,
    format_cell,
    is_stat,
    load_average,
    machine,
    markdown_table,
    section,
    stat_leaves,
    table,
)

logger = logging.getLogger(__name__)

#: Benchmark name -> (module, function, title); the order is the order they run in.
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "params": ("urep.bench.cost", "run_parameters", "Parameters per model and per approach"),
    "cost": ("urep.bench.cost", "run_cost", "Shared vs separate to the same stopping rule"),
    "inference": ("urep.bench.inference", "run", "Inference: fused vs separate"),
    "train_throughput": ("urep.bench.train_throughput", "run", "Training-step throughput"),
    "batchnorm": ("urep.bench.batchnorm", "run", "Batch normalization: fused kernel vs Keras layer"),
    "data_pipeline": ("urep.bench.data_pipeline", "run", "Data pipeline throughput"),
    "scaling": ("urep.bench.scaling", "run", "Scaling with tasks"),
    "memory": ("urep.bench.memory", "run", "Peak memory of CDAE training"),
    "tuner_memory": ("urep.bench.tuner_memory", "run", "Peak memory of a tuner search"),
    "multimix_throughput": ("urep.bench.multimix_throughput", "run", "MultiMix training-step throughput"),
}
#: Benchmarks written elsewhere, called as `run(out_dir, quick)`; their records are tabulated here.
DELEGATED = ("train_throughput", "batchnorm", "data_pipeline", "tuner_memory", "multimix_throughput")
#: Delegated benchmarks that measure the peak memory of their own process: run in a fresh child process, so
#: the suite's earlier benchmarks do not count.
ISOLATED = ("tuner_memory",)

JSON_NAME = "bench.json"
MARKDOWN_NAME = "bench.md"


def check_names(only: Sequence[str] | None) -> list[str]:
    """The benchmarks to run, in suite order.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if not only:
        return list(BENCHMARKS)
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in only]


def _load(name: str) -> Callable | None:
    """The benchmark's function, or None when its module is absent."""
    module_name, function, _ = BENCHMARKS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise
    return getattr(module, function)


def _throughput_tables(record: dict) -> list[dict]:
    """`urep.bench.train_throughput`'s record: img/s per size, model group and row, and each row / `fit`."""
    rows = []
    for size, groups in record.get("sizes", {}).items():
        fit = groups.get("cdae", {}).get("fit")
        for group, entries in groups.items():
            for label, stat in entries.items():
                if not is_stat(stat):
                    continue
                versus = stat["median"] / fit["median"] if group == "cdae" and is_stat(fit) else None
                rows.append([int(size), group, label, stat, versus])
    return [table("Training images/s (custom loops vs model.fit, XLA on/off)",
                  ["size", "model", "row", "img/s", "vs fit"], rows,
                  note=f"batch {record.get('batch_size')}, steps per epoch {record.get('steps_per_epoch')}; "
                       "the first (tracing/compiling) epoch is excluded.")]


def _generic_tables(name: str, record: dict) -> list[dict]:
    """Top-level numbers, then every median/min/max dict (key path joined by " / "), one row each."""
    rows = [[key, value] for key, value in record.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]
    rows += [[" / ".join(path), stat] for path, stat in stat_leaves(record)]
    if not rows:
        return []
    return [table(f"{BENCHMARKS[name][2]} (record of urep/bench/{name}.py)", ["measurement", "value"], rows)]


def _delegated_headlines(name: str, record: dict) -> list[list]:
    """Summary rows for the delegated records whose layout is known (others: none)."""
    if name == "tuner_memory" and "peak_rss_mib" in record:
        return [[f"peak RSS MiB of a {record.get('trials')}-trial tuner search (own process)",
                 record["peak_rss_mib"], None],
                [f"RSS growth per trial, MiB ({record.get('trials')} trials)", record.get("growth_mib_per_trial"),
                 "≈ 0 (no leak)"]]
    if name == "train_throughput":
        rows = []
        for size, groups in record.get("sizes", {}).items():
            cdae = groups.get("cdae", {})
            if all(is_stat(cdae.get(k)) for k in ("fit", "loop")):
                rows.append([f"training img/s, urep loop (XLA) / model.fit, CDAE {size}x{size}",
                             cdae["loop"]["median"] / cdae["fit"]["median"], "> 1 (1.7 with XLA measured on TF 2.21)"])
        return rows
    return []


def adapt_delegated(name: str, record: dict) -> dict:
    """A section from the record a delegated benchmark returned.

    A record that already is a section (has "tables") is kept; `train_throughput`'s layout is known;
    anything else is tabulated generically (one row per median/min/max dict).
    """
    if isinstance(record, dict) and "tables" in record:
        return {**section(name, BENCHMARKS[name][2]), **record}
    if not isinstance(record, dict):
        raise TypeError(f"urep/bench/{name}.py run() returned {type(record).__name__}, expected a dict")
    tables = _throughput_tables(record) if name == "train_throughput" else _generic_tables(name, record)
    settings = {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))}
    return section(name, BENCHMARKS[name][2], settings=settings, tables=tables,
                   data={k: v for k, v in record.items() if k != "environment"},
                   headlines=_delegated_headlines(name, record),
                   notes=[f"Measured by urep/bench/{name}.py (its own record: {name}.json in the output folder, "
                          "when it writes one)."])


def _run_isolated(name: str, out_dir: Path, quick: bool) -> dict:
    """Call `urep.bench.<name>.run(out_dir, quick)` in a fresh Python process and return its record."""
    module_name, function, _ = BENCHMARKS[name]
    result_path = out_dir / f".{name}.record.json"
    code = (f"import sys; from urep.io import atomic_write_json; from {module_name} import {function}; "
            "atomic_write_json(sys.argv[3], " + function + "(sys.argv[1], quick=sys.argv[2] == '1'))")
    root = PACKAGE_ROOT
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run([sys.executable, "-c", code, str(out_dir), str(int(quick)), str(result_path)],
                               cwd=root, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not result_path.is_file():
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"urep/bench/{name}.py failed in its own process (exit {completed.returncode}):\n{tail}")
    record = json.loads(result_path.read_text(encoding="utf-8"))
    result_path.unlink()
    return record


#: `--profile gpu` / `cpu-bf16`: every model the in-process benchmarks build computes in mixed_float16 /
#: mixed_bfloat16 (float32 outputs). XLA stays each benchmark's own setting (they list it, and the training
#: benchmark times both); urep's profiles for runs: docs/scale.md.
PROFILE_POLICY = {"cpu": None, "cpu-bf16": "mixed_bfloat16", "gpu": "mixed_float16"}


def _gpus() -> list:
    import tensorflow as tf

    return tf.config.list_logical_devices("GPU")


def _reset_device_memory() -> None:
    import tensorflow as tf

    for gpu in _gpus():
        tf.config.experimental.reset_memory_stats(gpu.name)


def _peak_device_memory_mb() -> float | None:
    """The largest peak of `tf.config.experimental.get_memory_info` over the GPUs since the last reset (None
    without a GPU; the isolated benchmarks run in another process and are not counted)."""
    import tensorflow as tf

    peaks = [tf.config.experimental.get_memory_info(gpu.name)["peak"] for gpu in _gpus()]
    return max(peaks) / 2**20 if peaks else None


def _run_one(name: str, out_dir: Path, quick: bool, repeats: int | None, profile: str = "cpu") -> dict:
    from urep.training.distribute import mixed_precision_scope

    with mixed_precision_scope(PROFILE_POLICY[profile]):
        _reset_device_memory()
        result = _run_one_here(name, out_dir, quick, repeats)
        peak = _peak_device_memory_mb()
    result["profile"] = profile
    if peak is not None and name not in ISOLATED:
        result["peak_device_memory_mb"] = peak
        result.setdefault("headlines", []).append(["peak device memory MB (get_memory_info)", f"{peak:.0f}", "-"])
    return result


def _run_one_here(name: str, out_dir: Path, quick: bool, repeats: int | None) -> dict:
    started, load_before = time.perf_counter(), load_average()
    try:
        function = _load(name)
        if function is None:
            logger.warning("benchmark %s skipped: %s.py is not installed", name,
                           BENCHMARKS[name][0].replace(".", "/"))
            result = {**section(name, BENCHMARKS[name][2]), "status": "missing",
                      "error": f"module {BENCHMARKS[name][0]} not found"}
        elif name in ISOLATED:
            result = {**adapt_delegated(name, _run_isolated(name, out_dir, quick)), "status": "ok",
                      "isolated": True}
        elif name in DELEGATED:
            result = {**adapt_delegated(name, function(out_dir, quick)), "status": "ok"}
        else:
            result = {**function(out_dir, quick=quick, repeats=repeats), "status": "ok"}
    except Exception as error:  # noqa: BLE001 - one failing benchmark must not lose the others' numbers
        logger.error("benchmark %s failed:\n%s", name, traceback.format_exc())
        result = {**section(name, BENCHMARKS[name][2]), "status": "failed",
                  "error": f"{type(error).__name__}: {error}"}
    result.update(seconds=time.perf_counter() - started, load_average_before=load_before,
                  load_average_after=load_average())
    logger.info("benchmark %s: %s in %.1f s", name, result["status"], result["seconds"])
    return result


def _machine_rows(info: dict) -> list[list]:
    return [["CPU", info["cpu"]], ["cores (usable)", f"{info['cores']} ({info['cores_usable']})"],
            ["memory MB", info["memory_mb"]], ["TensorFlow / Keras", f"{info['tensorflow']} / {info['keras']}"],
            ["Python", info["python"]], ["GPUs", ", ".join(info["gpus"]) or "none"],
            ["XLA", f"urep default jit_compile={info['xla_default']}; each benchmark lists its own setting; "
                    f"TF_XLA_FLAGS={info['tf_xla_flags'] or '(unset)'}"],
            ["date (UTC)", info["date"]],
            ["load average 1/5/15 min, start → end", f"{info['load_average']} → {info.get('load_average_end')}"]]


def render_markdown(record: dict) -> str:
    """`bench.md` from the `bench.json` record."""
    info = record["machine"]
    lines = ["# urep benchmarks", "",
             f"Mode: {'quick' if record['quick'] else 'full'}, profile {record.get('profile', 'cpu')}; "
             f"{record['seconds']:.0f} s in all"
             f"{'' if record['complete'] else ' (incomplete: the run was stopped or is still going)'}. Each figure is "
             "the median (min–max) of the repetitions given in its settings; warm-up (tracing, compilation) "
             "is excluded except in times to early stopping, which include what a user waits for.", "",
             markdown_table(["machine", ""], _machine_rows(info)), ""]
    headlines = [[name, *row] for name, result in record["benchmarks"].items() for row in result["headlines"]]
    if headlines:
        lines += ["## Summary", "", markdown_table(["benchmark", "measure", "measured", "paper / expected"],
                                                   headlines), ""]
    for name, result in record["benchmarks"].items():
        lines += [f"## {result['title']} (`{name}`, {result['status']}, {result['seconds']:.0f} s)", ""]
        if result.get("error"):
            lines += [f"**{result['status']}**: {result['error']}", ""]
        settings = ", ".join(f"{k}={format_cell(v)}" for k, v in result["settings"].items())
        if settings:
            lines += [f"Settings: {settings}. Load average {result['load_average_before']} → "
                      f"{result['load_average_after']}.", ""]
        for item in result["tables"]:
            lines += [f"### {item['title']}", "", markdown_table(item["columns"], item["rows"]), ""]
            if item.get("note"):
                lines += [item["note"], ""]
        lines += [note + "\n" for note in result["notes"]]
        lines += [f"![{name}]({figure})\n" for figure in result["figures"]]
    return "\n".join(lines).rstrip() + "\n"


def run_suite(out_dir: str | os.PathLike, quick: bool = False, only: Sequence[str] | None = None,
              repeats: int | None = None, profile: str = "cpu") -> dict:
    """Run the chosen benchmarks and write `bench.json`, `bench.md` and figures into `out_dir`.

    Args:
        out_dir: output folder (created; files in it are replaced).
        quick: tiny sizes and 1-2 repetitions (a smoke run of well under a minute on an idle 2-core CPU).
        only: names from `BENCHMARKS` (default: all).
        repeats: repetitions for every benchmark of this module that takes them (default: each one's own;
            delegated benchmarks keep theirs).
        profile: `cpu`, `cpu-bf16` (models in mixed_bfloat16) or `gpu` (mixed_float16, peak GPU memory per
            benchmark); `PROFILE_POLICY`.

    Returns:
        The `bench.json` record: `{"quick", "repeats", "only", "machine", "seconds", "complete", "benchmarks":
        {name: section + "status", "seconds", "load_average_before/after"}}` (rewritten after each benchmark;
        "complete" is false until the last one is in).

    Raises:
        ValueError: unknown benchmark names or `repeats` < 1.
    """
    from urep.env import native_bfloat16
    from urep.io import atomic_write_json, atomic_write_text

    names = check_names(only)
    if profile not in PROFILE_POLICY:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILE_POLICY)}")
    if repeats is not None and repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine()
    if profile == "gpu" and not _gpus():
        logger.warning("--profile gpu without a visible GPU: mixed_float16 on the CPU (slow), no device memory")
    if profile == "cpu-bf16" and not native_bfloat16():
        logger.warning("--profile cpu-bf16 on a CPU without bfloat16 hardware (%s): emulated, slower than float32",
                       info["cpu"])
    record = {"quick": quick, "profile": profile, "repeats": repeats, "only": names, "machine": info, "seconds": 0.0,
              "complete": False, "benchmarks": {}}
    for name in names:
        logger.info("benchmark %s ...", name)
        record["benchmarks"][name] = _run_one(name, out_dir, quick, repeats, profile)
        # Written after every benchmark, so a long run that is stopped keeps what it measured.
        info["load_average_end"] = load_average()
        record["seconds"] = time.perf_counter() - started
        record["complete"] = name == names[-1]
        atomic_write_json(out_dir / JSON_NAME, record)
        atomic_write_text(out_dir / MARKDOWN_NAME, render_markdown(record))
    logger.info("wrote %s and %s", out_dir / JSON_NAME, out_dir / MARKDOWN_NAME)
    return record


def main(argv: list[str] | None = None) -> int:
    """`python -m urep.bench.suite --out DIR [--quick] [--only ...] [--repeats N]`."""
    parser = argparse.ArgumentParser(description="urep benchmark suite")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1-2 repetitions")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"some of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, help="repetitions per figure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = run_suite(args.out, args.quick, args.only, args.repeats)
    print((Path(args.out) / MARKDOWN_NAME).read_text(encoding="utf-8"))
    return 1 if any(r["status"] == "failed" for r in record["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
