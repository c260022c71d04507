"""Task relatedness: distances, MMD permutation test, the verdict table, and the transfer matrix."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from urep import relatedness as R
from urep.data import read_image
from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def noise_images(n: int = 12, size: int = 16, seed: int = 0) -> np.ndarray:
    return (0.3 + 0.2 * rng(seed).random((n, size, size))).astype("float32")


# ------------------------------------------------------------------------------------------ distances
def test_intensity_distances_zero_for_identical_and_growing_with_shift():
    images = noise_images()
    same = R.intensity_distances(images, images.copy())
    assert same == {"wasserstein": 0.0, "ks_statistic": 0.0}
    shifts = (0.05, 0.1, 0.2)
    found = [R.intensity_distances(images, images + s) for s in shifts]
    # pooled pixels shifted by s: the 1-Wasserstein distance is exactly s
    np.testing.assert_allclose([d["wasserstein"] for d in found], shifts, rtol=1e-5)
    ks = [d["ks_statistic"] for d in found]
    assert 0 < ks[0] < ks[1] < ks[2] <= 1


def test_intensity_distances_subsample_pixels_and_reject_bad_input():
    images = noise_images(n=8, size=32)
    assert R.intensity_distances(images, images + 0.1, max_pixels=500)["wasserstein"] == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="max_pixels"):
        R.intensity_distances(images, images, max_pixels=0)
    with pytest.raises(ValueError, match="target: expected images of shape"):
        R.intensity_distances(images, np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        R.intensity_distances(images, images[:1])
    with pytest.raises(ValueError, match="NaN"):
        R.intensity_distances(images, np.full((2, 4, 4), np.nan))


def test_frechet_zero_for_identical_and_growing_with_shift():
    features = rng(1).normal(size=(40, 6))
    assert R.frechet_distance(features, features.copy()) == pytest.approx(0.0, abs=1e-8)
    distances = [R.frechet_distance(features, features + s) for s in (0.5, 1.0, 2.0)]
    # a pure mean shift by s in each of 6 dimensions: d^2 = 6 s^2 (covariances identical)
    np.testing.assert_allclose(distances, [6 * 0.25, 6.0, 24.0], rtol=1e-6)
    normalized = [R.normalized_frechet_distance(features, features + s) for s in (0.5, 1.0, 2.0)]
    assert 0 < normalized[0] < normalized[1] < normalized[2]


def test_frechet_matches_closed_form_for_gaussians_and_is_scale_free_when_normalized():
    a = rng(2).normal(size=(4000, 2))
    b = rng(3).normal(size=(4000, 2)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4 I) in 2-D: |mu|^2 = 2, tr(I + 4I - 2 * 2I) = 2 -> 4
    assert R.frechet_distance(a, b, shrinkage=None) == pytest.approx(4.0, rel=0.1)
    assert R.normalized_frechet_distance(a * 10, b * 10) == pytest.approx(R.normalized_frechet_distance(a, b))


def test_frechet_with_fewer_samples_than_dimensions_is_finite():
    a, b = rng(4).normal(size=(5, 64)), rng(5).normal(size=(6, 64)) + 1.0
    for shrinkage in ("ledoit-wolf", 0.5, None):
        value = R.frechet_distance(a, b, shrinkage=shrinkage)
        assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="shrinkage"):
        R.frechet_distance(a, b, shrinkage=2.0)
    with pytest.raises(ValueError, match="dimensions differ"):
        R.frechet_distance(a, b[:, :3])


def test_median_bandwidth_by_hand():
    # points 0, 1, 3 on a line: squared distances 1, 9, 4 -> median 4 -> sigma = sqrt(2)
    assert R.median_bandwidth([[0.0], [1.0], [3.0]]) == pytest.approx(np.sqrt(2.0))
    assert R.median_bandwidth(np.zeros((4, 2))) == 1.0


def test_mmd_zero_for_identical_and_growing_with_shift():
    features = rng(6).normal(size=(20, 3))
    same = R.mmd_test(features, features.copy(), n_permutations=50)
    assert same.mmd2 == pytest.approx(0.0, abs=1e-12)
    assert same.p_value == 1.0
    results = [R.mmd_test(features, rng(7).normal(size=(20, 3)) + s, n_permutations=99, bandwidth=1.5)
               for s in (0.0, 1.0, 3.0)]
    assert results[0].mmd2 < results[1].mmd2 < results[2].mmd2 <= 2.0
    assert results[2].p_value == pytest.approx(1 / 100)


def test_mmd_p_value_is_roughly_uniform_under_the_null():
    p_values = []
    for draw in range(30):
        generator = rng(100 + draw)
        a, b = generator.normal(size=(12, 3)), generator.normal(size=(12, 3))
        p_values.append(R.mmd_test(a, b, n_permutations=49, seed=draw).p_value)
    p_values = np.asarray(p_values)
    assert 0.3 < p_values.mean() < 0.7
    assert scipy.stats.kstest(p_values, "uniform").pvalue > 0.01
    # and it is not uniform under a clear alternative
    shifted = [R.mmd_test(rng(200 + d).normal(size=(12, 3)), rng(300 + d).normal(size=(12, 3)) + 1.5,
                          n_permutations=49, seed=d).p_value for d in range(5)]
    assert max(shifted) < 0.05


def test_mmd_is_seeded_and_rejects_bad_arguments():
    a, b = rng(8).normal(size=(10, 2)), rng(9).normal(size=(10, 2)) + 0.3
    assert R.mmd_test(a, b, seed=3).p_value == R.mmd_test(a, b, seed=3).p_value
    with pytest.raises(ValueError, match="n_permutations"):
        R.mmd_test(a, b, n_permutations=0)
    with pytest.raises(ValueError, match="bandwidth"):
        R.mmd_test(a, b, bandwidth=-1.0)


def test_source_baseline_is_small_for_one_distribution():
    source = rng(10).normal(size=(60, 4))
    baseline = R.source_baseline(source, sample_size=10)
    assert 0 < baseline < R.normalized_frechet_distance(source, rng(11).normal(size=(10, 4)) + 2.0)
    with pytest.raises(ValueError, match="at least 4"):
        R.source_baseline(source[:3], sample_size=2)


# ------------------------------------------------------------------------------------------ features
def test_thumbnail_features_shape_and_channel_mean():
    gray = noise_images(n=3, size=32)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    assert R.thumbnail_features(gray, 4).shape == (3, 16)
    np.testing.assert_allclose(R.thumbnail_features(rgb, 4), R.thumbnail_features(gray, 4), rtol=1e-6)


def tiny_source_model(channels: int = 1) -> keras.Model:
    """A 'whole source model' with an `encoder_out` layer followed by more layers."""
    inputs = keras.Input((16, 16, channels))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="encoder_out")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_encoder_features_are_gap_of_encoder_out():
    keras.utils.set_random_seed(0)
    model = tiny_source_model()
    images = noise_images(n=4, size=16)
    features = R.encoder_features(images, model)
    expected = keras.Model(model.inputs, model.get_layer("encoder_out").output).predict(images[..., None], verbose=0)
    np.testing.assert_allclose(features, expected.mean(axis=(1, 2)), rtol=1e-5)
    assert features.shape == (4, 5)
    # one-channel images fed to a three-channel encoder are repeated over channels
    assert R.encoder_features(images, tiny_source_model(channels=3)).shape == (4, 5)
    with pytest.raises(ValueError, match="do not fit the encoder"):
        R.encoder_features(noise_images(n=2, size=8), model)


# ------------------------------------------------------------------------------------------ the table
@pytest.fixture(scope="module")
def phantom_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    folders = {
        "source": make_cxr_phantoms(root / "cxr_source", n_patients=24, views_per_patient=1, size=64, seed=0),
        "cxr": make_cxr_phantoms(root / "cxr_target", n_patients=12, views_per_patient=1, size=64, seed=1),
        "doppler": make_doppler_phantoms(root / "doppler", n_patients=4, images_per_patient=3, size=64, seed=0),
    }
    return {name: np.stack([read_image(p) for p in sorted((folder / "images").glob("*.png"))])
            for name, folder in folders.items()}


def test_table_separates_cxr_phantoms_from_doppler_phantoms(phantom_sets, caplog):
    caplog.set_level(logging.WARNING, logger="urep.relatedness")
    table = R.relatedness_table(
        phantom_sets["source"], {"cxr": phantom_sets["cxr"], "doppler": phantom_sets["doppler"]},
        n_permutations=99, source_name="cxr phantoms",
    )
    assert list(table.columns) == list(R.TABLE_COLUMNS)
    assert list(table.index) == ["cxr", "doppler"]
    assert table.loc["cxr", "related"] and not table.loc["doppler", "related"]
    for column in ("wasserstein", "ks_statistic", "frechet", "frechet_normalized", "mmd2"):
        assert table.loc["doppler", column] > table.loc["cxr", column]
    assert table.loc["doppler", "frechet_normalized"] > R.DEFAULT_THRESHOLD > table.loc["cxr", "frechet_normalized"]
    assert table.loc["doppler", "mmd_p_value"] < 0.05
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'doppler' looks unrelated to cxr phantoms" in warnings[0]


def test_table_threshold_is_configurable(phantom_sets, caplog):
    caplog.set_level(logging.WARNING, logger="urep.relatedness")
    table = R.relatedness_table(phantom_sets["source"], {"doppler": phantom_sets["doppler"]},
                                threshold=1000.0, n_permutations=20)
    assert bool(table.loc["doppler", "related"])
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    strict = R.relatedness_table(phantom_sets["source"], {"cxr": phantom_sets["cxr"]},
                                 threshold=1e-6, alpha=0.5, n_permutations=20)
    assert not bool(strict.loc["cxr", "related"])


def test_table_rejects_bad_arguments(phantom_sets):
    source = phantom_sets["source"]
    with pytest.raises(ValueError, match="targets is empty"):
        R.relatedness_table(source, {})
    with pytest.raises(ValueError, match="threshold"):
        R.relatedness_table(source, {"t": source}, threshold=0)
    with pytest.raises(ValueError, match="alpha"):
        R.relatedness_table(source, {"t": source}, alpha=1.5)
    with pytest.raises(ValueError, match="target 'bad'"):
        R.relatedness_table(source, {"bad": source[0]})


def load_real(folder, size: int = 64) -> np.ndarray:
    return np.stack([read_image(p, size=size) for p in sorted((folder / "images").glob("*.png"))])


def test_real_cxr_and_doppler_are_separated(shared_data):
    source = load_real(shared_data / "shenzhen")
    targets = {"montgomery": load_real(shared_data / "montgomery"), "doppler": load_real(shared_data / "doppler_tte47")}
    table = R.relatedness_table(source, targets, n_permutations=99, source_name="shenzhen")
    assert bool(table.loc["montgomery", "related"]) and not bool(table.loc["doppler", "related"])
    assert table.loc["doppler", "frechet_normalized"] > 3 * table.loc["montgomery", "frechet_normalized"]
    assert table.loc["doppler", "wasserstein"] > 2 * table.loc["montgomery", "wasserstein"]


# ---------------------------------------------------------------------------------- transfer matrix
ALONE = {"seg": 0.80, "cls": 0.70, "quality": 0.60}
# seg gains from cls (+0.05) and loses from quality (-0.10); the others are unaffected by seg
PAIRS = {
    ("seg", "cls"): 0.85, ("cls", "seg"): 0.70,
    ("seg", "quality"): 0.70, ("quality", "seg"): 0.60,
    ("cls", "quality"): 0.72, ("quality", "cls"): 0.55,
}


def test_transfer_matrix_shape_and_signs():
    matrix = R.transfer_matrix(ALONE, PAIRS)
    assert matrix.shape == (3, 3)
    assert list(matrix.index) == list(matrix.columns) == ["seg", "cls", "quality"]
    assert matrix.index.name == "task" and matrix.columns.name == "partner"
    assert np.isnan(np.diag(matrix.to_numpy())).all()
    assert matrix.loc["seg", "cls"] == pytest.approx(0.05)
    assert matrix.loc["seg", "quality"] == pytest.approx(-0.10)
    assert matrix.loc["cls", "quality"] == pytest.approx(0.02)
    assert matrix.loc["quality", "cls"] == pytest.approx(-0.05)


def test_transfer_matrix_flips_sign_when_lower_is_better():
    losses_alone = {"a": 1.0, "b": 2.0}
    losses_pair = {("a", "b"): 0.5, ("b", "a"): 2.5}  # a's loss falls with b (helpful), b's rises (harmful)
    matrix = R.transfer_matrix(losses_alone, losses_pair, higher_is_better=False)
    assert matrix.loc["a", "b"] == pytest.approx(0.5) and matrix.loc["b", "a"] == pytest.approx(-0.5)
    mixed = R.transfer_matrix(losses_alone, losses_pair, higher_is_better={"a": False, "b": True})
    assert mixed.loc["b", "a"] == pytest.approx(0.5)


def test_transfer_matrix_missing_pairs_are_nan_and_bad_keys_raise():
    matrix = R.transfer_matrix(ALONE, {("seg", "cls"): 0.9})
    assert matrix.loc["seg", "cls"] == pytest.approx(0.1) and np.isnan(matrix.loc["cls", "seg"])
    with pytest.raises(ValueError, match="without an alone score"):
        R.transfer_matrix(ALONE, {("seg", "zz"): 0.9})
    with pytest.raises(ValueError, match="with itself"):
        R.transfer_matrix(ALONE, {("seg", "seg"): 0.9})
    with pytest.raises(ValueError, match="not finite"):
        R.transfer_matrix(ALONE, {("seg", "cls"): float("nan")})
    with pytest.raises(ValueError, match="no entry"):
        R.transfer_matrix(ALONE, PAIRS, higher_is_better={"seg": True})


def test_run_pairwise_transfer_with_a_fake_trainer():
    calls = []

    def train_fn(group):
        calls.append(group)
        if len(group) == 1:
            return {group[0]: ALONE[group[0]]}
        first, second = group
        return {first: PAIRS[(first, second)], second: PAIRS[(second, first)], "extra": 0.0}

    result = R.run_pairwise_transfer(["seg", "cls", "quality"], train_fn)
    assert calls == [("seg",), ("cls",), ("quality",), ("seg", "cls"), ("seg", "quality"), ("cls", "quality")]
    assert result.alone == ALONE and result.pairs == PAIRS
    pd.testing.assert_frame_equal(result.matrix, R.transfer_matrix(ALONE, PAIRS))
    assert result.matrix.loc["seg", "cls"] > 0 > result.matrix.loc["seg", "quality"]


def test_run_pairwise_transfer_rejects_bad_trainers_and_tasks():
    with pytest.raises(ValueError, match="at least 2"):
        R.run_pairwise_transfer(["a"], lambda group: {})
    with pytest.raises(ValueError, match="distinct"):
        R.run_pairwise_transfer(["a", "a"], lambda group: {})
    with pytest.raises(ValueError, match="no score for tasks"):
        R.run_pairwise_transfer(["a", "b"], lambda group: {"a": 1.0})
    with pytest.raises(TypeError, match="must return a mapping"):
        R.run_pairwise_transfer(["a", "b"], lambda group: 1.0)


def test_plot_transfer_matrix_writes_an_image_atomically(tmp_path):
    path = tmp_path / "figures" / "transfer.png"
    written = R.plot_transfer_matrix(R.transfer_matrix(ALONE, PAIRS), path)
    assert written == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["transfer.png"]
