"""From a dataset table to arrays and batched `tf.data` pipelines, for every task (image, mask, label, noise).

Two routes, one contract (batches of ``(x, y)``, x ``(batch, H, W, C)`` float32): in memory (`load_arrays` ->
`ArraySet`, cached on disk, then `make_dataset`) and streaming (`file_dataset`). Both end in per-element
augmentation and noise with stateless seeds (reproducible, new each epoch), batching, normalization with a
fitted `MeanNormalizer`, and prefetch. Denoising pairs are ``(normalize(noisy), clean)``; labels are sparse
unless ``num_classes`` is given. Details: docs/design.md ("Module notes") and docs/choices.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urep.data.errors import DatasetError
from urep.data.noise import NoiseSpec, parse_noise, tf_add_noise
from urep.data.readers import read_image, read_mask, split_mask_parts

logger = logging.getLogger(__name__)

#: Version of the cache layout and preprocessing; bump it when either changes to invalidate old caches.
CACHE_VERSION = 1

Augment = Callable[[Any, Any, Any], tuple[Any, Any]]
"""``augment(x, y, seed) -> (x, y)``; ``y`` may be ``None`` and must then be returned as ``None``; ``seed`` is
an int tensor of shape ``(2,)`` for TensorFlow's stateless random ops."""


@dataclass
class ArraySet:
    """Preprocessed images (and masks and labels) of one table, in memory.

    Attributes:
        images: ``(N, H, W, C)`` float32 in [0, 1] (not normalized).
        masks: ``(N, H, W, 1)`` uint8 in {0, 1}, or ``None`` when masks were not asked for.
        labels: ``(N,)`` int64 class indices into `classes`, or ``None`` when the table has no labels.
        ids: the N image paths, in row order.
        classes: class names; ``labels[i]`` is ``classes.index(label of row i)``. Empty without labels.
        cache_hit: whether the arrays came from the on-disk cache.
    """

    images: np.ndarray
    masks: np.ndarray | None
    labels: np.ndarray | None
    ids: list[str]
    classes: list[str] = field(default_factory=list)
    cache_hit: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArraySet:
        """The rows at `indices` (e.g. one split), as a new `ArraySet` sharing `classes`."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArraySet(
            images=self.images[idx],
            masks=None if self.masks is None else self.masks[idx],
            labels=None if self.labels is None else self.labels[idx],
            ids=[self.ids[i] for i in idx],
            classes=list(self.classes),
            cache_hit=self.cache_hit,
        )


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool) and image_size > 0:
        return int(image_size), int(image_size)
    if (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return channels


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"table lacks column(s) {missing}; it has {list(df.columns)}")


def _mask_values(df: pd.DataFrame) -> list[str]:
    _require_columns(df, ["mask"])
    values = df["mask"].tolist()
    missing = [str(img) for img, m in zip(df["image"], values, strict=True) if _is_missing(m)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"with_masks=True but {len(missing)} image(s) have no mask: {shown}; filter the table first "
            "(e.g. df[df['mask'] != ''])"
        )
    return [str(m) for m in values]


def resolve_labels(
    df: pd.DataFrame, label_column: str | None = "label", label_map: Mapping[str, int] | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """Integer class indices of a table's labels.

    Args:
        df: the table.
        label_column: the column holding the labels (e.g. ``"label"``, ``"flow"``, ``"quality"``); ``None``
            or a column that is absent gives no labels.
        label_map: label -> index; by default the sorted distinct labels are numbered from 0.

    Returns:
        ``(labels, classes)``: ``(N,)`` int64 or ``None``, and the class names in index order.

    Raises:
        DatasetError: some rows have no label, or labels are missing from `label_map` (all are listed).
    """
    if label_column is None or label_column not in df.columns:
        if label_map is not None:
            raise DatasetError(f"label_map given but the table has no {label_column!r} column")
        return None, []
    values = df[label_column].tolist()
    empty = [str(img) for img, v in zip(df["image"], values, strict=True) if _is_missing(v)]
    if empty:
        raise DatasetError(
            f"{len(empty)} row(s) have no {label_column!r} label (first: {empty[:3]}); filter them out first"
        )
    values = [str(v) for v in values]
    if label_map is None:
        classes = sorted(set(values))
        label_map = {name: i for i, name in enumerate(classes)}
    else:
        label_map = {str(k): int(v) for k, v in label_map.items()}
        unknown = sorted(set(values) - set(label_map))
        if unknown:
            raise DatasetError(
                f"labels {unknown} in column {label_column!r} are not in label_map {label_map}"
            )
        classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    return np.array([label_map[v] for v in values], dtype=np.int64), classes


def _file_signature(path: str) -> list:
    try:
        stat = os.stat(path)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def cache_key(images: Sequence[str], masks: Sequence[str] | None, image_size: tuple[int, int]) -> str:
    """Hex digest identifying a preprocessed set: file paths, sizes and mtimes, and the settings.

    Args:
        images: image paths in row order.
        masks: mask values in row order (``"a.png;b.png"`` for a union), or ``None`` without masks.
        image_size: ``(height, width)``.

    Returns:
        A 40-character hex string; any change to a file, the order, the size or the mask choice changes it.
    """
    record = {
        "version": CACHE_VERSION,
        "image_size": list(image_size),
        "reader": "urep.data.read_image/bicubic+clip; read_mask/nearest",
        "images": [_file_signature(p) for p in images],
        "masks": None
        if masks is None
        else [[_file_signature(str(p)) for p in split_mask_parts(m)] for m in masks],
    }
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def _decode_all(
    images: Sequence[str], masks: Sequence[str] | None, size: tuple[int, int], num_workers: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    workers = num_workers or min(8, (os.cpu_count() or 1) + 2)
    image_out = np.empty((len(images), *size), dtype=np.float32)
    mask_out = None if masks is None else np.empty((len(images), *size), dtype=np.uint8)

    def one(i: int) -> None:
        image_out[i] = read_image(images[i], size=size)
        if masks is not None:
            mask_out[i] = read_mask(masks[i], size=size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(images))))
    return image_out, mask_out


def _load_cache(folder: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    if not (folder / "images.npy").is_file():
        return None
    images = np.load(folder / "images.npy")
    masks = np.load(folder / "masks.npy") if (folder / "masks.npy").is_file() else None
    return images, masks


def _save_cache(folder: Path, images: np.ndarray, masks: np.ndarray | None, meta: dict) -> None:
    """Write the arrays into a temporary sibling folder, then rename it into place (atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(tmp / "images.npy", images)
        if masks is not None:
            np.save(tmp / "masks.npy", masks)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "images.npy").is_file():
            raise
        logger.info("cache %s was written by another process meanwhile; keeping that one", folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_arrays(
    df: pd.DataFrame,
    image_size: int | Sequence[int],
    channels: int = 1,
    label_map: Mapping[str, int] | None = None,
    with_masks: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    label_column: str | None = "label",
) -> ArraySet:
    """Decode, resize and stack a table's images (and masks and labels), with an on-disk cache.

    Args:
        df: a table from `urep.data.datasets` (columns ``image``, and ``mask``/``label`` as needed).
        image_size: int (square) or ``(height, width)``; images are resized with OpenCV bicubic, masks with
            nearest neighbour (`urep.data.read_image` / `read_mask`).
        channels: 1, or 3 to replicate the gray channel (for 3-channel backbones).
        label_map: label -> class index; default: sorted distinct labels numbered from 0.
        with_masks: also load the ``mask`` column (several files joined by ``;`` are united).
        cache_dir: folder for the cache (one sub-folder per key, see `cache_key`); ``None`` disables it.
        num_workers: decoding threads (default ``min(8, cpu_count + 2)``).
        label_column: column holding the labels; ``None`` or absent: no labels.

    Returns:
        An `ArraySet`.

    Raises:
        DatasetError: missing columns, missing masks, missing or unknown labels, unreadable files.
        ImageReadError: a file cannot be decoded (the message names it).
        ValueError: bad `image_size` or `channels`.
    """
    size = _hw(image_size)
    _check_channels(channels)
    _require_columns(df, ["image"])
    if len(df) == 0:
        raise DatasetError("the table is empty; there is nothing to load")
    images = [str(p) for p in df["image"].tolist()]
    masks = _mask_values(df) if with_masks else None
    labels, classes = resolve_labels(df, label_column, label_map)

    started = time.perf_counter()
    cached = None
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"arrays-{size[0]}x{size[1]}-{cache_key(images, masks, size)}"
        cached = _load_cache(folder)
    if cached is not None:
        gray, mask_array = cached
        logger.info(
            "loaded %d images from cache %s in %.2f s", len(images), folder, time.perf_counter() - started
        )
    else:
        gray, mask_array = _decode_all(images, masks, size, num_workers)
        logger.info("decoded %d images at %dx%d in %.2f s", len(images), *size, time.perf_counter() - started)
        if folder is not None:
            _save_cache(
                folder,
                gray,
                mask_array,
                {"n": len(images), "image_size": list(size), "with_masks": with_masks, "first": images[0]},
            )
    x = gray[..., None]
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return ArraySet(
        images=x,
        masks=None if mask_array is None else mask_array[..., None],
        labels=labels,
        ids=images,
        classes=classes,
        cache_hit=cached is not None,
    )


def image_only(fn: Callable[[Any, Any], Any]) -> Augment:
    """Adapt an image-only augmentation ``fn(image, seed) -> image`` (e.g. `urep.data.augment.weak_augment`)
    to the ``augment(x, y, seed)`` hook: ``y`` (a label) passes through unchanged.

    Do not use it for segmentation, where the mask must follow the image.
    """

    def augment(x, y, seed):
        return fn(x, seed), y

    return augment


def _noise_specs(noise: Any) -> list[NoiseSpec]:
    """`None`, one spec (a `NoiseSpec` or ``"gaussian:0.03"``), or a sequence of them -> a list of specs."""
    if noise is None:
        return []
    if isinstance(noise, (str, NoiseSpec)):
        return [parse_noise(noise)]
    specs = [parse_noise(spec) for spec in noise]
    if not specs:
        raise ValueError("noise must be a NoiseSpec, a 'kind:level' string or a non-empty sequence of them")
    return specs


def _finish(
    ds,
    has_y: bool,
    batch_size: int,
    seed: int,
    augment: Augment | None,
    augment_on: str,
    noise: Any,
    normalizer: Any,
    drop_remainder: bool,
    num_parallel_calls: int | None,
):
    """The shared tail: element augmentation and noise, batching, batch augmentation, normalization, prefetch."""
    import tensorflow as tf

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    specs = _noise_specs(noise)
    add_noise = tf.autograph.experimental.do_not_convert(tf_add_noise)
    element_augment = augment if augment_on == "element" else None

    if element_augment is not None or specs:

        def per_element(index, element):
            x, y = element if has_y else (element, None)
            base = tf.random.experimental.stateless_fold_in(tf.constant([seed, 7919], tf.int64), index)
            aug_seed, noise_seed, pick_seed = tf.unstack(tf.random.experimental.stateless_split(base, 3))
            if element_augment is not None:
                x, y = element_augment(x, y, aug_seed)
            if not specs:
                return (x, y) if has_y else x
            if len(specs) == 1:
                noisy = add_noise(x, specs[0], noise_seed)
            else:
                pick = tf.random.stateless_uniform([], pick_seed, 0, len(specs), dtype=tf.int32)
                noisy = tf.switch_case(pick, [lambda s=s: add_noise(x, s, noise_seed) for s in specs])
                noisy = tf.ensure_shape(noisy, x.shape)
            return noisy, x

        ds = ds.enumerate().map(per_element, num_parallel_calls=parallel, deterministic=True)
        has_y = has_y or bool(specs)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=parallel, deterministic=True)
    if augment is not None and augment_on == "batch":

        def per_batch(index, element):
            x, y = element if has_y else (element, None)
            batch_seed = tf.random.experimental.stateless_fold_in(
                tf.constant([seed, 104729], tf.int64), index
            )
            x, y = augment(x, y, batch_seed)
            return (x, y) if has_y else x

        ds = ds.enumerate().map(per_batch, num_parallel_calls=parallel, deterministic=True)
    if normalizer is not None:
        ds = ds.map(
            (lambda x, y: (normalizer.transform(x), y)) if has_y else normalizer.transform,
            num_parallel_calls=parallel,
            deterministic=True,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_common(batch_size: int, augment_on: str, noise: Any, has_y: bool) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if augment_on not in ("element", "batch"):
        raise ValueError(f"augment_on must be 'element' or 'batch', got {augment_on!r}")
    if noise is not None and has_y:
        raise ValueError(
            "noise makes (noisy, clean) pairs, so y must be None (the clean image is the target)"
        )


def _prepare_targets(y: Any, num_classes: int | None) -> Any:
    if y is None:
        return None
    if isinstance(y, np.ndarray) and y.ndim == 4 and y.dtype == np.uint8:
        return y.astype(np.float32)
    if num_classes is not None:
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"num_classes needs (N,) integer labels, got shape {y.shape} dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
        return np.eye(num_classes, dtype=np.float32)[y]
    return y


def make_dataset(
    x: np.ndarray,
    y: Any = None,
    batch_size: int = 16,
    shuffle: bool = True,
    seed: int = 0,
    augment: Augment | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    noise: Any = None,
    normalizer: Any = None,
    augment_on: str = "element",
    num_classes: int | None = None,
    num_parallel_calls: int | None = None,
):
    """A batched `tf.data.Dataset` of ``(x, y)`` (or ``x``) from arrays.

    Args:
        x: ``(N, H, W, C)`` float32 images in [0, 1].
        y: targets: ``(N,)`` int labels, ``(N, H, W, 1)`` masks (uint8 masks become float32), any nest of
            ``(N, ...)`` arrays, or ``None``.
        batch_size: elements per batch.
        shuffle: shuffle the order (of indices; cheap at any size) with `seed`, anew each epoch.
        seed: seed of the shuffling, augmentation and noise; the same seed gives the same stream.
        augment: ``augment(x, y, seed) -> (x, y)`` (see `Augment`; `image_only` adapts image-only
            functions), applied per element or per batch (`augment_on`) before noise and normalization.
        repeat: repeat forever (epochs differ in order, augmentation and noise).
        drop_remainder: drop the last incomplete batch.
        noise: a `urep.data.noise.NoiseSpec` or ``"kind:level"`` string (or a sequence of them, one drawn
            uniformly per element) to make denoising pairs
            ``(noisy, clean)`` with `urep.data.noise.tf_add_noise`; `y` must then be ``None``.
        normalizer: a fitted `MeanNormalizer` applied to the network input only.
        augment_on: ``"element"`` or ``"batch"``.
        num_classes: one-hot encode integer labels `y` with this many classes.
        num_parallel_calls: parallelism of the map stages (default AUTOTUNE).

    Returns:
        A `tf.data.Dataset` of batches ``(x, y)``, ``(noisy, clean)`` with `noise`, or ``x`` alone.

    Raises:
        ValueError: bad arguments, `x` not rank 4, or `y` with a different length.
    """
    import tensorflow as tf

    has_y = y is not None
    _check_common(batch_size, augment_on, noise, has_y)
    _noise_specs(noise)
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    n = len(x)
    y = _prepare_targets(y, num_classes)
    for leaf in tf.nest.flatten(y) if has_y else []:
        if len(leaf) != n:
            raise ValueError(f"y has {len(leaf)} rows but x has {n}")
    x_t = tf.convert_to_tensor(x, dtype=tf.float32)
    y_t = tf.nest.map_structure(tf.convert_to_tensor, y) if has_y else None

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def gather(i):
        if not has_y:
            return tf.gather(x_t, i)
        return tf.gather(x_t, i), tf.nest.map_structure(lambda t: tf.gather(t, i), y_t)

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(
        ds,
        has_y,
        batch_size,
        seed,
        augment,
        augment_on,
        noise,
        normalizer,
        drop_remainder,
        num_parallel_calls,
    )


def file_dataset(
    df: pd.DataFrame,
    image_size: int | Sequence[int],
    channels: int = 1,
    label_map: Mapping[str, int] | None = None,
    target: str = "label",
    label_column: str = "label",
    batch_size: int = 16,
    shuffle: bool = True,
    seed: int = 0,
    augment: Augment | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    noise: Any = None,
    normalizer: Any = None,
    augment_on: str = "element",
    num_classes: int | None = None,
    cache_file: str | os.PathLike | None = None,
    shuffle_buffer: int = 1024,
    num_parallel_calls: int | None = None,
):
    """A streaming `tf.data.Dataset` that reads the files as it goes, for data that does not fit in memory.

    Files are decoded with `urep.data.read_image` / `read_mask` through `tf.numpy_function` in parallel, then
    optionally cached (`cache_file`: a path prefix for `tf.data.Dataset.cache`, or ``""`` for memory), then
    shuffled with a buffer of `shuffle_buffer` decoded images. The file order is shuffled once by `seed`
    before decoding, so the buffer mixes the whole table even on the first pass.

    Args:
        df: table with ``image`` (and ``mask`` / `label_column` as `target` needs).
        image_size: int or ``(height, width)``.
        channels: 1 or 3 (gray replicated).
        label_map: label -> index (default: sorted distinct labels).
        target: ``"label"`` (class index, or one-hot with `num_classes`), ``"mask"`` (``(H, W, 1)``
            float32 {0, 1}) or ``"none"`` (images only; use with `noise` for denoising pairs).
        label_column: column holding the labels when ``target="label"``.
        batch_size, shuffle, seed, augment, repeat, drop_remainder, noise, normalizer, augment_on,
            num_classes, num_parallel_calls: as in `make_dataset`.
        cache_file: `tf.data` cache location; ``None`` decodes the files every epoch. TensorFlow refuses an
            unfinished cache of another iterator: delete its ``.lockfile`` after a crash.
        shuffle_buffer: decoded images held for shuffling.

    Returns:
        A `tf.data.Dataset` of batches as in `make_dataset`.

    Raises:
        DatasetError: missing columns, masks or labels.
        ValueError: bad arguments.
    """
    import tensorflow as tf

    size = _hw(image_size)
    _check_channels(channels)
    if target not in ("label", "mask", "none"):
        raise ValueError(f"target must be 'label', 'mask' or 'none', got {target!r}")
    has_y = target != "none"
    _check_common(batch_size, augment_on, noise, has_y)
    _noise_specs(noise)
    _require_columns(df, ["image"])
    if len(df) == 0:
        raise DatasetError("the table is empty; there is nothing to load")
    paths = [str(p) for p in df["image"].tolist()]
    columns: dict[str, Any] = {"image": paths}
    if target == "mask":
        columns["mask"] = _mask_values(df)
    elif target == "label":
        labels, _ = resolve_labels(df, label_column, label_map)
        if labels is None:
            raise DatasetError(f"target='label' but the table has no {label_column!r} column")
        columns["label"] = labels
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(paths))
        columns = {k: [v[i] for i in order] if isinstance(v, list) else v[order] for k, v in columns.items()}
    height, width = size

    def decode_image(path):
        return read_image(path.decode("utf-8"), size=size)[..., None]

    def decode_mask(value):
        return read_mask(value.decode("utf-8"), size=size)[..., None].astype(np.float32)

    def load(element):
        image = tf.numpy_function(decode_image, [element["image"]], tf.float32, stateful=False)
        image = tf.ensure_shape(image, (height, width, 1))
        if channels == 3:
            image = tf.repeat(image, 3, axis=-1)
        if target == "mask":
            mask = tf.numpy_function(decode_mask, [element["mask"]], tf.float32, stateful=False)
            return image, tf.ensure_shape(mask, (height, width, 1))
        if target == "label":
            label = element["label"]
            return image, (tf.one_hot(label, num_classes) if num_classes is not None else label)
        return image

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    ds = tf.data.Dataset.from_tensor_slices(columns).map(
        load, num_parallel_calls=parallel, deterministic=True
    )
    if cache_file is not None:
        if str(cache_file):
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_file))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return _finish(
        ds,
        has_y,
        batch_size,
        seed,
        augment,
        augment_on,
        noise,
        normalizer,
        drop_remainder,
        num_parallel_calls,
    )
