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
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["training_curves", "cost_chart", "denoising_examples", "gradcam_figure", "segmentation_overlays",
           "write_result_figures"]


def _save(fig, path: Path) -> Path:
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None}))
    return path


def _curves(history: dict) -> dict[str, list[float]]:
    """`{"loss" | "val_loss" (prefixed by the task for per-task histories): values per epoch}` of a history.

    Only the training and validation loss are drawn; combined losses (`joint_loss`, weighted sums) live on a
    different scale and stay in TensorBoard.
    """
    out: dict[str, list[float]] = {}
    for key, values in history.items():
        if isinstance(values, dict):
            for inner, series in values.items():
                if isinstance(series, list) and inner in ("loss", "val_loss"):
                    out[f"{key} {inner}"] = series
        elif isinstance(values, list) and key in ("loss", "val_loss"):
            out[key] = values
    return out


def _data_names(results: dict) -> str:
    sources = list((results.get("data") or {}).get("sources", {}))
    return ", ".join(sources) if sources else "the run's data"


def training_curves(results: dict, path: str | os.PathLike) -> Path | None:
    """One panel per task (and the source): training (solid) and validation (dashed) loss of each method,
    first fold, one colour per method, the legend outside the axes.

    The baseline denoiser's panel is left out when its curves equal the source's (the same training).

    Returns:
        The PNG path, or None when no model recorded a history.
    """
    from matplotlib.ticker import MaxNLocator

    groups: dict[str, list[tuple[str, dict]]] = {}
    folds = int((results["config"].get("cross_validation") or {}).get("folds") or 0)
    for model in results.get("models", []):
        history = model.get("history") or {}
        if not history or model.get("fold", 0) not in (0, None):
            continue
        panel = "source" if model["role"] == "source" else ("baseline denoiser" if model["role"] == "denoiser"
                                                            else model.get("task") or "+".join(model.get("tasks", [])))
        groups.setdefault(panel, []).append((model.get("method") or model["role"], history))
    if "baseline denoiser" in groups and "source" in groups and [
            _curves(h) for _, h in groups["baseline denoiser"]] == [_curves(h) for _, h in groups["source"]]:
        del groups["baseline denoiser"]
    groups = {k: v for k, v in groups.items() if any(_curves(h) for _, h in v)}
    if not groups:
        return None
    n = len(groups)
    fig = new_figure(figsize=(7.5, 2.6 * n))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    colours = {}
    for ax, (panel, items) in zip(axes, sorted(groups.items()), strict=True):
        longest = 0
        for method, history in items:
            colour = colours.setdefault(method, f"C{len(colours) % 10}")
            for name, series in sorted(_curves(history).items()):
                val = name.endswith("val_loss")
                task = name.rsplit(" ", 1)[0] if " " in name else ""
                label = f"{method}{' ' + task if task and task != panel else ''} {'val' if val else 'train'}"
                ax.plot(range(1, len(series) + 1), series, "--" if val else "-", color=colour, label=label,
                        marker="o" if len(series) < 3 else None, markersize=4,
                        markerfacecolor="none" if val else colour)
                longest = max(longest, len(series))
        ax.set_title(panel, fontsize=9)
        if longest <= 10:
            ax.set_xticks(range(1, longest + 1))
            ax.set_xlim(0.5, longest + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (task's own)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fold = f"fold 1 of {folds}" if folds > 1 else "single train/validation split"
    fig.suptitle(f"{results['config']['name']}: training (solid, filled) and validation (dashed, open) loss\n"
                 f"data: {_data_names(results)}; {fold}", fontsize=9)
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
    ratios = []
    for ax in (ax_t, ax_p):  # stacked bar totals: U-Rep at x=0, the baseline at x=1
        heights = [sum(p.get_height() for p in ax.patches if p.get_x() < 0.5),
                   sum(p.get_height() for p in ax.patches if p.get_x() >= 0.5)]
        ratios.append(heights[1] / heights[0] if heights[0] > 0 else float("nan"))
    paper = _paper_cost_ratio(results)
    for ax, ratio, paper_ratio in zip((ax_t, ax_p), ratios, paper[:2] if paper else (None, None), strict=True):
        text = f"baseline / U-Rep: {ratio:.2f}x here"
        if paper_ratio is not None:
            text += f"\n{paper_ratio:.2f}x in the paper ({paper[2]})"
        ax.set_title(text, fontsize=8)
    fig.suptitle(f"{results['config']['name']}: cost of U-Rep (shared source + heads) vs separate models "
                 f"(data: {_data_names(results)})", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 0.78, 1.0))
    return _save(fig, Path(path))


def _paper_cost_ratio(results: dict) -> tuple[float, float, str] | None:
    """(baseline/U-Rep minutes, baseline/U-Rep parameters, citation) from the run's paper cost table."""
    from urep.experiments.paper_numbers import PAPER_TABLES, paper_value

    for key in results["config"].get("paper_tables", []):
        table = PAPER_TABLES.get(key)
        if table is None or table.kind != "cost":
            continue
        values = [paper_value(key, m, "total", metric) for metric in ("minutes", "params")
                  for m in ("baseline", "proposed")]
        if None not in values and values[1] and values[3]:
            return values[0] / values[1], values[2] / values[3], table.citation
    return None


def denoising_examples(clean: np.ndarray, noisy: dict[str, np.ndarray], denoised: dict[str, np.ndarray],
                       path: str | os.PathLike, titles: tuple[str, str] = ("noisy", "denoised"),
                       title: str | None = None) -> Path:
    """Rows of examples: clean, then corrupted input / reconstruction per corruption level, each panel with
    its PSNR against the clean image (dB, `tf.image.psnr`).

    Args:
        clean: `(N, H, W, C)` clean images in [0, 1].
        noisy: corruption label -> `(N, H, W, C)` corrupted inputs.
        denoised: corruption label -> `(N, H, W, C)` reconstructions.
        path: PNG path.
        titles: column titles of the input and the reconstruction (e.g. "interpolated", "restored" for
            super-resolution).
        title: figure title (what and on which data); default names the columns.
    """
    import tensorflow as tf

    def psnr(image: np.ndarray, reference: np.ndarray) -> float:
        return float(tf.image.psnr(np.clip(image, 0, 1).astype(np.float32), reference.astype(np.float32),
                                   max_val=1.0).numpy())

    levels = list(noisy)
    n = len(clean)
    cols = 1 + 2 * len(levels)
    fig = new_figure(figsize=(1.9 * cols, 2.0 * n + 0.6))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        panels = [("clean", clean[i], None)]
        for level in levels:
            panels += [(f"{titles[0]} {level}", noisy[level][i], psnr(noisy[level][i], clean[i])),
                       (f"{titles[1]} {level}", denoised[level][i], psnr(denoised[level][i], clean[i]))]
        for ax, (name, image, value) in zip(axes[i], panels, strict=True):
            ax.imshow(np.clip(image[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            label = name if i == 0 else ""
            if value is not None:
                label = f"{label}\nPSNR {value:.1f} dB" if label else f"PSNR {value:.1f} dB"
            ax.set_title(label, fontsize=7)
    fig.suptitle(title or f"Test images: clean, {titles[0]} and {titles[1]} (PSNR against the clean image)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))


def gradcam_figure(image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None, title: str,
                   path: str | os.PathLike) -> Path:
    """The original image beside its Grad-CAM map (colour bar 0-1) with the mask outlined.

    Args:
        image: `(H, W)` image in [0, 1] (un-normalised).
        heatmap: `(h, w)` map in [0, 1]; resized to the image.
        mask: optional `(H, W)` binary mask, outlined in green.
        title: what and on which image (class, prediction, energy).
        path: PNG path.
    """
    import cv2

    h, w = image.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    fig = new_figure(figsize=(6.0, 3.0))
    ax_image, ax_heat = fig.subplots(1, 2)
    ax_image.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax_image.set_title("image", fontsize=8)
    ax_heat.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
    shown = ax_heat.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax_heat.set_title("Grad-CAM" + (" (green: mask outline)" if mask is not None else ""), fontsize=8)
    if mask is not None:
        for ax in (ax_image, ax_heat):
            ax.contour(np.asarray(mask) > 0, levels=[0.5], colors="lime", linewidths=0.8)
    for ax in (ax_image, ax_heat):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=ax_heat, fraction=0.046, pad=0.04, label="Grad-CAM (0-1)")
    fig.suptitle(title, fontsize=8)
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
    figures = RunDir(run_dir).figures
    written = [training_curves(results, figures / "training_curves.png"),
               cost_chart(results, figures / "cost_urep_vs_baseline.png")]
    return [p for p in written if p is not None]
