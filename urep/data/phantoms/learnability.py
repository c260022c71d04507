"""How hard are the phantom tasks? Train a small CNN on each and report held-out accuracy.

Each task's phantoms at 64x64, a patient split (70 % train, 30 % test), a small four-convolution CNN; the
summary is the test accuracy averaged over the last five epochs, with the best and final epochs beside it.
Run it with ``python -m urep.data.phantoms.learnability OUT_DIR``; results: docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms

#: task -> (generator, keyword arguments, manifest column holding the class)
TASKS = {
    "cxr_4class": ("cxr", {"n_patients": 500, "views_per_patient": 1, "seed": 1}, "label"),
    "cxr_tb": (
        "cxr",
        {"n_patients": 400, "views_per_patient": 1, "seed": 2, "labels": ("normal", "abnormal")},
        "label",
    ),
    "doppler_flow": ("doppler", {"n_patients": 80, "images_per_patient": 6, "seed": 1}, "flow"),
    "doppler_quality": ("doppler", {"n_patients": 80, "images_per_patient": 6, "seed": 1}, "quality"),
}


def _load(root: Path, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    manifest = manifest[manifest[column] != ""]
    images = np.stack([cv2.imread(str(root / "images" / f), cv2.IMREAD_GRAYSCALE) for f in manifest["file"]])
    classes = sorted(manifest[column].unique())
    labels = np.array([classes.index(v) for v in manifest[column]])
    return images.astype(np.float32)[..., None] / 255.0, labels, manifest["patient"].to_numpy(), classes


def small_cnn(size: int, n_classes: int):
    """The small CNN of the check: ``(batch, size, size, 1)`` -> ``(batch, n_classes)`` softmax."""
    import keras

    inputs = keras.Input((size, size, 1))
    x = inputs
    for i, filters in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPool2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def learnability(
    out_dir: str | os.PathLike,
    size: int = 64,
    epochs: int = 30,
    seed: int = 0,
    tasks: tuple[str, ...] = tuple(TASKS),
) -> dict:
    """Train the small CNN on each phantom task and write ``out_dir/learnability.json``.

    Args:
        out_dir: folder for the generated phantoms and the record.
        size: phantom size in pixels.
        epochs: training epochs per task.
        seed: seed of the split and of Keras.
        tasks: names from `TASKS`.

    Returns:
        Per task: classes, chance level, train/test counts, test accuracy per epoch, mean of the last five,
        best, final, training accuracy and seconds.
    """
    import keras

    from urep.io import atomic_write_json

    out = Path(out_dir)
    record = {}
    for name in tasks:
        kind, kwargs, column = TASKS[name]
        make = make_cxr_phantoms if kind == "cxr" else make_doppler_phantoms
        root = make(
            out / kind / str(kwargs["seed"]) / ("_".join(kwargs.get("labels", ())) or "all"),
            size=size,
            overwrite=True,
            **kwargs,
        )
        x, y, patients, classes = _load(root, column)
        unique = np.unique(patients)
        np.random.default_rng(seed).shuffle(unique)
        test = np.isin(patients, unique[: int(0.3 * len(unique))])
        keras.utils.set_random_seed(seed)
        model = small_cnn(size, len(classes))
        started = time.perf_counter()
        history = model.fit(
            x[~test], y[~test], batch_size=16, epochs=epochs, verbose=0, validation_data=(x[test], y[test])
        ).history
        accuracy = [round(float(a), 3) for a in history["val_accuracy"]]
        record[name] = {
            "classes": classes,
            "chance": round(float(np.bincount(y[test]).max() / test.sum()), 3),
            "n_train": int((~test).sum()),
            "n_test": int(test.sum()),
            "test_accuracy_by_epoch": accuracy,
            "last5_mean": round(float(np.mean(accuracy[-5:])), 3),
            "best": max(accuracy),
            "final": accuracy[-1],
            "train_accuracy": round(float(history["accuracy"][-1]), 3),
            "seconds": round(time.perf_counter() - started, 1),
        }
    atomic_write_json(
        out / "learnability.json", {"size": size, "epochs": epochs, "seed": seed, "tasks": record}
    )
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m urep.data.phantoms.learnability OUT_DIR [--size 64] [--epochs 30]``."""
    parser = argparse.ArgumentParser(description="Train a small CNN on each phantom task.")
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(learnability(args.out_dir, args.size, args.epochs, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
