"""Tests for urep.data.normalization.MeanNormalizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urep.data import MeanNormalizer

RNG = np.random.default_rng(1)


def test_fit_on_array_subtracts_mean_only_by_default():
    train = RNG.random((6, 8, 8))
    norm = MeanNormalizer().fit(train)
    assert norm.mean == pytest.approx(train.mean())
    assert norm.std == pytest.approx(train.std())
    assert norm.n_images == 6 and norm.n_pixels == 6 * 64
    x = RNG.random((2, 8, 8, 1))
    out = norm.transform(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, x - train.mean(), atol=1e-6)


def test_divide_by_std_gives_zero_mean_unit_std_on_train():
    train = RNG.random((5, 10, 10)) * 0.3 + 0.2
    norm = MeanNormalizer(divide_by_std=True).fit(train)
    out = norm.transform(train)
    assert out.mean() == pytest.approx(0.0, abs=1e-5)
    assert out.std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(norm.inverse_transform(out), train, atol=1e-5)


def test_fit_on_iterable_of_mixed_sizes_equals_pooled_statistics():
    images = [RNG.random((4, 4)), RNG.random((6, 3)), RNG.random((2, 5, 5))]
    norm = MeanNormalizer().fit(iter(images))
    pooled = np.concatenate([image.ravel() for image in images])
    assert norm.mean == pytest.approx(pooled.mean())
    assert norm.std == pytest.approx(pooled.std())
    assert norm.n_images == 4 and norm.n_pixels == pooled.size


def test_constant_images_do_not_divide_by_zero():
    norm = MeanNormalizer(divide_by_std=True, eps=1e-3).fit(np.full((2, 3, 3), 0.4))
    assert norm.std == 0.0 and norm.scale == 1e-3
    assert np.isfinite(norm.transform(np.full((3, 3), 0.5))).all()


def test_transform_works_on_tensors():
    tf = pytest.importorskip("tensorflow")
    norm = MeanNormalizer(divide_by_std=True).fit(RNG.random((3, 4, 4)))
    x = RNG.random((4, 4)).astype(np.float32)
    out = norm.transform(tf.constant(x))
    assert isinstance(out, tf.Tensor)
    np.testing.assert_allclose(out.numpy(), norm.transform(x), atol=1e-6)


def test_round_trip_dict_and_file(tmp_path):
    norm = MeanNormalizer(divide_by_std=True).fit(RNG.random((3, 4, 4)))
    again = MeanNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert (again.mean, again.std, again.divide_by_std) == (norm.mean, norm.std, True)
    path = norm.save(tmp_path / "run" / "normalizer.json")
    loaded = MeanNormalizer.load(path)
    x = RNG.random((4, 4))
    np.testing.assert_array_equal(loaded.transform(x), norm.transform(x))
    assert json.loads(path.read_text())["method"] == "mean_std"
    assert not list(path.parent.glob(".*tmp"))


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        MeanNormalizer().transform(np.zeros(3))
    with pytest.raises(RuntimeError, match="not fitted"):
        MeanNormalizer().to_dict()
    with pytest.raises(ValueError, match="no training pixels"):
        MeanNormalizer().fit([])
    with pytest.raises(ValueError, match="NaN or infinite"):
        MeanNormalizer().fit(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="eps must be positive"):
        MeanNormalizer(eps=0)
    with pytest.raises(ValueError, match=r"lacks \['std'\]"):
        MeanNormalizer.from_dict({"mean": 0.5, "divide_by_std": False})
    with pytest.raises(ValueError, match="mean='a'; expected a finite number"):
        MeanNormalizer.from_dict({"mean": "a", "std": 0.1, "divide_by_std": False})
    with pytest.raises(ValueError, match="format 'other/1'"):
        MeanNormalizer.from_dict({"format": "other/1", "mean": 0.5, "std": 0.1, "divide_by_std": False})


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json not found"):
        MeanNormalizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        MeanNormalizer.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json holds list"):
        MeanNormalizer.load(tmp_path / "list.json")
    (tmp_path / "partial.json").write_text('{"mean": 0.2}')
    with pytest.raises(ValueError, match=r"partial\.json: normalizer record lacks"):
        MeanNormalizer.load(tmp_path / "partial.json")
