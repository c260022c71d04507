"""Batch normalization: TensorFlow's fused kernel (`urep.models.BatchNorm`) against Keras 3's layer.

`run(out_dir, quick)` times training steps (Adam, batch 8, as the real-data configs' heads) of the two
models the real-data runs spend their time in, each built twice with the same seed, once with
`BatchNorm(fused=True)` and once with `fused=False` (Keras 3's `BatchNormalization.call`: moments, casts and
element-wise ops): the lung segmentation head on a frozen CDAE encoder with context blocks (the independent
strategy of the 128x128 real-data config) and the whole CDAE (the source model, and the alternating/joint
strategies' shared encoder trained). Per precision: float32, and mixed_bfloat16 where the CPU has bfloat16
hardware (or a GPU is present). The variants run interleaved, round by round; round 0 (tracing) is left out.
Writes `OUT_DIR/batchnorm.json`. Usage: `python -m urep.bench.batchnorm --out OUT_DIR [--quick]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from urep.bench.common import ratio, summarize  # noqa: E402
from urep.env import environment, native_bfloat16  # noqa: E402
from urep.io import atomic_write_json  # noqa: E402
from urep.models import BatchNorm, MultiTaskModel, cdae, truncate  # noqa: E402

logger = logging.getLogger("urep.bench.batchnorm")
BATCH = 8
#: The real-data configs' source CDAE and segmentation head (urep/experiments/configs/*_128.yaml).
CDAE_OPTIONS = {"filters": [32, 64, 64, 128], "output": "residual", "skips": "add"}
CONTEXT_DILATIONS = (1, 2, 4)


def precisions() -> list[str]:
    """float32, plus mixed_bfloat16 where it runs in hardware (bfloat16 CPU instructions or a GPU)."""
    fast_bf16 = native_bfloat16() or bool(tf.config.list_physical_devices("GPU"))
    return ["float32", "mixed_bfloat16"] if fast_bf16 else ["float32"]


def _model(kind: str, size: int, fused: bool, seed: int = 0) -> tuple[keras.Model, keras.losses.Loss]:
    keras.utils.set_random_seed(seed)
    source = cdae(input_shape=(size, size, 1), **CDAE_OPTIONS)
    for layer in source.layers:
        if isinstance(layer, BatchNorm):
            layer.fused = fused
    if kind == "cdae":
        return source, keras.losses.MeanSquaredError()
    assembly = MultiTaskModel(truncate(source))
    head = assembly.add_segmentation_head("lung", autoencoder=source, context_dilations=CONTEXT_DILATIONS)
    for layer in head.layers:
        if isinstance(layer, BatchNorm):
            layer.fused = fused
    assembly.freeze_shared()
    return head, keras.losses.BinaryCrossentropy()


def _step_fn(model: keras.Model, loss_fn: keras.losses.Loss, x: tf.Tensor, y: tf.Tensor):
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(model(x, training=True), "float32"))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def measure(kind: str, size: int, precision: str, steps: int, repeats: int) -> dict:
    """Images/s (wall and per CPU-second) of one model with the fused kernel and with Keras' layer."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(size=(BATCH, size, size, 1)).astype("float32"))
        y = x if kind == "cdae" else tf.constant((rng.uniform(size=x.shape) > 0.5).astype("float32"))
        steps_fns = {fused: _step_fn(*_model(kind, size, fused), x, y) for fused in (True, False)}
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu_rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(repeats + 1):
        for fused, step in steps_fns.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss = step()
            float(loss)
            if round_:
                rates[fused].append(steps * BATCH / (time.perf_counter() - start))
                cpu_rates[fused].append(steps * BATCH / (time.process_time() - cpu_start))
    result = {("fused" if fused else "keras"): {**summarize(rates[fused]),
                                                "cpu_median": summarize(cpu_rates[fused])["median"]}
              for fused in (True, False)}
    result["speedup"] = ratio(result["fused"]["median"], result["keras"]["median"])
    logger.info("%s %dx%d %s: fused %.1f img/s, keras %.1f img/s (x%.2f)", kind, size, size, precision,
                result["fused"]["median"], result["keras"]["median"], result["speedup"])
    return result


def run(out_dir: str | os.PathLike, quick: bool = False) -> dict:
    """Measure both models at every size and precision and write `out_dir/batchnorm.json`.

    Args:
        out_dir: where to write the JSON record.
        quick: 64x64 only, 3 steps per round, 2 timed rounds (a smoke run); otherwise 128x128 and 256x256.

    Returns:
        `{"batch_size", "steps", "repeats", "results": {model: {size: {precision: {"fused": stat, "keras":
        stat, "speedup"}}}}, "environment"}` (images/s; speedup = fused median / Keras median).
    """
    sizes = (64,) if quick else (128, 256)
    repeats = 2 if quick else 5
    steps = {64: 3, 128: 8, 256: 3} if quick else {128: 8, 256: 3}
    record: dict = {"batch_size": BATCH, "steps": steps, "repeats": repeats, "results": {}}
    for kind in ("segmentation_head_frozen_encoder", "cdae"):
        for size in sizes:
            for precision in precisions():
                record["results"].setdefault(kind, {}).setdefault(str(size), {})[precision] = measure(
                    "cdae" if kind == "cdae" else "head", size, precision, steps[size], repeats)
    record["environment"] = environment()
    atomic_write_json(Path(out_dir) / "batchnorm.json", record)
    return record


def _table(record: dict) -> str:
    lines = ["model                              size  precision        fused img/s  keras img/s  speedup"]
    for kind, sizes in record["results"].items():
        for size, entries in sizes.items():
            for precision, entry in entries.items():
                lines.append(f"{kind:<34} {size:>4}  {precision:<15} {entry['fused']['median']:11.1f} "
                             f"{entry['keras']['median']:12.1f}  {entry['speedup']:7.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="64x64 only, few steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(_table(run(args.out, quick=args.quick)))


if __name__ == "__main__":
    main()
