"""Memory: peak resident memory (VmHWM) of a CDAE training run, each in a fresh Python process.

`measure` starts `python -m urep.bench.memory --child ...`, which trains the CDAE for one epoch with
`urep.training.source.train_denoiser` and reports the `VmHWM` of its own `/proc/self/status`; `run` measures
each configuration of `MemorySettings` (and an import-only baseline) and returns a
`urep.bench.common.section`. Linux only (`/proc`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from urep.bench.common import PACKAGE_ROOT, section, summarize, table

logger = logging.getLogger(__name__)

RESULT_PREFIX = "UREP_BENCH_MEMORY "


@dataclass(frozen=True)
class MemorySettings:
    """Attributes:
        size: image side (the brief: 256).
        batch_size: images per step (the papers: 16).
        steps: training steps (one epoch).
        filters: CDAE encoder widths (papers' width: 112 x 4).
        xla: XLA settings to measure (urep's default is on).
        baseline: also measure a process that only imports TensorFlow and urep.
        repeats: repetitions of each configuration.
        timeout: seconds before a child is stopped.
    """

    size: int = 256
    batch_size: int = 16
    steps: int = 2
    filters: tuple[int, ...] = (112, 112, 112, 112)
    xla: tuple[bool, ...] = (True, False)
    baseline: bool = True
    repeats: int = 1
    timeout: float = 600.0


FULL = MemorySettings()
QUICK = MemorySettings(size=32, batch_size=4, steps=1, filters=(8, 8, 8, 8), xla=(False,), baseline=False,
                      timeout=300.0)


def read_status(pid: int | str = "self") -> dict[str, int]:
    """The memory lines (`Vm*`, in kB) of `/proc/<pid>/status`.

    Raises:
        OSError: no such process, or no `/proc` (not Linux).
    """
    values = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("Vm"):
                key, rest = line.split(":", 1)
                values[key] = int(rest.split()[0])
    return values


def _child(args: argparse.Namespace) -> int:
    """Train (unless `--steps 0`) and print the result line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import numpy as np

    import urep  # noqa: F401
    from urep.models import cdae
    from urep.training import TrainConfig
    from urep.training.source import train_denoiser

    record = {"import_seconds": time.perf_counter() - started}
    if args.steps > 0:
        n = args.steps * args.batch
        images = np.random.default_rng(0).uniform(size=(n, args.size, args.size, 1)).astype("float32")
        model = cdae((args.size, args.size, 1), filters=tuple(args.filters))
        config = TrainConfig(epochs=1, batch_size=args.batch, optimizer="rmsprop", monitor="loss",
                             early_stopping_patience=None, jit_compile=bool(args.xla), progress_bar=False,
                             tensorboard=False, checkpoint_every_epoch=False)
        train_start = time.perf_counter()
        result = train_denoiser(model, images, None, "gaussian:0.03", config)
        record.update(train_seconds=time.perf_counter() - train_start, steps=result.steps_run,
                      params=model.count_params())
    status = read_status()
    record.update(vmhwm_kb=status.get("VmHWM"), vmrss_kb=status.get("VmRSS"))
    print(RESULT_PREFIX + json.dumps(record), flush=True)
    return 0


def measure(size: int, batch_size: int, steps: int, filters, xla: bool, timeout: float = 600.0,
            poll: float = 0.1) -> dict:
    """Run one child and return its peak resident memory.

    Args:
        size: image side.
        batch_size: images per step.
        steps: training steps; 0 only imports TensorFlow and urep.
        filters: CDAE encoder widths.
        xla: `jit_compile` of the training loop.
        timeout: seconds before the child is killed.
        poll: seconds between reads of `/proc/<pid>/status`.

    Returns:
        `{"peak_rss_mb" (the child's own VmHWM at its end), "polled_peak_mb", "final_rss_mb", "seconds",
        "train_seconds", "import_seconds", ...}`.

    Raises:
        RuntimeError: the child failed, timed out, or printed no result (its stderr tail is in the message).
    """
    command = [sys.executable, "-m", "urep.bench.memory", "--child", "--size", str(size), "--batch",
               str(batch_size), "--steps", str(steps), "--xla", str(int(xla)), "--filters",
               *[str(f) for f in filters]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p))
    started = time.perf_counter()
    # Output goes to files, not pipes: a pipe left unread while polling could fill and block the child.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=PACKAGE_ROOT, env=env, stdout=out, stderr=err, text=True)
        polled = 0
        while process.poll() is None:
            if time.perf_counter() - started > timeout:
                process.kill()
                process.wait()
                raise RuntimeError(f"memory child {' '.join(command)} ran over {timeout:.0f} s and was killed")
            try:
                polled = max(polled, read_status(process.pid).get("VmHWM", 0))
            except OSError:
                pass
            time.sleep(poll)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"memory child {' '.join(command)} exited with {process.returncode} and no result:\n"
                           f"{tail}")
    record = json.loads(lines[-1][len(RESULT_PREFIX):])
    record.update(peak_rss_mb=record["vmhwm_kb"] / 1024, final_rss_mb=record["vmrss_kb"] / 1024,
                  polled_peak_mb=polled / 1024, seconds=seconds)
    return record


def run(out_dir, quick: bool = False, repeats: int | None = None, settings: MemorySettings | None = None) -> dict:
    """Peak RSS of the import-only baseline and of the CDAE training run for each XLA setting.

    Args:
        out_dir: unused.
        quick: `QUICK` settings (32x32, narrow CDAE, one step).
        repeats: overrides the settings' repeats.
        settings: overrides `FULL`/`QUICK`.

    Returns:
        A section; `data[label]` holds each configuration's stats and its raw child records.
    """
    settings = settings or (QUICK if quick else FULL)
    if repeats is not None:
        settings = dataclasses.replace(settings, repeats=repeats)
    configs = [("import TensorFlow + urep only", 0, False)] if settings.baseline else []
    configs += [(f"CDAE training {settings.size}x{settings.size}, batch {settings.batch_size}, "
                 f"{'XLA' if xla else 'no XLA'}", settings.steps, xla) for xla in settings.xla]
    rows, data = [], {}
    for label, steps, xla in configs:
        records = [measure(settings.size, settings.batch_size, steps, settings.filters, xla, settings.timeout)
                   for _ in range(settings.repeats)]
        peak = summarize([r["peak_rss_mb"] for r in records])
        polled = summarize([r["polled_peak_mb"] for r in records])
        train = summarize([r["train_seconds"] for r in records]) if steps else None
        data[label] = {"peak_rss_mb": peak, "polled_peak_mb": polled, "train_seconds": train, "records": records}
        rows.append([label, steps, peak, polled, train])
        logger.info("memory %s: %.0f MB", label, peak["median"])
    return section(
        "memory", "Peak resident memory (VmHWM) of a CDAE training run",
        settings=dataclasses.asdict(settings),
        tables=[table("Peak resident memory, MB", ["process", "steps", "peak RSS MB", "polled peak MB",
                                                   "train s"], rows,
                      note="Each row a fresh process; peak = the child's own VmHWM at exit, polled = the "
                           "largest VmHWM the parent read from /proc/<pid>/status meanwhile.")],
        data=data,
        headlines=[[f"peak RSS MB, {label}", entry["peak_rss_mb"], None] for label, entry in data.items()])


def main(argv: list[str] | None = None) -> int:
    """`python -m urep.bench.memory --child ...` (used by `measure`)."""
    parser = argparse.ArgumentParser(description="child process of the memory benchmark")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--xla", type=int, choices=(0, 1), default=1)
    parser.add_argument("--filters", type=int, nargs="+", required=True)
    return _child(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
