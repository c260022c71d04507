"""The preprint's super-resolution representation as an experiment source (`source.kind: super_resolution`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urep.data import MeanNormalizer
from urep.experiments.config import load_any
from urep.experiments.pipeline import UrepPipeline
from urep.experiments.scale import shrink


@pytest.fixture(scope="module")
def config():
    return shrink(load_any("cxr_super_resolution_phantom"), patients=8, folds=0)


def test_degradation_removes_detail_finer_than_the_scale_and_keeps_flat_regions(config, tmp_path):
    pipeline = UrepPipeline(config, tmp_path)
    size = config.image_size
    flat = np.full((1, *size, 1), 0.3, np.float32)
    checker = ((np.indices(size).sum(axis=0) % 2).astype(np.float32))[None, ..., None]  # 1-pixel checkerboard
    low = pipeline._degraded(np.concatenate([flat, checker]))
    assert low.shape == (2, *size, 1)
    np.testing.assert_allclose(low[0], 0.3, atol=1e-5)
    # x2 area averaging turns a 1-pixel checkerboard into its mean everywhere
    np.testing.assert_allclose(low[1], 0.5, atol=1e-5)


def test_a_zero_residual_network_scores_exactly_the_interpolated_input(config, tmp_path):
    pipeline = UrepPipeline(config, tmp_path)
    pipeline.load_data()
    model = pipeline.build_source_model()
    assert model.get_layer("encoder_out").output.shape[1:3] == tuple(config.image_size)
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 0.9, (6, *config.image_size, 1)).astype(np.float32)
    pipeline.normalizer = MeanNormalizer().fit(clean)
    residual = model.get_layer("residual")
    kernel, bias = residual.get_weights()
    residual.set_weights([np.zeros_like(kernel), np.full_like(bias, pipeline.normalizer.mean)])
    low = pipeline._degraded(clean)
    [row] = pipeline._evaluate_super_resolution(model, clean, low)
    assert row["scale"] == 2 and row["n"] == 6
    assert row["psnr"] == pytest.approx(row["interpolated_psnr"], abs=1e-3)
    assert row["ssim"] == pytest.approx(row["interpolated_ssim"], abs=1e-4)
    assert 5.0 < row["interpolated_psnr"] < 30.0  # uniform noise loses a lot to x2 down-sampling
    assert (tmp_path / "figures" / "super_resolution_examples_source.png").is_file()


def test_super_resolution_source_runs_and_its_encoder_feeds_the_heads(config, tmp_path):
    from urep.experiments.runner import run_experiment

    results = run_experiment(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["source"] == {"kind": "super_resolution", "scale": 2}
    [row] = saved["super_resolution"]
    assert row["n"] == saved["data"]["source"]["test"] > 0
    assert np.isfinite([row["psnr"], row["ssim"], row["interpolated_psnr"]]).all()
    assert "denoising" not in saved or saved["denoising"] == []
    table = (tmp_path / "run" / "tables" / "super_resolution.csv").read_text()
    assert "x2" in table
    for task in config.tasks:
        assert set(results["tasks"][task.name]["methods"]) == set(config.strategies) | {"baseline"}
    import keras

    models = tmp_path / "run" / "models"
    source = keras.models.load_model(models / "source" / "source.keras")
    segmentation = keras.models.load_model(models / "independent" / "lung_segmentation.keras")
    # independent strategy: the head's encoder is the trained source's, frozen
    np.testing.assert_array_equal(source.get_layer("conv1").get_weights()[0],
                                  _find(segmentation, "conv1").get_weights()[0])


def _find(model, name):
    """A layer by name anywhere in a nested model."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            try:
                return _find(layer, name)
            except KeyError:
                pass
    raise KeyError(name)
