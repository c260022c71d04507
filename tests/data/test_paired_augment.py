"""Paired augmentation of heads' training data: seeded, identical geometry on image and mask, off = identity."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from urep.data.augment import paired_augment
from urep.data.batches import ArrayBatches, AugmentedBatches

OPTIONS = {"rotation": 15.0, "zoom": 0.2, "horizontal_flip": True, "brightness": 0.0, "contrast": 0.0,
           "gamma": 0.0}


def _pair(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An image equal to its mask plus a constant: any geometric mismatch shows as a difference."""
    mask = np.zeros((size, size, 1), np.float32)
    mask[6:20, 4:14] = 1.0          # off-centre so that a flip or rotation moves it
    return 0.2 + 0.6 * mask, mask


def _batches(x, y, masks=True, options=OPTIONS, seed=3):
    return AugmentedBatches(x, y, batch_size=4, seed=seed, options=options, masks=masks)


def test_same_seed_same_output_other_seed_other_output():
    image, mask = _pair()
    a = paired_augment(image, mask, tf.constant([1, 2]), **OPTIONS)
    b = paired_augment(image, mask, tf.constant([1, 2]), **OPTIONS)
    c = paired_augment(image, mask, tf.constant([5, 9]), **OPTIONS)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_image_and_mask_get_the_same_geometry():
    image, mask = _pair()
    for seed in range(6):
        out_image, out_mask = paired_augment(image, mask, tf.constant([seed, 0]), **OPTIONS)
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert set(np.unique(out_mask)) <= {0.0, 1.0}
        assert not np.array_equal(out_mask, mask)          # it did move
        inside = out_image[out_mask == 1.0]
        outside = out_image[out_mask == 0.0]
        # the bright rectangle of the image sits where the mask went (bilinear edges aside)
        assert inside.mean() > 0.7 and outside.mean() < 0.3


def test_intensity_changes_touch_the_image_only():
    image, mask = _pair()
    out_image, out_mask = paired_augment(image, mask, tf.constant([0, 1]), rotation=0.0, zoom=0.0,
                                         horizontal_flip=False, brightness=0.2, contrast=0.3, gamma=0.3)
    np.testing.assert_array_equal(out_mask.numpy(), mask)
    assert not np.allclose(out_image.numpy(), image)
    assert 0.0 <= out_image.numpy().min() and out_image.numpy().max() <= 1.0


def test_all_ranges_zero_is_the_identity():
    image, mask = _pair()
    out_image, out_mask = paired_augment(image, mask, tf.constant([0, 1]), rotation=0.0, zoom=0.0,
                                         horizontal_flip=False)
    np.testing.assert_allclose(out_image.numpy(), image, atol=1e-6)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_augmented_batches_draw_anew_each_epoch_reproducibly_and_normalise():
    image, mask = _pair()
    x, y = np.stack([image] * 6), np.stack([mask] * 6)
    batches = AugmentedBatches(x, y, batch_size=4, seed=3, options=OPTIONS, masks=True, mean=0.5, scale=2.0)
    first = [b[0].numpy() for b in batches(0)]
    again = [b[0].numpy() for b in batches(0)]
    other = [b[0].numpy() for b in batches(1)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert [len(b) for b in first] == [4, 2]
    assert np.concatenate(first).min() >= (0.0 - 0.5) / 2.0 and np.concatenate(first).max() <= (1.0 - 0.5) / 2.0
    # the epoch's order is ArrayBatches' (same shuffle seed)
    labels = np.arange(6, dtype=np.float32)[:, None]
    plain = [b[1].numpy() for b in ArrayBatches(x, labels, 4, seed=3)(2)]
    augmented = [b[1].numpy() for b in AugmentedBatches(x, labels, 4, 3, OPTIONS)(2)]
    np.testing.assert_array_equal(np.concatenate(plain), np.concatenate(augmented))


def test_augmented_batches_disable_precomputed_features():
    """The independent strategy may precompute frozen-encoder features only for `ArrayBatches` (fixed
    inputs); augmented batches change every epoch, so it must train on images."""
    import keras

    from urep.training.features import head_on_features

    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(2, 3, padding="same", name="encoder_out")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    model.get_layer("encoder_out").trainable = False
    x = np.zeros((4, 8, 8, 1), np.float32)
    y = np.zeros((4, 1), np.float32)
    assert head_on_features(model, ArrayBatches(x, y, 2, seed=0)) is not None
    assert head_on_features(model, AugmentedBatches(x, y, 2, 0, OPTIONS)) is None


def test_array_batches_keep_the_order_of_shuffling_the_rows_themselves():
    """The epoch's datasets gather rows by shuffled index from tensors made once; the order is the one that
    shuffling the rows with the same seed gives (runs before the change keep their batches)."""
    rng = np.random.default_rng(0)
    x = rng.random((11, 4, 4, 1), dtype=np.float32)
    y = {"label": np.arange(11), "weight": rng.random(11).astype(np.float32)}
    batches = ArrayBatches(x, y, 4, seed=5)
    for epoch in (0, 3):
        expected = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
            11, seed=5 * 1009 + epoch, reshuffle_each_iteration=False).batch(4)
        got = list(batches(epoch))
        assert [len(b[0]) for b in got] == [4, 4, 3]
        for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(gx.numpy(), ex.numpy())
            np.testing.assert_array_equal(gy["label"].numpy(), ey["label"].numpy())
            np.testing.assert_array_equal(gy["weight"].numpy(), ey["weight"].numpy())
    in_order = np.concatenate([b[0].numpy() for b in ArrayBatches(x, y, 4)(7)])
    np.testing.assert_array_equal(in_order, x)


def test_augmented_batches_trace_their_augmentation_once_for_every_epoch():
    image, mask = _pair()
    batches = _batches(np.stack([image] * 6), np.stack([mask] * 6))
    for epoch in range(3):
        list(batches(epoch))
    assert batches._view().experimental_get_tracing_count() == 1
