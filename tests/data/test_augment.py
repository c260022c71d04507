"""Tests of urep/data/augment.py: op semantics, range/shape, determinism, weak/strong pairing by construction."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from urep.data import augment
from urep.data.augment import STRONG_OPS, apply_op, strong_augment, weak_augment, weak_strong_pairs


def _image(size: int = 32, channels: int = 1, seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).random((size, size, channels)).astype("float32"))


@pytest.mark.parametrize("name", STRONG_OPS)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_strong_op_keeps_shape_dtype_and_range(name, channels):
    image = _image(32, channels)
    for magnitude in (0.0, 0.5, 1.0):
        out = apply_op(image, name, magnitude)
        assert out.shape == image.shape and out.dtype == tf.float32
        values = out.numpy()
        assert values.min() >= 0.0 and values.max() <= 1.0


def test_photometric_ops_do_what_their_names_say():
    image = _image()
    x = image.numpy()
    np.testing.assert_array_equal(apply_op(image, "identity", 0.7).numpy(), x)
    np.testing.assert_allclose(apply_op(image, "brightness", 0.0).numpy(), 0.05 * x, rtol=1e-6)
    mean = x.mean()
    np.testing.assert_allclose(apply_op(image, "contrast", 1.0).numpy(), mean + 0.95 * (x - mean), rtol=1e-5)
    np.testing.assert_allclose(apply_op(image, "solarize", 0.5).numpy(), np.where(x >= 0.5, 1 - x, x), rtol=1e-6)
    levels = np.round(apply_op(image, "posterize", 0.0).numpy() * 255)  # 4 bits kept
    assert np.all(levels % 16 == 0)
    dim = tf.constant(0.2 + 0.5 * x)
    stretched = augment.autocontrast(dim).numpy()
    assert stretched.min() == pytest.approx(0.0, abs=1e-6) and stretched.max() == pytest.approx(1.0, abs=1e-6)
    equalized = augment.equalize(tf.constant(x ** 3)).numpy()  # skewed histogram (median 0.125) -> flat
    np.testing.assert_allclose(np.quantile(equalized, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.1)
    constant = tf.fill([8, 8, 1], 0.3)
    np.testing.assert_allclose(augment.equalize(constant).numpy(), 0.3)
    np.testing.assert_allclose(augment.autocontrast(constant).numpy(), 0.3)


def test_sharpness_blends_with_the_pil_smooth_filter():
    x = _image(16).numpy()
    smooth = ndimage.convolve(x[..., 0], np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0, mode="constant")
    degenerate = x[..., 0].copy()
    degenerate[1:-1, 1:-1] = smooth[1:-1, 1:-1]
    out = augment.sharpness(tf.constant(x), 0.5).numpy()[..., 0]
    np.testing.assert_allclose(out, np.clip(degenerate + 0.5 * (x[..., 0] - degenerate), 0, 1), atol=1e-6)


def test_geometric_ops_move_pixels_as_documented():
    x = _image(8).numpy()
    np.testing.assert_allclose(augment.rotate(tf.constant(x), 90.0).numpy()[..., 0], np.rot90(x[..., 0]),
                               atol=1e-5)
    shifted = augment.translate_x(tf.constant(x), 0.25).numpy()
    np.testing.assert_allclose(shifted[:, :6], x[:, 2:], atol=1e-6)
    assert np.all(shifted[:, 6:] == 0)  # uncovered pixels are black
    down = augment.translate_y(tf.constant(x), -0.25).numpy()
    np.testing.assert_allclose(down[2:], x[:6], atol=1e-6)
    sheared = augment.shear_x(tf.constant(x), 0.0).numpy()
    np.testing.assert_allclose(sheared, x, atol=1e-6)


def _is_flip_shift_of(view: np.ndarray, source: np.ndarray, pad: int) -> bool:
    """Whether `view` is a crop of the reflect-padded `source` or of its horizontal mirror."""
    size = source.shape[0]
    for candidate in (source, source[:, ::-1]):
        padded = np.pad(candidate, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
        for r in range(2 * pad + 1):
            for c in range(2 * pad + 1):
                if np.array_equal(view, padded[r:r + size, c:c + size]):
                    return True
    return False


def test_weak_view_is_a_flip_and_reflect_shift_of_the_source():
    x = _image(32).numpy()
    no_shift = weak_augment(tf.constant(x), tf.constant([1, 2]), pad_fraction=0.0).numpy()
    assert np.array_equal(no_shift, x) or np.array_equal(no_shift, x[:, ::-1])
    for s in range(6):
        view = weak_augment(tf.constant(x), tf.constant([s, 0])).numpy()
        assert _is_flip_shift_of(view, x, pad=4)  # 0.125 * 32


def test_strong_view_shift_scales_with_image_size_not_four_pixels():
    image = np.zeros((64, 64, 1), "float32")
    image[30:34, 30:34] = 1.0
    shifts = []
    for s in range(40):
        out = strong_augment(tf.constant(image), tf.constant([s, 7]), ops=("identity",)).numpy()[..., 0]
        rows, cols = np.nonzero(out > 0.5)
        shifts.append(max(abs(rows.mean() - 31.5), abs(abs(cols.mean() - 31.5))))
    assert max(shifts) > 4.5  # pad = 0.125 * 64 = 8 px; the public code's strong view was capped at 4 px
    assert max(shifts) <= 8.0


def test_same_seed_same_views_and_different_seeds_differ():
    image = _image(32)
    a = strong_augment(image, tf.constant([3, 4])).numpy()
    b = strong_augment(image, tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(a, b)
    outs = [strong_augment(image, tf.constant([s, 4])).numpy() for s in range(5)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    w1 = weak_augment(image, tf.constant([9, 9])).numpy()
    np.testing.assert_array_equal(w1, weak_augment(image, tf.constant([9, 9])).numpy())


def test_weak_strong_pairs_come_from_the_same_source_image():
    n = 8
    sources = np.random.default_rng(1).random((n, 16, 16, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((sources, tf.range(n))).shuffle(n, seed=3)
    seen = []
    for weak, strong, image_id in weak_strong_pairs(dataset, seed=5, ops=("identity",)):
        seen.append(int(image_id))
        for view in (weak.numpy(), strong.numpy()):
            matches = [j for j in range(n) if _is_flip_shift_of(view, sources[j], pad=2)]
            assert matches == [int(image_id)]
    assert sorted(seen) == list(range(n)) and seen != list(range(n))  # shuffled, each image once


def test_weak_strong_pairs_with_the_full_pool_keep_ids_shapes_and_are_reproducible():
    n = 6
    constants = np.linspace(0.1, 0.9, n, dtype="float32")[:, None, None, None] * np.ones((n, 16, 16, 1), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((constants, tf.range(n)))
    dataset = dataset.shuffle(n, seed=1, reshuffle_each_iteration=False)
    pairs = weak_strong_pairs(dataset, seed=2)  # traced once; iterated twice
    first = [(w.numpy(), s.numpy(), int(i)) for w, s, i in pairs]
    second = [(w.numpy(), s.numpy(), int(i)) for w, s, i in pairs]
    for (w1, s1, i1), (w2, s2, i2) in zip(first, second, strict=True):
        assert i1 == i2
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(s1, s2)
        assert w1.shape == s1.shape == (16, 16, 1)
        np.testing.assert_allclose(w1, constants[i1])  # a flip/shift of a constant image is itself
        assert s1.min() >= 0 and s1.max() <= 1


def test_weak_strong_pairs_accept_bare_images_and_weak_views_keep_labels():
    images = np.random.default_rng(2).random((3, 16, 16, 1)).astype("float32")
    weak, strong = next(iter(weak_strong_pairs(tf.data.Dataset.from_tensor_slices(images))))
    assert weak.shape == strong.shape == (16, 16, 1)
    labelled = tf.data.Dataset.from_tensor_slices((images, tf.constant([2, 0, 1])))
    labels = [int(y) for _, y in augment.weakly_augmented(labelled, seed=1)]
    assert labels == [2, 0, 1]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one image of shape"):
        weak_augment(tf.zeros([8, 8]), tf.constant([0, 0]))
    with pytest.raises(ValueError, match="float32"):
        weak_augment(tf.zeros([8, 8, 1], tf.uint8), tf.constant([0, 0]))
    with pytest.raises(ValueError, match="seed"):
        weak_augment(tf.zeros([8, 8, 1]), tf.constant([0, 0, 0]))
    with pytest.raises(ValueError, match="unknown strong augmentation"):
        apply_op(tf.zeros([8, 8, 1]), "cutout", 0.5)
    with pytest.raises(ValueError, match="ops must be"):
        strong_augment(tf.zeros([8, 8, 1]), tf.constant([0, 0]), ops=("invert",))
    with pytest.raises(ValueError, match="pad_fraction"):
        weak_strong_pairs(tf.data.Dataset.from_tensor_slices(np.zeros((2, 8, 8, 1), "float32")), pad_fraction=1.0)
