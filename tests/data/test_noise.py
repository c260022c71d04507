"""Tests for urep.data.noise: specs, NumPy and tf.data noise, statistics, reproducibility, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from urep.data.noise import DEFAULT_NOISES, NoiseSpec, add_noise, parse_noise, tf_add_noise

MID = np.full((128, 128), 0.5, np.float32)


def test_spec_names_and_validation():
    assert NoiseSpec("gaussian", 0.03).name == "gaussian_0.03"
    assert NoiseSpec("poisson", 100).name == "poisson_100" and str(NoiseSpec("speckle", 0.1)) == "speckle_0.1"
    with pytest.raises(ValueError, match=r"unknown noise kind 'salt'; expected one of \['gaussian', 'poisson', 'speckle'\]"):
        NoiseSpec("salt", 0.1)
    with pytest.raises(ValueError, match=r"noise poisson needs a positive finite level \(peak\), got 0"):
        NoiseSpec("poisson", 0)
    with pytest.raises(ValueError, match=r"\(sigma\), got nan"):
        NoiseSpec("gaussian", float("nan"))


def test_defaults_five_gaussian_levels_and_poisson():
    assert [s.name for s in DEFAULT_NOISES] == [
        "gaussian_0.01", "gaussian_0.03", "gaussian_0.05", "gaussian_0.07", "gaussian_0.1", "poisson_100"]


def test_parse_noise():
    assert parse_noise("gaussian:0.03") == NoiseSpec("gaussian", 0.03)
    assert parse_noise(" Poisson : 30 ") == NoiseSpec("poisson", 30.0)
    assert parse_noise("speckle_0.2") == NoiseSpec("speckle", 0.2)
    spec = NoiseSpec("gaussian", 0.05)
    assert parse_noise(spec) is spec and parse_noise(spec.name) == spec
    with pytest.raises(ValueError, match="expected 'kind:level'"):
        parse_noise("gaussian")
    with pytest.raises(ValueError, match="level 'high' is not a number"):
        parse_noise("gaussian:high")


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_numpy_gaussian_statistics(sigma):
    noise = add_noise(MID, NoiseSpec("gaussian", sigma), seed=0) - MID
    assert abs(noise.mean()) < 3 * sigma / 128  # 3 standard errors of the mean over 128*128 pixels
    assert noise.std() == pytest.approx(sigma, rel=0.03)


def test_numpy_poisson_and_speckle_statistics():
    peak = 100.0
    noisy = add_noise(MID, NoiseSpec("poisson", peak), seed=1)
    assert noisy.mean() == pytest.approx(0.5, abs=0.003)
    assert (noisy - MID).std() == pytest.approx(np.sqrt(0.5 / peak), rel=0.03)
    assert np.allclose(noisy * peak, np.round(noisy * peak), atol=1e-4)  # whole photon counts
    speckle = add_noise(MID, NoiseSpec("speckle", 0.1), seed=2) - MID
    assert abs(speckle.mean()) < 0.002 and speckle.std() == pytest.approx(0.05, rel=0.03)
    dark = add_noise(np.zeros((8, 8)), NoiseSpec("speckle", 0.5), seed=2)
    assert not dark.any()  # multiplicative: black stays black


def test_numpy_reproducible_clipped_float32():
    x = np.random.default_rng(0).random((3, 16, 16, 1))
    a = add_noise(x, "gaussian:0.3", seed=7)
    assert a.dtype == np.float32 and a.shape == x.shape and a.min() == 0.0 and a.max() == 1.0
    np.testing.assert_array_equal(a, add_noise(x, "gaussian:0.3", seed=7))
    assert not np.array_equal(a, add_noise(x, "gaussian:0.3", seed=8))
    np.testing.assert_array_equal(add_noise(x, "gaussian:0.3", np.random.default_rng(7)), a)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def test_tf_statistics_match_numpy(tf):
    for spec, expected_std in ((NoiseSpec("gaussian", 0.05), 0.05), (NoiseSpec("poisson", 100.0), np.sqrt(0.005)),
                               (NoiseSpec("speckle", 0.1), 0.05)):
        noise = tf_add_noise(MID, spec, seed=3).numpy() - MID
        assert abs(noise.mean()) < 0.003, spec
        assert noise.std() == pytest.approx(expected_std, rel=0.04), spec


def test_tf_reproducible_and_seed_forms(tf):
    x = tf.constant(np.random.default_rng(1).random((2, 8, 8, 1)), tf.float32)
    a = tf_add_noise(x, "gaussian:0.2", 5)
    assert a.dtype == tf.float32 and a.shape == x.shape
    assert float(tf.reduce_min(a)) >= 0.0 and float(tf.reduce_max(a)) <= 1.0
    np.testing.assert_array_equal(a.numpy(), tf_add_noise(x, "gaussian:0.2", [5, 0]).numpy())
    assert not np.array_equal(a.numpy(), tf_add_noise(x, "gaussian:0.2", [5, 1]).numpy())
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        tf_add_noise(x, "gaussian:0.2", [1, 2, 3])
    with pytest.raises(ValueError, match="pair of ints, got dtype float32"):
        tf_add_noise(x, "gaussian:0.2", [1.0, 2.0])


def test_tf_inside_dataset_map(tf):
    images = np.full((4, 8, 8, 1), 0.5, np.float32)

    def noisy_pair(index, image):
        return tf_add_noise(image, NoiseSpec("poisson", 50), tf.stack([tf.constant(9, tf.int64), index])), image

    ds = tf.data.Dataset.from_tensor_slices(images).enumerate().map(noisy_pair, num_parallel_calls=2)
    first = [noisy.numpy() for noisy, _ in ds]
    second = [noisy.numpy() for noisy, _ in ds]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))  # same seeds each epoch
    assert not np.array_equal(first[0], first[1])  # a different seed per element


def test_epoch_noise_rotates_the_noises_over_the_images_and_is_seeded():
    from urep.data.noise import epoch_noise

    clean = np.full((4, 8, 8, 1), 0.5, np.float32)
    noises = [NoiseSpec("gaussian", 0.2), "gaussian:0.001"]
    first = epoch_noise(clean, noises, seed=3, epoch=0)
    strong = np.abs(first - 0.5).reshape(4, -1).mean(axis=1) > 0.05
    assert strong.tolist() == [True, False, True, False]  # image j gets noise (j + epoch) % 2
    second = epoch_noise(clean, noises, seed=3, epoch=1)
    assert (np.abs(second - 0.5).reshape(4, -1).mean(axis=1) > 0.05).tolist() == [False, True, False, True]
    np.testing.assert_array_equal(first, epoch_noise(clean, noises, seed=3, epoch=0))
    assert not np.array_equal(first, epoch_noise(clean, noises, seed=4, epoch=0))
    expected = add_noise(clean[[0, 2]], noises[0], np.random.default_rng([3, 0, 0]))
    np.testing.assert_array_equal(first[[0, 2]], expected)
