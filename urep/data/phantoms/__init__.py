"""The embedded synthetic default: chest X-ray and spectral Doppler phantoms written in the `folder` layout.

`make_cxr_phantoms` / `make_doppler_phantoms` write `OUT_DIR/images/NAME.png` (8-bit grayscale),
`masks/NAME.png` ({0, 255}: lung fields or the spectral envelope), `lesions/NAME.png` (CXR only) and
`manifest.csv` (`file, mask, label, patient, ...`, written last and atomically: a folder with a manifest is
complete). Output is a pure function of the arguments. Sample grids: ``python -m urep.data.phantoms OUT_DIR``.
What is drawn and how hard the tasks are: docs/design.md ("Module notes") and docs/results.md.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from urep.data.phantoms.cxr import (
    CXR_LABELS,
    CXRAnatomy,
    CXRImage,
    render_cxr,
    render_cxr_view,
    sample_cxr_anatomy,
)
from urep.data.phantoms.doppler import (
    DOPPLER_FLOWS,
    DOPPLER_QUALITIES,
    DopplerImage,
    DopplerPatient,
    render_doppler,
    render_doppler_image,
    sample_doppler_patient,
)
from urep.data.phantoms.grid import write_sample_grids
from urep.io import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "CXR_LABELS",
    "CXRAnatomy",
    "CXRImage",
    "DOPPLER_FLOWS",
    "DOPPLER_QUALITIES",
    "DopplerImage",
    "DopplerPatient",
    "make_cxr_phantoms",
    "make_doppler_phantoms",
    "render_cxr",
    "render_cxr_view",
    "render_doppler",
    "render_doppler_image",
    "sample_cxr_anatomy",
    "sample_doppler_patient",
    "write_sample_grids",
]

_SUBFOLDERS = ("images", "masks", "lesions")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_choices(name: str, values: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    values = tuple(values)
    unknown = [v for v in values if v not in known]
    if not values or unknown or len(set(values)) != len(values):
        raise ValueError(f"{name} must be distinct values from {tuple(known)}, got {values!r}")
    return values


def _prepare(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Create the output folder; refuse to mix with an earlier phantom set unless `overwrite`."""
    root = Path(out_dir)
    existing = [root / name for name in (*_SUBFOLDERS, "manifest.csv") if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{root} already holds a data set ({', '.join(p.name for p in existing)}); pass overwrite=True "
            "to replace it"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for name in _SUBFOLDERS[:2]:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def _to_png(array: np.ndarray, scale: float) -> bytes:
    ok, encoded = cv2.imencode(".png", np.clip(np.round(array * scale), 0, 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG")
    return encoded.tobytes()


def _balanced(values: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """`count` values in proportions as equal as possible, shuffled."""
    repeated = [values[i % len(values)] for i in range(count)]
    return [repeated[i] for i in rng.permutation(count)]


def _write_manifest(root: Path, rows: list[dict]) -> Path:
    path = atomic_write_text(root / "manifest.csv", pd.DataFrame(rows).to_csv(index=False))
    logger.info("wrote %d phantom images and %s", len(rows), path)
    return root


def make_cxr_phantoms(
    out_dir: str | os.PathLike,
    n_patients: int = 40,
    views_per_patient: int = 2,
    size: int = 256,
    seed: int = 0,
    labels: Sequence[str] = CXR_LABELS,
    overwrite: bool = False,
) -> Path:
    """Write chest X-ray phantoms in the `folder` layout.

    Args:
        out_dir: output folder (created).
        n_patients: number of patients; labels are split among them as evenly as possible.
        views_per_patient: images per patient (same anatomy and finding; small pose and exposure changes).
        size: image side in pixels, 32 to 512.
        seed: the only source of randomness; the same arguments give byte-identical files.
        labels: the labels to draw from `CXR_LABELS` (e.g. ``("normal", "abnormal")`` for the TB task).
        overwrite: replace an earlier data set in `out_dir` (its `images/`, `masks/`, `lesions/` and
            `manifest.csv`; nothing else is touched).

    Returns:
        The data set root (`out_dir`). Its `manifest.csv` has the columns ``file, mask, lesion, label,
        patient, view, lesion_fraction`` (the lesion's share of the lung pixels).

    Raises:
        ValueError: bad counts, size or labels.
        FileExistsError: `out_dir` already holds a data set and `overwrite` is false.
    """
    n_patients = _check_count("n_patients", n_patients)
    views_per_patient = _check_count("views_per_patient", views_per_patient)
    labels = _check_choices("labels", labels, CXR_LABELS)
    root = _prepare(out_dir, overwrite)
    (root / "lesions").mkdir(exist_ok=True)
    patient_labels = _balanced(labels, n_patients, _rng(seed))
    rows = []
    for p, label in enumerate(patient_labels):
        anatomy = sample_cxr_anatomy(_rng(seed, p, 0), label)
        patient = f"cxr{p:04d}"
        for v in range(views_per_patient):
            view = render_cxr_view(anatomy, size, _rng(seed, p, v + 1))
            name = f"{patient}_v{v}.png"
            (root / "images" / name).write_bytes(_to_png(view.image, 255.0))
            (root / "masks" / name).write_bytes(_to_png(view.lung_mask, 255.0))
            (root / "lesions" / name).write_bytes(_to_png(view.lesion_mask, 255.0))
            fraction = view.lesion_mask.sum() / max(int(view.lung_mask.sum()), 1)
            rows.append(
                {
                    "file": name,
                    "mask": name,
                    "lesion": name,
                    "label": label,
                    "patient": patient,
                    "view": v,
                    "lesion_fraction": round(float(fraction), 4),
                }
            )
    return _write_manifest(root, rows)


def make_doppler_phantoms(
    out_dir: str | os.PathLike,
    n_patients: int = 30,
    images_per_patient: int = 6,
    size: int = 256,
    seed: int = 0,
    flows: Sequence[str] = DOPPLER_FLOWS,
    qualities: Sequence[str] = DOPPLER_QUALITIES,
    quality_labeled_fraction: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Write spectral Doppler phantoms in the `folder` layout.

    Args:
        out_dir: output folder (created).
        n_patients: number of patients.
        images_per_patient: images per patient; every (flow, quality) pair is used as evenly as possible
            over the whole set, so one patient can have several flow types (as in the papers' data).
        size: image side in pixels, 32 to 512.
        seed: the only source of randomness; the same arguments give byte-identical files.
        flows: flow types drawn from `DOPPLER_FLOWS`.
        qualities: qualities drawn from `DOPPLER_QUALITIES`.
        quality_labeled_fraction: share of images whose quality is written to the manifest; the others get
            an empty ``quality`` (the papers had quality labels for 814 of 2,444 images). The image is
            rendered with its quality either way.
        overwrite: replace an earlier data set in `out_dir`.

    Returns:
        The data set root (`out_dir`). Its `manifest.csv` has the columns ``file, mask, label, flow,
        quality, patient, problems`` (``label`` is the flow type; ``problems`` lists the low-quality defects
        drawn, ``;``-separated).

    Raises:
        ValueError: bad counts, size, flows, qualities or fraction.
        FileExistsError: `out_dir` already holds a data set and `overwrite` is false.
    """
    n_patients = _check_count("n_patients", n_patients)
    images_per_patient = _check_count("images_per_patient", images_per_patient)
    flows = _check_choices("flows", flows, DOPPLER_FLOWS)
    qualities = _check_choices("qualities", qualities, DOPPLER_QUALITIES)
    if not 0.0 <= quality_labeled_fraction <= 1.0:
        raise ValueError(f"quality_labeled_fraction must be in [0, 1], got {quality_labeled_fraction!r}")
    root = _prepare(out_dir, overwrite)
    total = n_patients * images_per_patient
    pairs = [f"{f}|{q}" for f in flows for q in qualities]
    assigned = _balanced(pairs, total, _rng(seed))
    labeled = _rng(seed, 1).permutation(total) < round(quality_labeled_fraction * total)
    rows = []
    for p in range(n_patients):
        physiology = sample_doppler_patient(_rng(seed, p, 0))
        patient = f"dop{p:04d}"
        for i in range(images_per_patient):
            index = p * images_per_patient + i
            flow, quality = assigned[index].split("|")
            result = render_doppler_image(physiology, size, flow, quality, _rng(seed, p, i + 1))
            name = f"{patient}_{i:02d}.png"
            (root / "images" / name).write_bytes(_to_png(result.image, 255.0))
            (root / "masks" / name).write_bytes(_to_png(result.envelope_mask, 255.0))
            rows.append(
                {
                    "file": name,
                    "mask": name,
                    "label": flow,
                    "flow": flow,
                    "quality": quality if labeled[index] else "",
                    "patient": patient,
                    "problems": ";".join(result.problems),
                }
            )
    return _write_manifest(root, rows)
