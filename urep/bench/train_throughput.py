"""Train-step throughput (images/s) of urep's custom loops against plain `model.fit`, in one run.

`run(out_dir, quick)` times the CDAE under `model.fit` and `urep.training.train_model` (XLA on and off) and
the fine-tuning strategies on a two-head `MultiTaskModel`, the rows interleaved epoch by epoch and the first
(tracing) epoch left out; it returns the median/min/max images/s per wall-clock and per CPU second and
writes them to `OUT_DIR/train_throughput.json`.
Usage: `python -m urep.bench.train_throughput --out OUT_DIR [--quick]`.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from urep.bench.common import standalone_main  # noqa: E402
from urep.data.batches import ArrayBatches  # noqa: E402
from urep.env import environment  # noqa: E402
from urep.io import atomic_write_json  # noqa: E402
from urep.models import MultiTaskModel, cdae, truncate  # noqa: E402
from urep.training import Task, TrainConfig  # noqa: E402
from urep.training.features import head_on_features  # noqa: E402
from urep.training.loop import model_engine  # noqa: E402
from urep.training.run import ProgressBar  # noqa: E402
from urep.training.strategies import alternating_engine, joint_engine  # noqa: E402

logger = logging.getLogger("urep.bench.train_throughput")
BATCH = 16


def _summary(rates: list[float], cpu_rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": len(rates),
            "cpu_median": statistics.median(cpu_rates), "cpu_min": min(cpu_rates), "cpu_max": max(cpu_rates)}


def _data(size: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, size, size, 1)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype("float32")
    masks = (clean > 0.5).astype("float32")
    labels = np.eye(2, dtype="float32")[rng.integers(0, 2, n)]
    return noisy, clean, masks, labels


def _dataset(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).prefetch(tf.data.AUTOTUNE)


def _fit_epoch(model, dataset) -> Callable[[int], None]:
    return lambda epoch: model.fit(dataset, epochs=1, verbose=0)


def _engine_epoch(engine) -> Callable[[int], None]:
    bar = ProgressBar(None, "", enabled=False)
    return lambda epoch: engine.train_epoch(epoch, bar)


def _cdae(size: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return cdae(input_shape=(size, size, 1))


def _config(jit: bool = True) -> TrainConfig:
    return TrainConfig(epochs=1, optimizer="rmsprop", monitor="loss", jit_compile=jit, progress_bar=False,
                       early_stopping_patience=None, reduce_lr_factor=1.0, tensorboard=False)


def _compiled(model: keras.Model, loss: str, jit: bool) -> keras.Model:
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=loss, jit_compile=jit)
    return model


def _assembly(size: int, seed: int = 0) -> MultiTaskModel:
    source = _cdae(size, seed)
    assembly = MultiTaskModel(truncate(source, "encoder_out", name="encoder"), name="bench")
    assembly.add_segmentation_head("seg", autoencoder=source)
    assembly.add_classification_head("cls", n_classes=2, dense_units=64)
    return assembly


def _rows(size: int, steps: int, strategies: bool) -> dict[str, tuple[int, list[Callable[[int], None]]]]:
    """Row label -> (images per epoch, the functions that run one epoch of it)."""
    n = steps * BATCH
    noisy, clean, masks, labels = _data(size, n)
    pairs = _dataset(noisy, clean)
    rows = {
        "cdae/fit": (n, [_fit_epoch(_compiled(_cdae(size), "mse", False), pairs)]),
        "cdae/fit_xla": (n, [_fit_epoch(_compiled(_cdae(size), "mse", True), pairs)]),
        "cdae/loop": (n, [_engine_epoch(model_engine(_cdae(size), "mse", pairs, None, _config(True), name="cdae"))]),
        "cdae/loop_no_xla": (n, [_engine_epoch(model_engine(_cdae(size), "mse", pairs, None, _config(False),
                                                            name="cdae"))]),
    }
    if not strategies:
        return rows
    seg_data, cls_data = _dataset(noisy, masks), _dataset(noisy, labels)

    def tasks():
        return [Task("seg", "segmentation", None, "binary_crossentropy", seg_data, n_train=n),
                Task("cls", "classification", None, "categorical_crossentropy", cls_data, n_train=n)]

    frozen = _assembly(size)
    frozen.freeze_shared()  # stays frozen: the independent strategy's heads
    rows["strategies/independent"] = (2 * n, [
        _engine_epoch(model_engine(frozen.task_model(t.name), t.loss, t.train, None, _config(), name=t.name,
                                   strategy_name="independent")) for t in tasks()])
    on_features = _assembly(size)
    on_features.freeze_shared()
    rows["strategies/independent_features"] = (2 * n, [
        _engine_epoch(model_engine(split.head, t.loss, split.train, None, _config(), name=t.name,
                                   strategy_name="independent"))
        for t, split in ((t, head_on_features(on_features.task_model(t.name), ArrayBatches(x, y, BATCH)))
                         for t, (x, y) in zip(tasks(), ((noisy, masks), (noisy, labels)), strict=True))])
    rows["strategies/alternating"] = (2 * n, [_engine_epoch(alternating_engine(_assembly(size), tasks(), _config()))])
    rows["strategies/joint"] = (2 * n, [_engine_epoch(joint_engine(_assembly(size), tasks(), _config()))])
    fit_frozen = _assembly(size)
    fit_frozen.freeze_shared()
    rows["strategies/fit_xla_heads"] = (2 * n, [
        _fit_epoch(_compiled(fit_frozen.task_model("seg"), "binary_crossentropy", True), seg_data),
        _fit_epoch(_compiled(fit_frozen.task_model("cls"), "categorical_crossentropy", True), cls_data)])
    return rows


def measure(size: int, steps: int, repeats: int, strategies: bool = True) -> dict:
    """Images/s of every row at one size, the rows interleaved epoch by epoch.

    Round 0 (tracing, XLA compilation) is discarded; rounds 1..repeats are timed. Interleaving gives every
    row the same share of a busy machine's load.
    """
    rows = _rows(size, steps, strategies)
    rates: dict[str, list[float]] = {label: [] for label in rows}
    cpu_rates: dict[str, list[float]] = {label: [] for label in rows}
    for round_ in range(repeats + 1):
        for label, (images, epoch_fns) in rows.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for fn in epoch_fns:
                fn(round_)
            if round_ > 0:
                rates[label].append(images / (time.perf_counter() - start))
                cpu_rates[label].append(images / (time.process_time() - cpu_start))
        logger.info("%dx%d round %d/%d done", size, size, round_, repeats)
    result: dict = {}
    for label, values in rates.items():
        group, row = label.split("/")
        result.setdefault(group, {})[row] = _summary(values, cpu_rates[label])
        logger.info("%dx%d %s: %.1f img/s [%.1f, %.1f], %.1f img per CPU-s", size, size, label,
                    result[group][row]["median"], min(values), max(values), result[group][row]["cpu_median"])
    return result


def run(out_dir: str | os.PathLike, quick: bool = False) -> dict:
    """Measure every row at every size and write `out_dir/train_throughput.json`.

    Args:
        out_dir: where to write the JSON record.
        quick: 64x64 only, 3 steps per epoch, 2 timed epochs (a smoke run for CI).

    Returns:
        `{"batch_size", "steps_per_epoch", "repeats", "sizes": {size: {"cdae": {row: {"median", "min",
        "max", "repeats"}}, "strategies": {...}}}, "environment": {...}}` (images/s).
    """
    sizes = (64,) if quick else (64, 128, 256)
    repeats = 2 if quick else 3
    record = {"batch_size": BATCH, "repeats": repeats, "sizes": {}, "steps_per_epoch": {}}
    for size in sizes:
        steps = 3 if quick else {64: 8, 128: 4, 256: 2}[size]
        record["steps_per_epoch"][size] = steps
        record["sizes"][size] = measure(size, steps, repeats, strategies=size <= 128)
    record["environment"] = environment()
    atomic_write_json(Path(out_dir) / "train_throughput.json", record)
    return record


def _table(record: dict) -> str:
    lines = ["size  model       row            img/s (median [min, max])   img per CPU-s (median [min, max])"]
    for size, entry in record["sizes"].items():
        for group, rows in entry.items():
            for label, row in rows.items():
                lines.append(f"{size:>4}  {group:<10}  {label:<13}  {row['median']:7.1f} "
                             f"[{row['min']:.1f}, {row['max']:.1f}]      {row['cpu_median']:7.1f} "
                             f"[{row['cpu_min']:.1f}, {row['cpu_max']:.1f}]")
    return "\n".join(lines)


def main() -> None:
    standalone_main(__doc__.splitlines()[0], run, _table, "64x64 only, few steps")


if __name__ == "__main__":
    main()
