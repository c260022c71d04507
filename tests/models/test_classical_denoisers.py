"""Classical denoising references: OpenCV non-local means and Gaussian blur, tuned on validation PSNR."""

from __future__ import annotations

import numpy as np
import pytest

from urep.data.noise import add_noise
from urep.metrics import reconstruction_metrics
from urep.models.classical_denoisers import gaussian_blur, nl_means, tune_denoiser


def _smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random images (a few Gaussian blobs on a ramp) in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 1), np.float32)
    for i in range(n):
        image = 0.3 + 0.2 * xx
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.08, 0.2)]
            image = image + 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i, ..., 0] = np.clip(image, 0, 1)
    return out


@pytest.mark.parametrize("name", ["nl_means", "gaussian_blur"])
def test_tuning_picks_the_best_validation_psnr_and_beats_the_noisy_input(name):
    clean_val, clean_test = _smooth_images(6, seed=1), _smooth_images(6, seed=2)
    noisy_val, noisy_test = add_noise(clean_val, "gaussian:0.1", 0), add_noise(clean_test, "gaussian:0.1", 1)
    grid = (1.0, 10.0, 30.0) if name == "nl_means" else (0.3, 1.0, 2.0)
    best, scores = tune_denoiser(name, clean_val, noisy_val, grid)
    assert set(scores) == set(grid)
    assert scores[best] == max(scores.values())
    assert len(set(scores.values())) == 3  # the grid values differ, so the choice is a real one
    denoise = nl_means if name == "nl_means" else gaussian_blur
    denoised = denoise(noisy_test, best)
    assert denoised.shape == noisy_test.shape and 0.0 <= denoised.min() and denoised.max() <= 1.0
    gain = reconstruction_metrics(clean_test, denoised)["psnr"] - reconstruction_metrics(clean_test, noisy_test)["psnr"]
    assert gain > 3.0


def test_bad_arguments_are_named():
    images = _smooth_images(1)
    with pytest.raises(ValueError, match="unknown classical denoiser 'median'"):
        tune_denoiser("median", images, images)
    with pytest.raises(ValueError, match="sigma must be positive, got 0"):
        gaussian_blur(images, 0)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, C\)"):
        nl_means(images[0], 5.0)
