"""Per-image standardisation: the documented statistics of each option, and bad names/values rejected."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from urep.data.standardize import standardize_image, standardize_images
from urep.experiments.config import ConfigError, load_config


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # a dark, low-contrast image: values crowd into [0.2, 0.4]
    return (0.2 + 0.2 * rng.beta(2, 5, size=(32, 32))).astype(np.float32)


def test_none_is_identity():
    image = _image()
    np.testing.assert_array_equal(standardize_image(image, "none"), image)


def test_zscore_maps_to_mean_half_and_unit_std_in_z_units():
    out = standardize_image(_image(), "zscore", zscore_clip=10.0)   # wide clip: nothing clipped
    z = (out - 0.5) * 2 * 10.0
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1.0) < 1e-4
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_zscore_clips_to_unit_range_and_keeps_constant_images():
    out = standardize_image(_image(), "zscore", zscore_clip=1.0)
    assert out.min() == 0.0 and out.max() == 1.0
    flat = np.full((8, 8), 0.3, np.float32)
    np.testing.assert_array_equal(standardize_image(flat, "zscore"), flat)


def test_histeq_flattens_the_histogram():
    image = _image()
    out = standardize_image(image, "histeq")
    before = np.histogram(image, bins=8, range=(0, 1))[0]
    after = np.histogram(out, bins=8, range=(0, 1))[0]
    # the input uses 2 of 8 bins; after equalization every bin holds about 1/8 of the pixels
    assert (before > 0).sum() <= 3
    assert after.min() > 0.08 * image.size and after.max() < 0.17 * image.size
    assert out.min() == 0.0 and out.max() == 1.0


def test_clahe_raises_local_contrast_and_keeps_the_shape():
    image = _image()[..., None]
    out = standardize_image(image, "clahe", clip_limit=2.0, tile_grid=4)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.std() > 2 * image.std()
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_batch_version_matches_single_images():
    images = np.stack([_image(0), _image(1)])
    out = standardize_images(images, "histeq")
    np.testing.assert_array_equal(out[1], standardize_image(images[1], "histeq"))


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown standardize method 'hist'"):
        standardize_image(_image(), "hist")


def test_config_rejects_a_bad_option_naming_the_key(tmp_path):
    raw = {
        "name": "tiny", "data": {"heads": {"phantom": {"generator": "cxr", "n_patients": 4}}},
        "source": {"data": ["heads"]},
        "tasks": [{"name": "cls", "kind": "classification", "data": "heads", "classes": ["normal", "abnormal"]}],
    }
    path = tmp_path / "exp.yaml"
    for bad, key in (({"standardize": "equalise"}, "preprocessing.standardize"),
                     ({"clahe_tile_grid": 0}, "preprocessing.clahe_tile_grid"),
                     ({"standardise": "histeq"}, "preprocessing")):
        path.write_text(yaml.safe_dump({**raw, "preprocessing": bad}), encoding="utf-8")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path)
    path.write_text(yaml.safe_dump({**raw, "preprocessing": {"standardize": "clahe"}}), encoding="utf-8")
    assert load_config(path).preprocessing.standardize == "clahe"


def test_saved_run_models_read_images_with_the_runs_standardisation(tmp_path):
    """`urep explain` / `recommend` feed saved models images standardised as in training (`config.yaml`)."""
    import cv2

    from urep.data import MeanNormalizer
    from urep.explain.run_models import RunModels, TaskEntry, _configured_standardize

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.round(_image() * 255).astype(np.uint8))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "r", "preprocessing": {"standardize": "histeq"}}), encoding="utf-8")
    options = _configured_standardize(config)
    assert options["method"] == "histeq"
    entry = TaskEntry(name="t", path="t.keras", kind="classification", image_size=(32, 32), classes=("a", "b"))
    norm = MeanNormalizer().fit(np.zeros((1, 4, 4)))
    raw, batch = RunModels(tmp_path, {"t": entry}, norm, standardize=options).read_images([path], "t")
    plain, _ = RunModels(tmp_path, {"t": entry}, norm).read_images([path], "t")
    np.testing.assert_allclose(raw[0], standardize_image(plain[0], "histeq"), atol=1e-6)
    assert raw.max() == 1.0 and plain.max() < 0.5
    config.write_text(yaml.safe_dump({"name": "r"}), encoding="utf-8")
    assert _configured_standardize(config) is None
