"""Sample grids of the phantoms, for a person to judge them at a glance.

`write_sample_grids(out_dir)` writes two PNG figures: `cxr_phantoms.png` (one row per label, the lung mask
outlined in green and the lesion in red on the right half of each row) and `doppler_phantoms.png` (one row
per flow type and quality, the envelope mask outlined on the right half). Run it from the shell with
``python -m urep.data.phantoms OUT_DIR``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from urep.data.phantoms.cxr import CXR_LABELS, render_cxr_view, sample_cxr_anatomy
from urep.data.phantoms.doppler import (
    DOPPLER_FLOWS,
    DOPPLER_QUALITIES,
    render_doppler_image,
    sample_doppler_patient,
)
from urep.io import atomic_save
from urep.plotting import new_figure


def _figure(
    rows: list[tuple[str, list[tuple[np.ndarray, list[tuple[np.ndarray, str]]]]]], title: str, path: Path
) -> Path:
    n_cols = max(len(cells) for _, cells in rows)
    fig = new_figure(figsize=(2.2 * n_cols, 2.3 * len(rows)))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (name, cells) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            image, outlines = cells[c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for mask, colour in outlines:
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)
        axes[r, 0].set_ylabel(name, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110))


def write_sample_grids(
    out_dir: str | os.PathLike, size: int = 256, seed: int = 0, per_row: int = 6
) -> list[Path]:
    """Write the CXR and Doppler sample grids as PNG figures.

    Args:
        out_dir: folder for the figures (created).
        size: phantom side in pixels (32 to 512).
        seed: random seed of the examples.
        per_row: examples per row; the second half of each row shows the masks outlined.

    Returns:
        The paths of ``cxr_phantoms.png`` and ``doppler_phantoms.png``.
    """
    out = Path(out_dir)
    show_from = per_row // 2
    cxr_rows = []
    for li, label in enumerate(CXR_LABELS):
        cells = []
        for i in range(per_row):
            rng = np.random.default_rng(np.random.SeedSequence([seed, li, i]))
            view = render_cxr_view(sample_cxr_anatomy(rng, label), size, rng)
            outlines = [(view.lung_mask, "lime"), (view.lesion_mask, "red")] if i >= show_from else []
            cells.append((view.image, outlines))
        cxr_rows.append((label, cells))
    doppler_rows = []
    for fi, flow in enumerate(DOPPLER_FLOWS):
        for qi, quality in enumerate(DOPPLER_QUALITIES):
            cells = []
            for i in range(per_row):
                rng = np.random.default_rng(np.random.SeedSequence([seed, 100 + fi, qi, i]))
                result = render_doppler_image(sample_doppler_patient(rng), size, flow, quality, rng)
                outlines = [(result.envelope_mask, "lime")] if i >= show_from else []
                cells.append((result.image, outlines))
            doppler_rows.append((f"{flow} / {quality}", cells))
    return [
        _figure(
            cxr_rows,
            f"Chest X-ray phantoms ({size}x{size}; right half: lung mask green, lesion red)",
            out / "cxr_phantoms.png",
        ),
        _figure(
            doppler_rows,
            f"Spectral Doppler phantoms ({size}x{size}; right half: envelope mask)",
            out / "doppler_phantoms.png",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m urep.data.phantoms OUT_DIR [--size N] [--seed S]``."""
    parser = argparse.ArgumentParser(description="Write sample grids of the CXR and Doppler phantoms.")
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in write_sample_grids(args.out_dir, size=args.size, seed=args.seed):
        print(path)
    return 0
