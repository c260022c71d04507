"""The tf.data pipeline: arrays and their cache, batches, noise pairs, shuffling, augmentation, streaming."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from urep.data import DatasetError, MeanNormalizer, datasets
from urep.data import pipeline as pl
from urep.data.noise import NoiseSpec
from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms


@pytest.fixture(scope="module")
def cxr_table(tmp_path_factory) -> pd.DataFrame:
    root = make_cxr_phantoms(
        tmp_path_factory.mktemp("cxr"),
        n_patients=6,
        views_per_patient=2,
        size=64,
        seed=0,
        labels=("normal", "abnormal", "viral"),
    )
    return datasets.folder(root, require_masks=True)


def _batches(ds) -> list:
    return [
        tuple(t.numpy() for t in element) if isinstance(element, tuple) else element.numpy() for element in ds
    ]


def test_load_arrays_shapes_dtypes_labels_and_masks(cxr_table):
    arrays = pl.load_arrays(cxr_table, 32, with_masks=True)
    assert arrays.images.shape == (12, 32, 32, 1) and arrays.images.dtype == np.float32
    assert 0.0 <= arrays.images.min() and arrays.images.max() <= 1.0
    assert arrays.masks.shape == (12, 32, 32, 1) and arrays.masks.dtype == np.uint8
    assert set(np.unique(arrays.masks)) == {0, 1}
    assert arrays.classes == ["abnormal", "normal", "viral"]
    assert [arrays.classes[i] for i in arrays.labels] == cxr_table["label"].tolist()
    assert arrays.ids == cxr_table["image"].tolist() and not arrays.cache_hit
    three = pl.load_arrays(
        cxr_table, (24, 40), channels=3, label_map={"normal": 0, "abnormal": 1, "viral": 2}
    )
    assert three.images.shape == (12, 24, 40, 3) and three.masks is None
    assert np.array_equal(three.images[..., 0], three.images[..., 2])
    assert three.classes == ["normal", "abnormal", "viral"]
    part = arrays.subset([3, 0])
    assert part.ids == [arrays.ids[3], arrays.ids[0]] and np.array_equal(part.images[1], arrays.images[0])


def test_load_arrays_cache_hit_skips_the_reader(cxr_table, tmp_path, monkeypatch):
    first = pl.load_arrays(cxr_table, 32, with_masks=True, cache_dir=tmp_path)
    assert not first.cache_hit
    assert len(list(tmp_path.glob("arrays-32x32-*/images.npy"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the reader was called on a cache hit")

    monkeypatch.setattr(pl, "read_image", refuse)
    monkeypatch.setattr(pl, "read_mask", refuse)
    second = pl.load_arrays(cxr_table, 32, with_masks=True, cache_dir=tmp_path)
    assert second.cache_hit
    assert np.array_equal(first.images, second.images) and np.array_equal(first.masks, second.masks)
    assert np.array_equal(first.labels, second.labels)
    with pytest.raises(AssertionError, match="reader was called"):
        pl.load_arrays(cxr_table, 48, cache_dir=tmp_path)  # another size is another key


def test_cache_key_follows_files_and_settings(cxr_table, tmp_path):
    images = cxr_table["image"].tolist()
    masks = cxr_table["mask"].tolist()
    key = pl.cache_key(images, None, (32, 32))
    assert pl.cache_key(images, None, (32, 32)) == key
    assert pl.cache_key(images, None, (64, 64)) != key
    assert pl.cache_key(images, masks, (32, 32)) != key
    assert pl.cache_key(images[::-1], None, (32, 32)) != key
    assert pl.cache_key(images[:-1], None, (32, 32)) != key
    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert pl.cache_key(images, None, (32, 32)) != key
    with pytest.raises(DatasetError, match="cannot read .*nope.png"):
        pl.cache_key([str(tmp_path / "nope.png")], None, (32, 32))


def test_load_arrays_errors_name_the_problem(cxr_table):
    no_mask = cxr_table.copy()
    no_mask.loc[2, "mask"] = ""
    with pytest.raises(
        DatasetError, match=r"with_masks=True but 1 image\(s\) have no mask: .*cxr0001_v0.png"
    ):
        pl.load_arrays(no_mask, 32, with_masks=True)
    with pytest.raises(DatasetError, match=r"labels \['viral'\] in column 'label' are not in label_map"):
        pl.load_arrays(cxr_table, 32, label_map={"normal": 0, "abnormal": 1})
    unlabeled = cxr_table.copy()
    unlabeled.loc[0, "label"] = ""
    with pytest.raises(DatasetError, match="1 row\\(s\\) have no 'label' label"):
        pl.load_arrays(unlabeled, 32)
    with pytest.raises(DatasetError, match=r"table lacks column\(s\) \['image'\]"):
        pl.load_arrays(cxr_table.drop(columns=["image"]), 32)
    with pytest.raises(DatasetError, match="the table is empty"):
        pl.load_arrays(cxr_table.iloc[:0], 32)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        pl.load_arrays(cxr_table, 32, channels=2)
    with pytest.raises(ValueError, match="image_size must be a positive int or"):
        pl.load_arrays(cxr_table, 0)


def test_load_arrays_reads_doppler_quality_as_labels(tmp_path):
    root = make_doppler_phantoms(tmp_path / "d", n_patients=2, images_per_patient=6, size=32)
    table = datasets.folder(root)
    arrays = pl.load_arrays(table, 32, label_column="quality", with_masks=True)
    assert arrays.classes == ["good", "low"]
    assert np.bincount(arrays.labels).tolist() == [6, 6]
    assert arrays.masks.any(axis=(1, 2, 3)).all(), "every Doppler image has an envelope"


def test_make_dataset_batches_and_shuffle_by_seed():
    x = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32) / 10
    y = np.arange(10)

    def order(ds):
        return np.concatenate([b[1] for b in _batches(ds)]).tolist()

    batches = _batches(pl.make_dataset(x, y, batch_size=4, shuffle=False))
    assert [b[0].shape for b in batches] == [(4, 4, 4, 1), (4, 4, 4, 1), (2, 4, 4, 1)]
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(10))
    assert np.allclose(batches[0][0][:, 0, 0, 0], [0.0, 0.1, 0.2, 0.3])
    a = order(pl.make_dataset(x, y, batch_size=4, seed=1))
    assert a == order(pl.make_dataset(x, y, batch_size=4, seed=1))
    assert a != order(pl.make_dataset(x, y, batch_size=4, seed=2))
    assert sorted(a) == list(range(10))
    # images stay with their labels whatever the order
    for images, labels in _batches(pl.make_dataset(x, y, batch_size=3, seed=5)):
        assert np.allclose(images[:, 0, 0, 0], labels / 10)
    dropped = _batches(pl.make_dataset(x, y, batch_size=4, drop_remainder=True))
    assert len(dropped) == 2
    epochs = _batches(pl.make_dataset(x, y, batch_size=10, seed=3, repeat=True).take(2))
    assert epochs[0][1].tolist() != epochs[1][1].tolist(), "each epoch is reshuffled"
    one_hot = _batches(pl.make_dataset(x, y, batch_size=10, shuffle=False, num_classes=10))[0][1]
    assert np.array_equal(one_hot, np.eye(10, dtype=np.float32))
    alone = _batches(pl.make_dataset(x, batch_size=10))[0]
    assert isinstance(alone, np.ndarray) and alone.shape == (10, 4, 4, 1)


def test_make_dataset_masks_become_float_and_follow_augmentation():
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    masks = (x > 0.5).astype(np.uint8)

    def flip_both(image, mask, seed):
        flip = tf.random.stateless_uniform([], seed) < 0.5
        return (tf.where(flip, image[:, ::-1], image), tf.where(flip, mask[:, ::-1], mask))

    batches = _batches(pl.make_dataset(x, masks, batch_size=6, seed=0, augment=flip_both))
    images, targets = batches[0]
    assert targets.dtype == np.float32
    assert np.array_equal(targets, (images > 0.5).astype(np.float32)), "the mask follows its image"
    flipped = sum(not any(np.array_equal(img, orig) for orig in x) for img in images)
    assert 0 < flipped < 6


def test_make_dataset_noise_pairs_and_normalizer():
    x = np.full((16, 16, 16, 1), 0.5, np.float32)
    normalizer = MeanNormalizer().fit(x)
    ds = pl.make_dataset(x, batch_size=16, noise=NoiseSpec("gaussian", 0.05), normalizer=normalizer, seed=3)
    noisy, clean = _batches(ds)[0]
    assert np.array_equal(clean, x), "the target is the clean image, not normalized"
    residual = noisy + 0.5 - clean  # normalized input = noisy - mean(0.5)
    assert abs(residual.mean()) < 0.005 and abs(residual.std() - 0.05) < 0.005
    again = _batches(pl.make_dataset(x, batch_size=16, noise="gaussian:0.05", normalizer=normalizer, seed=3))[
        0
    ]
    assert np.array_equal(again[0], noisy), "same seed, same noise"
    other = _batches(pl.make_dataset(x, batch_size=16, noise="gaussian:0.05", seed=4))[0]
    assert not np.array_equal(other[0], noisy + 0.5)
    mixed = _batches(pl.make_dataset(x, batch_size=16, noise=["gaussian:0.01", "gaussian:0.2"], seed=0))[0]
    stds = sorted((mixed[0] - mixed[1]).reshape(16, -1).std(axis=1))
    assert stds[0] < 0.02 and stds[-1] > 0.15, "each element draws one of the noise levels"
    with pytest.raises(ValueError, match="y must be None"):
        pl.make_dataset(x, np.zeros(16), noise="gaussian:0.1")
    with pytest.raises(ValueError, match="unknown noise kind 'salt'"):
        pl.make_dataset(x, noise="salt:0.1")


def test_make_dataset_batch_augment_and_argument_errors():
    x = np.zeros((5, 4, 4, 1), np.float32)
    ds = pl.make_dataset(x, batch_size=5, augment=lambda a, b, seed: (a + 1.0, b), augment_on="batch")
    assert np.all(_batches(ds)[0] == 1.0)
    with pytest.raises(ValueError, match="x must be \\(N, H, W, C\\)"):
        pl.make_dataset(np.zeros((5, 4, 4)))
    with pytest.raises(ValueError, match="y has 4 rows but x has 5"):
        pl.make_dataset(x, np.zeros(4))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pl.make_dataset(x, batch_size=0)
    with pytest.raises(ValueError, match="augment_on must be"):
        pl.make_dataset(x, augment_on="epoch")


def test_file_dataset_streams_the_same_pixels_and_caches(cxr_table, tmp_path):
    arrays = pl.load_arrays(cxr_table, 32, with_masks=True)
    cache = tmp_path / "tfcache" / "cxr"
    ds = pl.file_dataset(cxr_table, 32, target="mask", batch_size=5, shuffle=False, cache_file=cache)
    images, masks = (np.concatenate(parts) for parts in zip(*_batches(ds), strict=True))
    assert np.allclose(images, arrays.images) and np.array_equal(masks, arrays.masks.astype(np.float32))
    assert list(tmp_path.glob("tfcache/cxr*.index"))
    labelled = pl.file_dataset(cxr_table, 32, batch_size=4, seed=2, channels=3, num_classes=3)
    seen = []
    for batch_images, batch_labels in _batches(labelled):
        assert batch_images.shape[1:] == (32, 32, 3) and batch_labels.shape[1] == 3
        for image, label in zip(batch_images, batch_labels, strict=True):
            match = [i for i in range(len(arrays)) if np.allclose(arrays.images[i, ..., 0], image[..., 0])]
            assert len(match) == 1 and arrays.labels[match[0]] == label.argmax()
            seen.append(match[0])
    assert sorted(seen) == list(range(12)) and seen != list(range(12))
    pairs = _batches(pl.file_dataset(cxr_table, 32, target="none", noise="gaussian:0.1", batch_size=12))[0]
    assert pairs[0].shape == pairs[1].shape == (12, 32, 32, 1)
    with pytest.raises(ValueError, match="target must be 'label', 'mask' or 'none'"):
        pl.file_dataset(cxr_table, 32, target="boxes")
