"""Figures of a run: training curves and the cost chart (rebuilt from `results.json` by `urep report`), and
the image figures drawn during a run (denoising examples, segmentation overlays).

Figures are drawn on `urep.plotting.new_figure` (an Agg canvas, no pyplot, matplotlib's global backend left
alone so notebooks keep their inline plots); every file is written atomically through `urep.io.atomic_save`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from urep.io import atomic_save
from urep.plotting import new_figure

logger = logging.getLogger(__name__)

__all__ = ["training_curves", "cost_chart", "denoising_examples", "segmentation_overlays", "write_result_figures"]


def _save(fig, path: Path) -> Path:
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None}))
    return path


def _curves(history: dict) -> dict[str, list[float]]:
    """`{series name: values per epoch}` from a model's history (flat or per task)."""
    out: dict[str, list[float]] = {}
    for key, values in history.items():
        if isinstance(values, dict):
            for inner, series in values.items():
                if isinstance(series, list) and inner.endswith("loss"):
                    out[f"{key} {inner}"] = series
        elif isinstance(values, list) and key.endswith("loss"):
            out[key] = values
    return out


def training_curves(results: dict, path: str | os.PathLike) -> Path | None:
    """One panel per task (and the source): loss curves of every method (first fold), train and val.

    Returns:
        The PNG path, or None when no model recorded a history.
    """
    groups: dict[str, list[tuple[str, dict]]] = {}
    for model in results.get("models", []):
        history = model.get("history") or {}
        if not history or model.get("fold", 0) not in (0, None):
            continue
        panel = "source" if model["role"] == "source" else ("denoiser" if model["role"] == "denoiser"
                                                            else model.get("task") or "+".join(model.get("tasks", [])))
        groups.setdefault(panel, []).append((model.get("method") or model["role"], history))
    if not groups:
        return None
    n = len(groups)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (panel, items) in zip(axes.flat, sorted(groups.items()), strict=False):
        for method, history in items:
            for name, series in sorted(_curves(history).items()):
                style = "--" if "val" in name else "-"
                ax.plot(range(1, len(series) + 1), series, style, label=f"{method}: {name}")
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{results['config']['name']}: training curves")
    fig.tight_layout()
    return _save(fig, Path(path))


def cost_chart(results: dict, path: str | os.PathLike) -> Path | None:
    """Bar chart of training minutes and parameters: U-Rep (source + heads) vs the baseline models.

    Returns:
        The PNG path, or None when there is nothing to compare.
    """
    from urep.experiments.report import _cost_method, _head_models, _models, _per_training

    method = _cost_method(results)
    proposed = [("source", _models(results, "source"))]
    baseline = [("denoiser", _models(results, "denoiser"))]
    for task in results["config"]["tasks"]:
        proposed.append((task["name"], _per_training(_head_models(results, method, task["name"])) if method else []))
        baseline.append((task["name"], _per_training(_models(results, "baseline", task["name"]))))
    proposed = [(n, m) for n, m in proposed if m]
    baseline = [(n, m) for n, m in baseline if m]
    if not proposed or not baseline:
        return None
    fig = new_figure(figsize=(11, 3.6))
    ax_t, ax_p = fig.subplots(1, 2)
    for ax, key, scale, label in ((ax_t, "seconds", 60.0, "training minutes"),
                                  (ax_p, "total_params", 1e6, "parameters (millions)")):
        bottom_u = bottom_b = 0.0
        for name, models in proposed:
            value = sum(m[key] for m in {m["id"]: m for m in models}.values()) / scale
            ax.bar("U-Rep", value, bottom=bottom_u, label=name)
            bottom_u += value
        for name, models in baseline:
            value = sum(m[key] for m in models) / scale
            ax.bar("Baseline", value, bottom=bottom_b, label=f"baseline {name}", hatch="//", alpha=0.7)
            bottom_b += value
        ax.set_ylabel(label)
    # One legend beside both panels: inside either axis it covers the bars it describes.
    handles, labels = ax_t.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.suptitle(f"{results['config']['name']}: cost of U-Rep vs separate models")
    fig.tight_layout(rect=(0.0, 0.0, 0.78, 1.0))
    return _save(fig, Path(path))


def denoising_examples(clean: np.ndarray, noisy: dict[str, np.ndarray], denoised: dict[str, np.ndarray],
                       path: str | os.PathLike, titles: tuple[str, str] = ("noisy", "denoised")) -> Path:
    """Rows of examples: clean, then corrupted input / reconstruction per corruption level.

    Args:
        clean: `(N, H, W, C)` clean images in [0, 1].
        noisy: corruption label -> `(N, H, W, C)` corrupted inputs.
        denoised: corruption label -> `(N, H, W, C)` reconstructions.
        path: PNG path.
        titles: column titles of the input and the reconstruction (e.g. "interpolated", "restored" for
            super-resolution).
    """
    levels = list(noisy)
    n = len(clean)
    cols = 1 + 2 * len(levels)
    fig = new_figure(figsize=(1.6 * cols, 1.6 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        panels = [("clean", clean[i])]
        for level in levels:
            panels += [(f"{titles[0]} {level}", noisy[level][i]), (f"{titles[1]} {level}", denoised[level][i])]
        for ax, (title, image) in zip(axes[i], panels, strict=True):
            ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=6)
    fig.tight_layout()
    return _save(fig, Path(path))


def segmentation_overlays(images: np.ndarray, truth: np.ndarray, predicted: np.ndarray, title: str,
                          path: str | os.PathLike) -> Path:
    """Images with the true mask outline (green) and the predicted one (red).

    Args:
        images: `(N, H, W, C)` in [0, 1].
        truth: `(N, H, W, 1)` binary masks.
        predicted: `(N, H, W, 1)` probabilities.
        title: figure title.
        path: PNG path.
    """
    n = len(images)
    fig = new_figure(figsize=(2.2 * n, 2.4))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, image, t, p in zip(axes[0], images, truth, predicted, strict=True):
        ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.contour(t[..., 0], levels=[0.5], colors="lime", linewidths=0.8)
        ax.contour(p[..., 0], levels=[0.5], colors="red", linewidths=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (green: truth, red: prediction)", fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def write_result_figures(results: dict, run_dir: str | os.PathLike) -> list[Path]:
    """The figures that depend only on `results.json`: training curves and the cost chart."""
    if not results["config"].get("figures", True):
        return []
    figures = Path(run_dir) / "figures"
    written = [training_curves(results, figures / "training_curves.png"),
               cost_chart(results, figures / "cost_urep_vs_baseline.png")]
    return [p for p in written if p is not None]
