"""Classical denoising references for the denoising table: OpenCV non-local means and a Gaussian blur.

Each denoiser maps `(N, H, W, C)` float32 images in [0, 1] to denoised images of the same shape and range,
with one strength parameter (`h` for non-local means, the blur's `sigma` in pixels). `tune_denoiser` picks
the parameter with the best mean PSNR (`tf.image.psnr`) on validation images over a small grid, one value per
noise level, so the references get the same chance as the CDAE (whose training saw the noise levels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["DENOISERS", "DEFAULT_GRIDS", "nl_means", "gaussian_blur", "tune_denoiser"]

#: Grids searched on the validation images (non-local means `h` in 8-bit grey levels; blur sigma in pixels).
DEFAULT_GRIDS = {
    "nl_means": (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0),
    "gaussian_blur": (0.3, 0.5, 0.7, 1.0, 1.5, 2.0),
}


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    return images


def nl_means(images: np.ndarray, h: float, template_window: int = 7, search_window: int = 21) -> np.ndarray:
    """OpenCV non-local means (`cv2.fastNlMeansDenoising`) on each channel of each image.

    The images are quantised to 8 bits (what OpenCV's implementation takes); `h` is in grey levels of 0-255.

    Args:
        images: `(N, H, W, C)` float32 in [0, 1].
        h: filter strength (larger removes more noise and more detail).
        template_window: patch size (OpenCV default 7).
        search_window: search area (OpenCV default 21).
    """
    import cv2

    images = _check(images)
    if h <= 0:
        raise ValueError(f"non-local means strength h must be positive, got {h}")
    bytes_ = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    out = np.empty_like(images)
    for i in range(len(images)):
        for c in range(images.shape[-1]):
            out[i, ..., c] = cv2.fastNlMeansDenoising(np.ascontiguousarray(bytes_[i, ..., c]), None, float(h),
                                                      template_window, search_window)
    return out / np.float32(255.0)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV Gaussian blur (`cv2.GaussianBlur`, kernel size from `sigma`, reflected borders).

    Args:
        images: `(N, H, W, C)` float32 in [0, 1].
        sigma: standard deviation in pixels.
    """
    import cv2

    images = _check(images)
    if sigma <= 0:
        raise ValueError(f"Gaussian blur sigma must be positive, got {sigma}")
    out = np.empty_like(images)
    for i in range(len(images)):
        for c in range(images.shape[-1]):
            out[i, ..., c] = cv2.GaussianBlur(images[i, ..., c], (0, 0), float(sigma))
    return np.clip(out, 0.0, 1.0)


#: Name -> function(images, strength).
DENOISERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {"nl_means": nl_means,
                                                                    "gaussian_blur": gaussian_blur}


def tune_denoiser(name: str, clean: np.ndarray, noisy: np.ndarray,
                  grid: Sequence[float] | None = None) -> tuple[float, dict[float, float]]:
    """The strength in `grid` with the best mean PSNR of `DENOISERS[name](noisy, value)` against `clean`.

    Args:
        name: "nl_means" or "gaussian_blur".
        clean: validation images `(N, H, W, C)` in [0, 1].
        noisy: the same images with the noise of one level.
        grid: values to try; default `DEFAULT_GRIDS[name]`.

    Returns:
        `(best value, {value: validation PSNR})` (ties: the first value of the grid).

    Raises:
        ValueError: an unknown name or an empty grid.
    """
    import tensorflow as tf

    if name not in DENOISERS:
        raise ValueError(f"unknown classical denoiser {name!r}; known: {', '.join(DENOISERS)}")
    grid = tuple(DEFAULT_GRIDS[name] if grid is None else grid)
    if not grid:
        raise ValueError(f"the grid of {name!r} is empty")
    clean = _check(clean)

    def psnr(value: float) -> float:  # mean per-image PSNR, as `urep.metrics.reconstruction_metrics` reports
        return float(tf.reduce_mean(tf.image.psnr(clean, DENOISERS[name](noisy, value), max_val=1.0)))

    scores = {float(v): psnr(v) for v in grid}
    best = max(scores, key=lambda v: (scores[v], -grid.index(v)))
    return best, scores
