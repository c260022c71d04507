"""Batch normalization: TensorFlow's fused kernel (`urep.models.BatchNorm`) against Keras 3's layer.

`run(out_dir, quick)` times training steps (Adam, batch 8, as the real-data configs' heads) of the models
the real-data runs spend their time in, each built three times with the same seed: `BatchNorm(fused=None)`
("auto", what urep runs), `fused=True` (the fused kernel in every layer) and `fused=False` ("keras": Keras
3's `BatchNormalization.call`, moments, casts and element-wise ops). Models: the lung segmentation head on a
frozen CDAE encoder with context blocks (the independent strategy of the 128x128 real-data config), the
whole CDAE (the source model, and what the alternating/joint strategies train) and the U-Net reference
(first level 8 channels). Per precision: float32, and mixed_bfloat16 where the CPU has bfloat16 hardware
(or a GPU is present). The variants run interleaved, round by round; round 0 (tracing) is left out.
Writes `OUT_DIR/batchnorm.json`. Usage: `python -m urep.bench.batchnorm --out OUT_DIR [--quick]`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from urep.bench.common import ratio, standalone_main, summarize  # noqa: E402
from urep.env import environment, native_bfloat16  # noqa: E402
from urep.io import atomic_write_json  # noqa: E402
from urep.models import BatchNorm, MultiTaskModel, cdae, truncate, unet  # noqa: E402

logger = logging.getLogger("urep.bench.batchnorm")
BATCH = 8
#: The real-data configs' source CDAE and segmentation head (urep/experiments/configs/*_128.yaml).
CDAE_OPTIONS = {"filters": [32, 64, 64, 128], "output": "residual", "skips": "add"}
CONTEXT_DILATIONS = (1, 2, 4)
#: Variant name -> `BatchNorm.fused`.
VARIANTS = {"auto": None, "fused": True, "keras": False}
MODELS = {"segmentation_head_frozen_encoder": "head", "cdae": "cdae", "unet_reference": "unet"}


def precisions() -> list[str]:
    """float32, plus mixed_bfloat16 where it runs in hardware (bfloat16 CPU instructions or a GPU)."""
    fast_bf16 = native_bfloat16() or bool(tf.config.list_physical_devices("GPU"))
    return ["float32", "mixed_bfloat16"] if fast_bf16 else ["float32"]


def _set_fused(model: keras.Model, fused: bool | None) -> None:
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.fused = fused
        elif isinstance(layer, keras.Model):
            _set_fused(layer, fused)


def _model(kind: str, size: int, fused: bool | None, seed: int = 0) -> tuple[keras.Model, keras.losses.Loss]:
    keras.utils.set_random_seed(seed)
    if kind == "unet":
        model = unet(input_shape=(size, size, 1))
        _set_fused(model, fused)
        return model, keras.losses.BinaryCrossentropy()
    source = cdae(input_shape=(size, size, 1), **CDAE_OPTIONS)
    if kind == "cdae":
        _set_fused(source, fused)
        return source, keras.losses.MeanSquaredError()
    assembly = MultiTaskModel(truncate(source))
    head = assembly.add_segmentation_head("lung", autoencoder=source, context_dilations=CONTEXT_DILATIONS)
    _set_fused(head, fused)
    assembly.freeze_shared()
    return head, keras.losses.BinaryCrossentropy()


def _step_fn(model: keras.Model, loss_fn: keras.losses.Loss, x: tf.Tensor, y: tf.Tensor):
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(model(x, training=True), "float32"))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return step


def measure(kind: str, size: int, precision: str, steps: int, repeats: int) -> dict:
    """Images/s (wall; and per CPU-second) of one model with each variant of `VARIANTS`.

    Returns:
        `{variant: stat with "cpu_median", "speedup": auto / keras, "speedup_fused": fused / keras}`.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(size=(BATCH, size, size, 1)).astype("float32"))
        y = x if kind == "cdae" else tf.constant((rng.uniform(size=x.shape) > 0.5).astype("float32"))
        step_fns = {name: _step_fn(*_model(kind, size, fused), x, y) for name, fused in VARIANTS.items()}
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu_rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(repeats + 1):
        for name, step in step_fns.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss = step()
            float(loss)
            if round_:
                rates[name].append(steps * BATCH / (time.perf_counter() - start))
                cpu_rates[name].append(steps * BATCH / (time.process_time() - cpu_start))
    result: dict = {name: {**summarize(rates[name]), "cpu_median": summarize(cpu_rates[name])["median"]}
                    for name in VARIANTS}
    result["speedup"] = ratio(result["auto"]["median"], result["keras"]["median"])
    result["speedup_fused"] = ratio(result["fused"]["median"], result["keras"]["median"])
    logger.info("%s %dx%d %s: auto %.1f, fused %.1f, keras %.1f img/s (auto x%.2f)", kind, size, size,
                precision, result["auto"]["median"], result["fused"]["median"], result["keras"]["median"],
                result["speedup"])
    return result


def run(out_dir: str | os.PathLike, quick: bool = False) -> dict:
    """Measure both models at every size and precision and write `out_dir/batchnorm.json`.

    Args:
        out_dir: where to write the JSON record.
        quick: 64x64 only, 3 steps per round, 2 timed rounds (a smoke run); otherwise 128x128 and 256x256.

    Returns:
        `{"batch_size", "steps", "repeats", "results": {model: {size: {precision: measure(...)}}},
        "environment"}` (images/s).
    """
    sizes = (64,) if quick else (128, 256)
    repeats = 2 if quick else 5
    steps = {64: 3, 128: 8, 256: 3} if quick else {128: 8, 256: 3}
    record: dict = {"batch_size": BATCH, "steps": steps, "repeats": repeats, "results": {}}
    for name, kind in MODELS.items():
        for size in sizes:
            for precision in precisions():
                record["results"].setdefault(name, {}).setdefault(str(size), {})[precision] = measure(
                    kind, size, precision, steps[size], repeats)
    record["environment"] = environment()
    atomic_write_json(Path(out_dir) / "batchnorm.json", record)
    return record


def _table(record: dict) -> str:
    lines = ["model                             size  precision       auto img/s  fused img/s  keras img/s  "
             "auto/keras"]
    for name, sizes in record["results"].items():
        for size, entries in sizes.items():
            for precision, entry in entries.items():
                lines.append(f"{name:<33} {size:>4}  {precision:<15} {entry['auto']['median']:10.1f} "
                             f"{entry['fused']['median']:11.1f} {entry['keras']['median']:12.1f}  "
                             f"{entry['speedup']:10.2f}")
    return "\n".join(lines)


def main() -> None:
    standalone_main(__doc__.splitlines()[0], run, _table, "64x64 only, few steps")


if __name__ == "__main__":
    main()
