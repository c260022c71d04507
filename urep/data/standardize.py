"""Per-image intensity standardisation across sites (OpenCV), applied before the mean normalization.

`standardize_image` maps one image in [0, 1] to [0, 1], each channel alone: `none` (the papers' reading),
`zscore` (per-image z-score clipped to `[-zscore_clip, zscore_clip]`, mapped by `z / (2 * zscore_clip) + 0.5`;
a constant image is returned unchanged), `histeq` (`cv2.equalizeHist`, 256 levels) or `clahe`
(`cv2.createCLAHE`, `clip_limit`, `tile_grid` x `tile_grid` tiles). Measurements: docs/real_data.md.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["STANDARDIZE_METHODS", "standardize_image", "standardize_images"]

STANDARDIZE_METHODS = ("none", "zscore", "histeq", "clahe")


def _check(method: str, clip_limit: float, tile_grid: int, zscore_clip: float) -> None:
    if method not in STANDARDIZE_METHODS:
        raise ValueError(f"unknown standardize method {method!r}; expected one of {STANDARDIZE_METHODS}")
    if not clip_limit > 0:
        raise ValueError(f"clip_limit must be positive, got {clip_limit!r}")
    if isinstance(tile_grid, bool) or not isinstance(tile_grid, (int, np.integer)) or tile_grid < 1:
        raise ValueError(f"tile_grid must be an integer >= 1, got {tile_grid!r}")
    if not zscore_clip > 0:
        raise ValueError(f"zscore_clip must be positive, got {zscore_clip!r}")


def _channel(values: np.ndarray, method: str, clip_limit: float, tile_grid: int, zscore_clip: float) -> np.ndarray:
    if method == "zscore":
        std = float(np.asarray(values, np.float64).std())
        if std < 1e-6:  # constant (up to rounding): nothing to standardise
            return values
        z = np.clip((values - float(values.mean())) / std, -zscore_clip, zscore_clip)
        return z / (2.0 * zscore_clip) + 0.5
    levels = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if method == "histeq":
        out = cv2.equalizeHist(levels)
    else:
        out = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid))).apply(levels)
    return out.astype(np.float32) / 255.0


def standardize_image(image: np.ndarray, method: str = "none", clip_limit: float = 2.0, tile_grid: int = 8,
                      zscore_clip: float = 3.0) -> np.ndarray:
    """Standardise one image (see the module docstring).

    Args:
        image: `(H, W)` or `(H, W, C)` values in [0, 1].
        method: one of `STANDARDIZE_METHODS`.
        clip_limit: CLAHE contrast limit (OpenCV's default 40 is close to plain equalization; 2 is usual).
        tile_grid: CLAHE tiles per side.
        zscore_clip: z-scores are clipped to +- this before the map to [0, 1].

    Returns:
        float32 array of the same shape in [0, 1].

    Raises:
        ValueError: an unknown method or a bad parameter.
    """
    _check(method, clip_limit, tile_grid, zscore_clip)
    image = np.asarray(image, dtype=np.float32)
    if method == "none":
        return image
    if image.ndim == 2:
        return _channel(image, method, clip_limit, tile_grid, zscore_clip).astype(np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {image.shape}")
    channels = [_channel(image[..., c], method, clip_limit, tile_grid, zscore_clip) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1).astype(np.float32)


def standardize_images(images: np.ndarray, method: str = "none", **options) -> np.ndarray:
    """`standardize_image` on every image of `(N, H, W)` or `(N, H, W, C)` (a new array; `none` returns the input)."""
    _check(method, options.get("clip_limit", 2.0), options.get("tile_grid", 8), options.get("zscore_clip", 3.0))
    if method == "none":
        return images
    return np.stack([standardize_image(image, method, **options) for image in images]).astype(np.float32)
