"""Training images/s of one MultiMix step (five streams of `batch` images, saliency pass included), XLA on/off.

`run(out_dir, quick, sizes, rows)` times, at each size, the trainer's own loop (`measure`: rows `no_xla` and
`xla`) and the same step body run by `keras.Model.fit` (`measure_fit`: rows `fit` and `fit_xla`, the body as
the `train_step` of a `keras.Model` compiled with `jit_compile` False / True), the first `warmup` steps or
epoch left out; median, min and max of timed groups, wall clock and CPU time. Returns the record and writes it
to `OUT_DIR/multimix_throughput.json`.
Usage: `python -m urep.bench.multimix_throughput --out OUT_DIR [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from urep.env import environment  # noqa: E402
from urep.io import atomic_write_json  # noqa: E402
from urep.training.multimix import (  # noqa: E402
    MultiMixConfig,
    make_train_step,
    multimix_for_variant,
    multimix_optimizer,
    train_step_body,
)

STREAMS = 5


def _batch(size: int, batch: int, seed: int) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)

    def images() -> tf.Tensor:
        return tf.constant(rng.random((batch, size, size, 1), dtype=np.float32))

    masks = (rng.random((batch, size, size, 1)) > 0.5).astype(np.float32)
    return {"seg_images": images(), "seg_masks": tf.constant(masks), "seg_unlabelled": images(),
            "cls_images": images(), "cls_labels": tf.constant(rng.integers(0, 2, batch).astype(np.int32)),
            "weak": images(), "strong": images()}


def measure(size: int, channels: tuple[int, ...], jit_compile: bool, batch: int = 10, steps: int = 2,
            repeats: int = 2, warmup: int = 1) -> dict:
    """Images/s (all five streams) of the full MultiMix step at `size`, median/min/max over `repeats`."""
    keras.utils.set_random_seed(0)
    model = multimix_for_variant("multimix", input_shape=(size, size, 1), channels=channels)
    optimizer = multimix_optimizer(model, 1e-4)
    step = make_train_step(model, optimizer, MultiMixConfig(batch_size=batch, jit_compile=jit_compile))
    data = _batch(size, batch, 0)
    started = time.perf_counter()
    for _ in range(warmup):
        float(step(data)["loss"])
    warmup_seconds = time.perf_counter() - started
    rates, cpu_rates = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            terms = step(data)
        float(terms["loss"])
        images = STREAMS * batch * steps
        rates.append(images / (time.perf_counter() - wall))
        cpu_rates.append(images / max(time.process_time() - cpu, 1e-9))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats,
            "steps": steps, "batch_per_stream": batch, "images_per_step": STREAMS * batch,
            "cpu_median": statistics.median(cpu_rates), "warmup_seconds": warmup_seconds}


class FitDriver(keras.Model):
    """A `keras.Model` whose `train_step` is the trainer's step body, so `fit` traces and runs it."""

    def __init__(self, body) -> None:
        super().__init__()
        self._body = body
        self.built = True

    def train_step(self, data):
        return self._body(data)


class _EpochClock(keras.callbacks.Callback):
    """Wall-clock and CPU seconds of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


def measure_fit(size: int, channels: tuple[int, ...], jit_compile: bool, batch: int = 10, steps: int = 2,
                repeats: int = 2) -> dict:
    """Images/s of the same step run by `model.fit(jit_compile=...)`, one epoch of `steps` steps per repeat.

    The first epoch (tracing, compilation, `fit`'s set-up) is the warm-up; `fit`'s per-epoch work (callbacks,
    logs) stays in the timed epochs, as it does in a real `fit` run.
    """
    keras.utils.set_random_seed(0)
    model = multimix_for_variant("multimix", input_shape=(size, size, 1), channels=channels)
    optimizer = multimix_optimizer(model, 1e-4)
    driver = FitDriver(train_step_body(model, optimizer, MultiMixConfig(batch_size=batch)))
    driver.compile(optimizer=optimizer, jit_compile=jit_compile)
    data = tf.data.Dataset.from_tensors(_batch(size, batch, 0)).repeat()
    clock = _EpochClock()
    driver.fit(data, epochs=1 + repeats, steps_per_epoch=steps, callbacks=[clock], shuffle=False, verbose=0)
    images = STREAMS * batch * steps
    rates = [images / seconds for seconds in clock.wall[1:]]
    cpu_rates = [images / max(seconds, 1e-9) for seconds in clock.cpu[1:]]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats,
            "steps": steps, "batch_per_stream": batch, "images_per_step": images // steps,
            "cpu_median": statistics.median(cpu_rates), "warmup_seconds": clock.wall[0]}


# name, XLA, driver: the trainer's tf.function loop or keras.Model.fit.
ROWS = (("no_xla", False, "loop"), ("fit", False, "fit"), ("xla", True, "loop"), ("fit_xla", True, "fit"))


def run(out_dir: str | os.PathLike, quick: bool = False, sizes: tuple[int, ...] | None = None,
        rows: tuple[str, ...] | None = None) -> dict:
    """Measure every size x XLA row; write `out_dir/multimix_throughput.json` and return the record.

    The record is rewritten after each row, so an interrupted run keeps the rows it finished. XLA rows run
    after every plain row (their compilation takes minutes on a small CPU).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = sizes or ((32,) if quick else (128, 256))
    channels = (4, 8, 16, 32, 64) if quick else (16, 32, 64, 128, 256)
    steps, repeats = (1, 1) if quick else (2, 2)
    record: dict = {"benchmark": "multimix_throughput", "quick": quick, "channels": list(channels),
                    "batch_per_stream": 10, "streams": STREAMS, "environment": environment(), "sizes": {}}
    for name, jit, driver in ROWS:
        if rows and name not in rows:
            continue
        for size in sizes:
            timer = measure if driver == "loop" else measure_fit
            row = timer(size, channels, jit, steps=steps, repeats=repeats)
            record["sizes"].setdefault(str(size), {})[name] = row
            print(f"{size}x{size} {name}: {row['median']:.2f} img/s (min {row['min']:.2f}, max {row['max']:.2f}), "
                  f"cpu {row['cpu_median']:.2f}, warm-up {row['warmup_seconds']:.1f} s", flush=True)
            atomic_write_json(out / "multimix_throughput.json", record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default 128 256; quick 32)")
    parser.add_argument("--rows", nargs="+", choices=[row[0] for row in ROWS], help="default: all")
    args = parser.parse_args()
    run(args.out, args.quick, tuple(args.sizes) if args.sizes else None, tuple(args.rows) if args.rows else None)


if __name__ == "__main__":
    main()
