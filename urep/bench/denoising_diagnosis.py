"""Diagnose the CDAE denoiser on real chest X-rays, one change at a time (results: docs/denoising.md).

Trains one CDAE variant on the folder-adapter data sets under `--data-root` (default: `UREP_TEST_DATA`),
split by patient, and prints the PSNR/SSIM of the denoised and of the noisy test images at every evaluation
noise level as one JSON line. Example:
    python -m urep.bench.denoising_diagnosis --size 64 --epochs 20 --filters 32,64,64,128 --output direct
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

EVAL_NOISE = ("gaussian:0.01", "gaussian:0.03", "gaussian:0.05", "gaussian:0.07", "gaussian:0.1", "poisson:100")


def load(root: str, sets: list[str], size: int, seed: int):
    """Images of `sets` at `size`, and the train/val/test indices of a patient split."""
    import pandas as pd

    from urep.data import datasets
    from urep.experiments.sources import patient_split, read_arrays

    frames = []
    for name in sets:
        df = datasets.load("folder", os.path.join(root, name))
        frames.append(df.assign(patient=df["patient"].astype(str).map(lambda p, n=name: f"{n}/{p}")))
    df = pd.concat(frames, ignore_index=True)
    arrays = read_arrays(df, (size, size))
    return arrays.images, patient_split(arrays.patients, (0.7, 0.2, 0.1), seed)


def noisy_epoch(clean: np.ndarray, specs: list[str], rng: np.random.Generator) -> np.ndarray:
    """Each image corrupted by one of `specs`, drawn uniformly."""
    from urep.data.noise import add_noise

    choice = rng.integers(len(specs), size=len(clean))
    out = np.empty_like(clean)
    for i, spec in enumerate(specs):
        index = np.flatnonzero(choice == i)
        if index.size:
            out[index] = add_noise(clean[index], spec, rng)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("UREP_TEST_DATA"))
    parser.add_argument("--sets", default="jsrt,kermany_pediatric,shenzhen_large")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--filters", default="32,64,64,128")
    parser.add_argument("--output", default="direct", choices=["direct", "residual"])
    parser.add_argument("--skips", default=None, choices=["add", "concat"])
    parser.add_argument("--bn-momentum", type=float, default=None, help="BatchNorm momentum (default Keras' 0.99)")
    parser.add_argument("--activation", default=None, help="output activation (default: sigmoid / linear)")
    parser.add_argument("--normalize", default="mean", choices=["mean", "none"])
    parser.add_argument("--train-noise", default="gaussian:0.03")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    from urep.data.noise import add_noise
    from urep.metrics import reconstruction_metrics
    from urep.models import cdae

    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    images, (train, val, test) = load(args.data_root, args.sets.split(","), args.size, args.seed)
    clean_train, clean_val, clean_test = images[train], images[val], images[test]
    mean = float(clean_train.mean()) if args.normalize == "mean" else 0.0
    filters = tuple(int(f) for f in args.filters.split(","))
    kwargs = {"output": args.output, "skips": args.skips}
    if args.activation:
        kwargs["output_activation"] = args.activation
    model = cdae((args.size, args.size, 1), filters=filters, **kwargs)
    from urep.models import set_batchnorm_momentum

    set_batchnorm_momentum(model, args.bn_momentum)
    from urep.models import set_residual_skip

    set_residual_skip(model, 1.0, mean)
    model.compile(optimizer=keras.optimizers.RMSprop(args.lr), loss="mse")
    specs = args.train_noise.split(",")
    rng = np.random.default_rng(args.seed)
    val_noisy = noisy_epoch(clean_val, specs, np.random.default_rng(10_000)) - mean
    callbacks = [keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(2, args.patience // 3)),
                 keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True)]
    history = {"loss": [], "val_loss": []}
    # one fit call over a generator of fresh noise per epoch keeps the callbacks' state across epochs
    steps = int(np.ceil(len(clean_train) / 16))

    def batches():
        while True:
            noisy = noisy_epoch(clean_train, specs, rng) - mean
            order = rng.permutation(len(clean_train))
            for s in range(steps):
                index = order[s * 16:(s + 1) * 16]
                yield noisy[index], clean_train[index]

    fit = model.fit(batches(), steps_per_epoch=steps, epochs=args.epochs, validation_data=(val_noisy, clean_val),
                    callbacks=callbacks, verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items() if k in ("loss", "val_loss")}
    rows = []
    for i, spec in enumerate(EVAL_NOISE):
        noisy = add_noise(clean_test, spec, np.random.default_rng([args.seed, 77, i]))
        denoised = np.clip(model.predict(noisy - mean, batch_size=32, verbose=0), 0.0, 1.0)
        after, before = reconstruction_metrics(clean_test, denoised), reconstruction_metrics(clean_test, noisy)
        rows.append({"noise": spec, "psnr": round(after["psnr"], 2), "ssim": round(after["ssim"], 3),
                     "noisy_psnr": round(before["psnr"], 2), "noisy_ssim": round(before["ssim"], 3)})
    result = {"args": vars(args) | {"data_root": None}, "n": {"train": len(train), "val": len(val), "test": len(test)},
              "epochs_run": len(history["loss"]), "final_loss": history["loss"][-1],
              "best_val_loss": min(history["val_loss"]), "seconds": round(time.perf_counter() - started, 1),
              "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
