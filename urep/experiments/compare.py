"""Several runs side by side: one row per (task, method, metric) and the cost totals, one column per run."""

from __future__ import annotations

from urep.experiments.paper_numbers import STRATEGY_LABELS
from urep.experiments.tables import Table

__all__ = ["compare_runs", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("accuracy", "f1", "iou", "mcc", "auc")


def _label(run_dir: str, results: dict) -> str:
    return f"{results['config']['name']} ({run_dir})"


def compare_runs(runs: dict[str, dict], metrics: list[str] | tuple[str, ...] | None = None) -> Table:
    """A table comparing runs.

    Args:
        runs: run directory -> results dict (`urep.experiments.runner.load_results`).
        metrics: metric names to show (default `DEFAULT_METRICS`); a metric a task lacks is left out for it.

    Returns:
        The table (`-` where a run lacks the task, method or metric).
    """
    metrics = tuple(metrics or DEFAULT_METRICS)
    columns = ["Task", "Method", "Metric", *[_label(d, r) for d, r in runs.items()]]
    table = Table("compare", "Runs side by side (test set; mean over folds where cross-validated)", columns)
    keys: list[tuple[str, str]] = []
    for results in runs.values():
        for task, entry in results.get("tasks", {}).items():
            for method in entry.get("methods", {}):
                if (task, method) not in keys:
                    keys.append((task, method))
    for task, method in keys:
        for metric in metrics:
            cells = []
            for results in runs.values():
                entry = results.get("tasks", {}).get(task, {}).get("methods", {}).get(method, {})
                value = entry.get("metrics", {}).get(metric)
                std = entry.get("std", {}).get(metric)
                cells.append(None if value is None else (value, std))
            if any(c is not None for c in cells):
                table.add(task, STRATEGY_LABELS.get(method, method), metric, *cells)
    levels = []
    for results in runs.values():
        for level in results.get("denoising", []):
            if level["noise"] not in levels:
                levels.append(level["noise"])
    for noise in levels:
        cells = []
        for results in runs.values():
            match = [lv for lv in results.get("denoising", []) if lv["noise"] == noise]
            cells.append(match[0]["psnr"] if match else None)
        table.add("denoising", noise, "psnr", *cells)
    for role, label in (("urep", "U-Rep (source + heads)"), ("baseline", "Baseline (separate models)")):
        minutes, params = [], []
        for results in runs.values():
            models = _cost_models(results, role)
            minutes.append(sum(m["seconds"] for m in models) / 60 if models else None)
            params.append(sum(m["total_params"] for m in models) if models else None)
        table.add("cost", label, "minutes", *minutes)
        table.add("cost", label, "parameters", *params)
    return table


def _cost_models(results: dict, role: str) -> list[dict]:
    """The models counted in a run's cost (the same selection as the cost table, fold 0 only)."""
    models = [m for m in results.get("models", []) if m.get("fold") in (0, None)]
    if role == "baseline":
        return [m for m in models if m["role"] in ("baseline", "denoiser")]
    strategies = results["config"]["strategies"]
    method = "independent" if "independent" in strategies else (strategies[0] if strategies else None)
    chosen = [m for m in models if m["role"] == "source" or (m["role"] == "head" and m.get("method") == method)]
    return list({m["id"]: m for m in chosen}.values())
