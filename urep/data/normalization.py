"""Mean normalization, fitted on the training split only and stored with the run.

The papers say "mean normalization" without defining it. Our choice: one scalar mean over every pixel of
every training image (after reading into `[0, 1]` and resizing), subtracted from each input; dividing by the
scalar standard deviation as well is an option (`divide_by_std=True`), off by default so that the default is
the plain reading of the papers' words. One scalar (rather than a mean image) keeps the normalizer valid at
any image size and for any crop or augmentation. Reconstruction targets (denoising) stay in `[0, 1]`; only
network inputs are normalized, and `inverse_transform` undoes it for display.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from urep.io import atomic_write_json

FORMAT = "urep.MeanNormalizer/1"


class MeanNormalizer:
    """Subtract the training-split mean (and optionally divide by its standard deviation).

    Args:
        divide_by_std: also divide by the training pixels' standard deviation (z-scoring). Default `False`:
            the papers' "mean normalization" read as mean subtraction only.
        eps: floor for the standard deviation so that a constant training set cannot divide by zero.

    Example:
        >>> norm = MeanNormalizer().fit(train_images)       # (N, H, W) or an iterable of (H, W) arrays
        >>> x = norm.transform(batch)                         # same shape, float32
        >>> norm.save(run_dir / "normalizer.json")
    """

    def __init__(self, divide_by_std: bool = False, eps: float = 1e-6) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.divide_by_std = bool(divide_by_std)
        self.eps = float(eps)
        self.mean: float | None = None
        self.std: float | None = None
        self.n_images = 0
        self.n_pixels = 0

    @property
    def fitted(self) -> bool:
        """Whether `fit` (or `from_dict`/`load`) has set the statistics."""
        return self.mean is not None

    def fit(self, images: np.ndarray | Iterable[np.ndarray]) -> MeanNormalizer:
        """Compute the statistics from the training split (and nothing else).

        Args:
            images: training images in `[0, 1]`: one array, or an iterable of arrays (any sizes), e.g. a
                generator that reads files one at a time. Each array is one image `(H, W)` or a batch
                `(N, H, W)` / `(N, H, W, C)`; the counts only feed `n_images`, the statistics use all pixels.

        Returns:
            `self`.

        Raises:
            ValueError: no pixels were given, or the values hold NaN/inf.
        """
        total = 0.0
        total_sq = 0.0
        count = 0
        n_images = 0
        chunks = [images] if isinstance(images, np.ndarray) else images
        for chunk in chunks:
            values = np.asarray(chunk, dtype=np.float64)
            if values.size == 0:
                continue
            if not np.isfinite(values).all():
                raise ValueError("cannot fit MeanNormalizer: the images hold NaN or infinite values")
            total += float(values.sum())
            total_sq += float(np.square(values).sum())
            count += values.size
            n_images += 1 if values.ndim <= 2 else values.shape[0]
        if count == 0:
            raise ValueError("cannot fit MeanNormalizer: no training pixels were given")
        mean = total / count
        variance = max(total_sq / count - mean * mean, 0.0)
        self.mean = mean
        self.std = math.sqrt(variance)
        self.n_images = n_images
        self.n_pixels = count
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("MeanNormalizer is not fitted; call fit(train_images) or load(path) first")

    @property
    def scale(self) -> float:
        """The divisor applied after subtracting the mean (1 unless `divide_by_std`)."""
        self._check_fitted()
        return max(self.std, self.eps) if self.divide_by_std else 1.0

    def transform(self, x: Any) -> Any:
        """Normalize images: `(x - mean) / scale`.

        Args:
            x: array or tensor of any shape with values in `[0, 1]` (NumPy arrays come back as float32; a
                TensorFlow tensor stays a tensor, so this works inside `tf.data`).

        Returns:
            The normalized values, same shape.

        Raises:
            RuntimeError: the normalizer is not fitted.
        """
        self._check_fitted()
        if isinstance(x, (np.ndarray, list, tuple, float, int)):
            return ((np.asarray(x, dtype=np.float32) - np.float32(self.mean)) / np.float32(self.scale)).astype(
                np.float32
            )
        return (x - self.mean) / self.scale

    def inverse_transform(self, x: Any) -> Any:
        """Undo `transform`: `x * scale + mean` (same types as `transform`)."""
        self._check_fitted()
        if isinstance(x, (np.ndarray, list, tuple, float, int)):
            return (np.asarray(x, dtype=np.float32) * np.float32(self.scale) + np.float32(self.mean)).astype(
                np.float32
            )
        return x * self.scale + self.mean

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the settings and statistics (what `normalizer.json` holds)."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "method": "mean" if not self.divide_by_std else "mean_std",
            "divide_by_std": self.divide_by_std,
            "mean": self.mean,
            "std": self.std,
            "eps": self.eps,
            "n_images": self.n_images,
            "n_pixels": self.n_pixels,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> MeanNormalizer:
        """Rebuild a fitted normalizer from `to_dict()` output.

        Raises:
            ValueError: a required key is missing or a value is not a finite number.
        """
        missing = [key for key in ("mean", "std", "divide_by_std") if key not in record]
        if missing:
            raise ValueError(f"normalizer record lacks {missing}; expected the keys of MeanNormalizer.to_dict()")
        if record.get("format", FORMAT) != FORMAT:
            raise ValueError(f"normalizer record has format {record['format']!r}, expected {FORMAT!r}")
        norm = cls(divide_by_std=bool(record["divide_by_std"]), eps=float(record.get("eps", 1e-6)))
        for key in ("mean", "std"):
            value = record[key]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"normalizer record has {key}={value!r}; expected a finite number")
        if record["std"] < 0:
            raise ValueError(f"normalizer record has std={record['std']!r}; expected >= 0")
        norm.mean = float(record["mean"])
        norm.std = float(record["std"])
        norm.n_images = int(record.get("n_images", 0))
        norm.n_pixels = int(record.get("n_pixels", 0))
        return norm

    def save(self, path: str | os.PathLike) -> Path:
        """Write `to_dict()` atomically as JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MeanNormalizer:
        """Read a normalizer written by `save`.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not valid JSON or not a normalizer record (the path is named).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"normalizer file {path} not found")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"normalizer file {path} is not valid JSON: {err}") from err
        if not isinstance(record, dict):
            raise ValueError(f"normalizer file {path} holds {type(record).__name__}, expected an object")
        try:
            return cls.from_dict(record)
        except ValueError as err:
            raise ValueError(f"normalizer file {path}: {err}") from err

    def __repr__(self) -> str:
        stats = f"mean={self.mean:.6g}, std={self.std:.6g}" if self.fitted else "not fitted"
        return f"MeanNormalizer(divide_by_std={self.divide_by_std}, {stats})"
