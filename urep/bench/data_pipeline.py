"""Benchmark: can the data pipeline keep a CDAE training step fed?

`run(out_dir, quick, sizes)` measures the images/s of decoding (PNG and DICOM, first pass and cached), of the
streaming and in-memory `tf.data` routes and of a CDAE training step at the same sizes, each the median, min
and max of several runs, and the time the training loops lose at each epoch's end freeing the epoch's
iterator with tf.data autotuning on and off, and the time from asking for an epoch's dataset to its first
batch; it returns and writes them to `OUT_DIR/data_pipeline.json`.
Usage: ``python -m urep.bench.data_pipeline OUT_DIR [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SHARED_DATA = Path(os.environ.get("UREP_TEST_DATA", "/nonexistent"))  # real subsets, when set
SHARED_CXR_FOLDERS = ("shenzhen", "montgomery", "jsrt", "kermany_pediatric")
BATCH = 16


def _rate(fn: Callable[[], int], repeats: int) -> dict:
    """Run `fn` (which returns how many images it processed) `repeats` times; images/s median, min, max."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - started))
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "n_images": count,
        "repeats": repeats,
    }


def _phantom_table(work: Path, n: int) -> pd.DataFrame:
    from urep.data import datasets
    from urep.data.phantoms import make_cxr_phantoms

    root = make_cxr_phantoms(work / "phantoms", n_patients=n, views_per_patient=1, size=256, seed=0)
    return datasets.folder(root)


def _shared_table(n: int) -> pd.DataFrame | None:
    if not SHARED_DATA.is_dir():
        logger.info("skipping the real subsets: UREP_TEST_DATA not set or not a folder (%s)", SHARED_DATA)
        return None
    from urep.data import datasets

    tables = [
        datasets.folder(SHARED_DATA / name, check_files=False)
        for name in SHARED_CXR_FOLDERS
        if (SHARED_DATA / name / "manifest.csv").is_file()
    ]
    return pd.concat(tables, ignore_index=True).iloc[:n] if tables else None


def _dicom_table(work: Path, n: int) -> pd.DataFrame | None:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        logger.info("skipping DICOM: pydicom-data is not installed")
        return None
    source = get_testdata_file("RG1_UNCR.dcm")
    if source is None:
        logger.info("skipping DICOM: RG1_UNCR.dcm not found in pydicom-data")
        return None
    folder = work / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"rg1_{i:04d}.dcm"
        shutil.copyfile(source, path)
        paths.append(str(path))
    return pd.DataFrame(
        {"image": paths, "mask": "", "label": "normal", "patient": [f"p{i}" for i in range(n)]}
    )


def _decode_rates(name: str, table: pd.DataFrame, size: int, work: Path, repeats: int) -> dict:
    from urep.data import MeanNormalizer
    from urep.data.pipeline import file_dataset, load_arrays

    normalizer = MeanNormalizer().fit(np.random.default_rng(0).random((2, 8, 8), dtype=np.float32))
    cache = work / f"cache-{name}-{size}"

    def first() -> int:
        arrays = load_arrays(table, size, label_column=None)
        normalizer.transform(arrays.images)
        return len(arrays)

    def cached() -> int:
        arrays = load_arrays(table, size, label_column=None, cache_dir=cache)
        if not arrays.cache_hit:
            raise RuntimeError("expected a cache hit")
        normalizer.transform(arrays.images)
        return len(arrays)

    load_arrays(table, size, label_column=None, cache_dir=cache)  # fill the cache
    result = {"first_pass": _rate(first, repeats), "cached": _rate(cached, repeats)}

    def stream(cache_file: Path) -> Callable[[], int]:
        def run() -> int:
            ds = file_dataset(
                table,
                size,
                target="none",
                batch_size=BATCH,
                shuffle=False,
                normalizer=normalizer,
                cache_file=cache_file,
            )
            return sum(int(batch.shape[0]) for batch in ds)

        return run

    firsts = []
    for r in range(repeats):
        firsts.append(_rate(stream(work / f"tfcache-{name}-{size}-{r}" / "c"), 1)["median"])
    result["stream_first_epoch"] = {
        "median": statistics.median(firsts),
        "min": min(firsts),
        "max": max(firsts),
        "n_images": len(table),
        "repeats": repeats,
    }
    result["stream_cached_epoch"] = _rate(stream(work / f"tfcache-{name}-{size}-0" / "c"), repeats)
    return result


def _tfdata_rate(size: int, n: int, repeats: int) -> dict:
    """Cached arrays -> make_dataset denoising pairs (noise + normalization), consumed as training would."""
    from urep.data import MeanNormalizer
    from urep.data.noise import NoiseSpec
    from urep.data.pipeline import make_dataset

    images = np.random.default_rng(0).random((n, size, size, 1), dtype=np.float32)
    normalizer = MeanNormalizer().fit(images[:8])
    ds = make_dataset(
        images,
        batch_size=BATCH,
        noise=NoiseSpec("gaussian", 0.05),
        normalizer=normalizer,
        repeat=True,
        drop_remainder=True,
    )
    iterator = iter(ds)
    for _ in range(3):
        next(iterator)
    steps = max(n // BATCH, 8)

    def run() -> int:
        for _ in range(steps):
            noisy, _clean = next(iterator)
        noisy.numpy()
        return steps * BATCH

    return _rate(run, repeats)


def _cdae_rate(size: int, repeats: int, steps: int) -> dict:
    import keras
    import tensorflow as tf

    from urep.models.cdae import cdae

    model = cdae((size, size, 1))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    clean = tf.constant(rng.random((BATCH, size, size, 1), dtype=np.float32))
    noisy = tf.clip_by_value(clean + tf.random.normal(clean.shape, stddev=0.05), 0.0, 1.0)
    for _ in range(2):
        model.train_on_batch(noisy, clean)

    def run() -> int:
        for _ in range(steps):
            model.train_on_batch(noisy, clean)
        return steps * BATCH

    result = _rate(run, repeats)
    result["parameters"] = int(model.count_params())
    return result


def _epoch_end_wait(autotune: bool, epochs: int, epoch_seconds: float, size: int = 128, n: int = 312) -> dict:
    """Seconds the loop waits, CPU idle, when it frees a finished epoch's iterator.

    Every epoch iterates a new augmented pipeline (`AugmentedBatches` through `epoch_dataset`, as the training
    loops do) at a pace that makes it last about `epoch_seconds` (a sleep per batch stands in for the training
    step); the wait is the time `del iterator` takes. With tf.data autotuning on, TensorFlow 2.21 frees the
    iterator only when its autotuning thread next wakes, so the wait depends on where in that thread's period
    the epoch ends: some epochs wait seconds, some none.
    """
    from urep.data.batches import AugmentedBatches
    from urep.training.loop import epoch_dataset

    rng = np.random.default_rng(0)
    images = rng.random((n, size, size, 1), dtype=np.float32)
    source = AugmentedBatches(images, (images > 0.5).astype("float32"), 8, seed=0, masks=True,
                              options={"rotation": 5, "zoom": 0.2, "horizontal_flip": True})
    pause = epoch_seconds / -(-n // 8)
    waits = []
    for epoch in range(epochs):
        iterator = iter(epoch_dataset(source, epoch, autotune=autotune))
        for _ in iterator:
            time.sleep(pause)
        started = time.perf_counter()
        del iterator
        waits.append(time.perf_counter() - started)
    return {"median": statistics.median(waits), "min": min(waits), "max": max(waits),
            "mean": statistics.fmean(waits), "epochs": epochs, "epoch_seconds": epoch_seconds}


def _epoch_start_ms(epochs: int, size: int = 128, n_train: int = 310, n_val: int = 156) -> dict:
    """Milliseconds from asking for an epoch's dataset to holding its first batch, as the training loops do.

    The loops build a new dataset every epoch (`epoch_dataset`, tf.data autotuning off) from in-memory
    sources: augmented training pairs (`AugmentedBatches`, with the finite-input check `finite_checked`) and
    validation pairs (`ArrayBatches`). The defaults are a 3-fold 128x128 segmentation head's sizes on the 466
    Shenzhen images; each epoch is drained untimed after its first batch. The first epoch (which traces the
    augmentation) is reported alone; the statistics cover the later epochs.
    """
    from urep.bench.common import summarize
    from urep.data.batches import ArrayBatches, AugmentedBatches
    from urep.training.loop import epoch_dataset, finite_checked

    rng = np.random.default_rng(0)
    images = rng.random((n_train, size, size, 1), dtype=np.float32)
    masks = (rng.random((n_train, size, size, 1)) > 0.5).astype(np.float32)
    sources = {
        "augmented_training_pairs": AugmentedBatches(
            images, masks, 8, seed=0, masks=True, mean=0.5, scale=0.25,
            options={"rotation": 5, "zoom": 0.2, "horizontal_flip": True, "brightness": 0.1, "contrast": 0.1,
                     "gamma": 0.1}),
        "validation_pairs": ArrayBatches(images[:n_val], masks[:n_val], 8),
    }
    result: dict = {"size": size, "n_train": n_train, "n_val": n_val, "epochs": epochs}
    for name, source in sources.items():
        times = []
        for epoch in range(epochs):
            started = time.perf_counter()
            dataset = epoch_dataset(source, epoch)
            iterator = iter(finite_checked(dataset) if name.startswith("augmented") else dataset)
            next(iterator)
            times.append(1e3 * (time.perf_counter() - started))
            for _ in iterator:
                pass
        result[name] = {"first_epoch": times[0], **summarize(times[1:])}
    return result


def run(out_dir: str | os.PathLike, quick: bool = False, sizes: tuple[int, ...] | None = None) -> dict:
    """Run the benchmark and write ``out_dir/data_pipeline.json``.

    Args:
        out_dir: output folder.
        quick: sizes 64 and 128 with fewer images and repeats (minutes on 2 cores); otherwise 64, 128, 256.
        sizes: image sizes to measure instead of the defaults (e.g. ``(256,)``).

    Returns:
        The results: per size, images/s of each route and of the CDAE step, and the ratio of the cached
        `tf.data` pipeline to the CDAE step (which must be at least 10).
    """
    import tensorflow as tf

    from urep.env import environment
    from urep.io import atomic_write_json

    sizes = tuple(sizes) if sizes else ((64, 128) if quick else (64, 128, 256))
    repeats = 3 if quick else 5
    n_png, n_dicom = (64, 12) if quick else (256, 32)
    steps_at = {64: 10, 128: 5, 256: 3} if quick else {64: 20, 128: 10, 256: 5}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    results: dict = {
        "settings": {
            "sizes": sizes,
            "repeats": repeats,
            "batch": BATCH,
            "n_png": n_png,
            "n_dicom": n_dicom,
            "quick": quick,
            "threads": {
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            },
        },
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="urep-bench-") as tmp:
        work = Path(tmp)
        sources = {
            "phantoms_png": _phantom_table(work, n_png),
            "shared_data_png": _shared_table(n_png),
            "dicom_rg1_uncr": _dicom_table(work, n_dicom),
        }
        for name, table in sources.items():
            if table is None:
                results.setdefault("skipped", []).append(name)
        for size in sizes:
            entry: dict = {}
            for name, table in sources.items():
                if table is not None:
                    logger.info("decode %s at %d", name, size)
                    entry[name] = _decode_rates(name, table, size, work, repeats)
            logger.info("tf.data cached pipeline at %d", size)
            entry["tfdata_cached_denoising_pairs"] = _tfdata_rate(size, n_png, repeats)
            logger.info("CDAE training step at %d", size)
            entry["cdae_train_step"] = _cdae_rate(size, repeats, steps_at.get(size, 3))
            entry["ratio_cached_pipeline_to_cdae"] = (
                entry["tfdata_cached_denoising_pairs"]["median"] / entry["cdae_train_step"]["median"]
            )
            results["sizes"][str(size)] = entry
    epochs = 3 if quick else 6
    logger.info("epoch-end wait, tf.data autotuning on and off (%d epochs of 6 s each)", epochs)
    results["epoch_end_wait_s"] = {f"autotune_{'on' if on else 'off'}": _epoch_end_wait(on, epochs, 6.0)
                                   for on in (True, False)}
    logger.info("time to an epoch's first batch (%d epochs)", epochs + 1)
    results["epoch_start_ms"] = _epoch_start_ms(epochs + 1)
    results["load_average"] = {"start": load_start, "end": os.getloadavg()}
    results["environment"] = environment()
    atomic_write_json(out / "data_pipeline.json", results)
    return results


def _table(results: dict) -> str:
    lines = ["size  route                                   median img/s   (min - max)"]
    for size, entry in results["sizes"].items():
        for name, value in entry.items():
            if not isinstance(value, dict):
                continue
            rows = value.items() if "median" not in value else [("", value)]
            for sub, stats in rows:
                label = f"{name} {sub}".strip()
                lines.append(
                    f"{size:>4}  {label:<40} {stats['median']:>10.1f}   "
                    f"({stats['min']:.1f} - {stats['max']:.1f})"
                )
        lines.append(f"{size:>4}  cached pipeline / CDAE step: {entry['ratio_cached_pipeline_to_cdae']:.1f}x")
    for setting, wait in results.get("epoch_end_wait_s", {}).items():
        lines.append(f"wait freeing an epoch's iterator, {setting}: mean {wait['mean']:.2f} s, max {wait['max']:.2f} s "
                     f"({wait['epochs']} epochs of {wait['epoch_seconds']:.0f} s)")
    start = results.get("epoch_start_ms")
    if start:
        for name in ("augmented_training_pairs", "validation_pairs"):
            lines.append(f"time to an epoch's first batch, {name.replace('_', ' ')} ({start['n_train']} / "
                         f"{start['n_val']} at {start['size']}x{start['size']}): median {start[name]['median']:.0f} "
                         f"ms ({start[name]['min']:.0f} - {start[name]['max']:.0f}), first epoch "
                         f"{start[name]['first_epoch']:.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--quick", action="store_true", help="sizes 64 and 128, fewer images and repeats")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: 64 128 [256])")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(_table(run(args.out_dir, quick=args.quick, sizes=args.sizes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
