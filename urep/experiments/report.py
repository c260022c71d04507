"""Tables of a run, laid out like the papers' tables, with the papers' numbers in adjacent columns.

Everything here reads only the results dict (`results.json`, written by `urep.experiments.runner`; its keys:
docs/design.md, "Module notes") and `urep.experiments.paper_numbers`, so `urep report RUN_DIR` rebuilds
byte-identical tables from a finished run.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from urep.experiments.paper_numbers import PAPER_TABLES, STRATEGY_LABELS, PaperTable, paper_value
from urep.experiments.tables import PValue, Table
from urep.io import atomic_write_text
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["build_tables", "write_tables", "summary_table", "METRIC_LABELS"]

METRIC_LABELS = {
    "accuracy": "Acc", "f1": "F", "iou": "IoU", "mcc": "MCC", "auc": "AUC", "sensitivity": "Sens",
    "precision": "Prec", "dice": "Dice", "psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM",
    "minutes": "Minutes", "seconds": "Seconds", "params": "Parameters", "val_loss": "Val loss",
    "val_accuracy": "Val acc", "hausdorff": "HD", "avg_hausdorff": "Avg HD", "f1_normal": "F1-N",
    "f1_pneumonia": "F1-P", "balanced_accuracy": "BalAcc", "fraction_positive": "Pred+ frac",
    "auc_ci_low": "AUC 95% low", "auc_ci_high": "AUC 95% high",
}

#: Measured-only columns added to every paper table of a run with a classification task.
CLASSIFIER_CHECKS = ("balanced_accuracy", "auc", "fraction_positive")

#: Metrics of the run-wide table (every task, every method), in this order.
#: The AUC's 95% interval is DeLong's (`urep.metrics.classification_metrics`); cross-validated rows give the mean
#: of the fold models' bounds, the ensemble table the ensemble's own interval.
ALL_METRICS = ("accuracy", "balanced_accuracy", "auc", "auc_ci_low", "auc_ci_high", "fraction_positive",
               "sensitivity", "precision", "f1", "mcc", "iou", "dice")


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _task_label(task: dict) -> str:
    return task["name"]


def _methods(results: dict) -> list[str]:
    """Strategies in config order, then the baseline when it was trained."""
    config = results["config"]
    methods = list(config["strategies"])
    if config["baseline"]["enabled"]:
        methods.append("baseline")
    return methods


def _measured(results: dict, task: str, method: str, metric: str) -> tuple[float, float | None] | None:
    entry = results.get("tasks", {}).get(task, {}).get("methods", {}).get(method)
    if entry is None:
        return None
    value = entry.get("metrics", {}).get(metric)
    if value is None:
        return None
    std = entry.get("std", {}).get(metric)
    return (value, std)


def _method_aliases(table: PaperTable, results: dict) -> dict[str, str]:
    """Map the paper's method names to the run's (the preprint's `urep`/`traditional`)."""
    strategies = results["config"]["strategies"]
    aliases = {m: m for m in (*strategies, "baseline")}
    if any(r.method in ("urep", "traditional") for r in table.rows):
        aliases = {"urep": strategies[0] if strategies else "independent", "traditional": "baseline"}
    return aliases


def performance_table(table: PaperTable, results: dict) -> Table:
    """A performance table (journal Tables 3/5/7/9, preprint Tables 2/4) with paper values adjacent."""
    columns = ["Method", "Task"]
    for metric in table.metrics:
        columns += [_label(metric), f"{_label(metric)} (paper)"]
    # classifiers are judged by balanced scores too (no paper value): a constant classifier shows up here
    extra = [m for m in CLASSIFIER_CHECKS if m not in table.metrics] \
        if any(t.get("kind") == "classification" for t in results["config"]["tasks"]) else []
    columns += [_label(m) for m in extra]
    out = Table(table.key, f"{table.citation}: {table.title}", columns)
    aliases = _method_aliases(table, results)
    folds = results["config"]["cross_validation"]["folds"]
    for paper_method, method in aliases.items():
        if method != "baseline" and method not in results["config"]["strategies"]:
            continue
        if method == "baseline" and not results["config"]["baseline"]["enabled"]:
            continue
        for task in results["config"]["tasks"]:
            cells: list[Any] = [STRATEGY_LABELS.get(method, method), _task_label(task)]
            for metric in table.metrics:
                cells.append(_measured(results, task["name"], method, metric))
                paper_task = task.get("paper_task")
                cells.append(paper_value(table.key, paper_method, paper_task, metric) if paper_task else None)
            cells += [_measured(results, task["name"], method, m) for m in extra]
            out.add(*cells)
    _add_reference_rows(out, results, table.metrics, paper_columns=True, extra=extra)
    out.notes.append(
        f"Measured on this run's test set{f' (mean ± std over {folds} fold models)' if folds else ''}; "
        "'(paper)' columns: " + table.citation + ". Segmentation: Acc = pixel accuracy, F = Dice."
    )
    if any(t["kind"] == "segmentation" for t in results["config"]["tasks"]):
        out.notes.append(SEGMENTATION_NOTE)
    if table.notes:
        out.notes.append(f"Paper: {table.notes}")
    return out


def _models(results: dict, role: str, task: str | None = None, method: str | None = None) -> list[dict]:
    return [m for m in results.get("models", [])
            if m["role"] == role and (task is None or m.get("task") == task)
            and (method is None or m.get("method") == method)]


def _cost_method(results: dict) -> str | None:
    strategies = results["config"]["strategies"]
    if not strategies:
        return None
    return "independent" if "independent" in strategies else strategies[0]


def _minutes(models: list[dict]) -> float | None:
    if not models:
        return None
    return sum(m["seconds"] for m in models) / 60.0


def _params(models: list[dict], key: str = "total_params") -> int | None:
    if not models:
        return None
    return int(sum(m[key] for m in models))


def _head_models(results: dict, method: str, task: str) -> list[dict]:
    """Models that trained task `task` with `method` (a joint/alternating model is shared by its tasks)."""
    return [m for m in results.get("models", []) if m["role"] == "head" and m.get("method") == method
            and task in m.get("tasks", [m.get("task")])]


def cost_table(table: PaperTable, results: dict) -> Table:
    """Training time and parameters of U-Rep vs the baseline (journal Tables 4/6/8/10)."""
    columns = ["Method", "Model", "Minutes", "Minutes (paper)", "Parameters", "Parameters (paper)",
               "Trainable"]
    out = Table(table.key, f"{table.citation}: {table.title}", columns, digits=2)
    method = _cost_method(results)
    tasks = results["config"]["tasks"]

    def add(paper_method: str, paper_task: str | None, label: str, models: list[dict]) -> None:
        out.add(STRATEGY_LABELS.get(paper_method, paper_method), label, _minutes(models),
                paper_value(table.key, paper_method, paper_task, "minutes") if paper_task else None,
                _params(models),
                paper_value(table.key, paper_method, paper_task, "params") if paper_task else None,
                _params(models, "trainable_params"))

    source = _models(results, "source")
    proposed = list(source)
    add("proposed", "source", "Shared source", source)
    for task in tasks:
        per_fold = _per_training(_head_models(results, method, task["name"])) if method else []
        proposed += per_fold
        add("proposed", task.get("paper_task"), f"{task['name']} head ({method})", per_fold)
    add("proposed", "total", "Source + heads", list({m["id"]: m for m in proposed}.values()))
    if results["config"]["baseline"]["enabled"]:
        denoiser = _models(results, "denoiser")
        baseline = list(denoiser)
        if denoiser:
            add("baseline", "denoiser", "Separate denoiser", denoiser)
            if any(m.get("reused_from") for m in denoiser):
                out.notes.append("The separate denoiser is the source CDAE's trained weights (one training); its "
                                 "time and parameters count in both totals, as in journal Table 4.")
        for task in tasks:
            models = _per_training(_models(results, "baseline", task["name"]))
            baseline += models
            add("baseline", task.get("paper_task"), f"Separate {task['name']} model", models)
        add("baseline", "total", "Separate models", baseline)
    folds = results["config"]["cross_validation"]["folds"]
    out.notes.append("Minutes: wall-clock training time on this run's machine"
                     + (f", one fold's model (mean over {folds} folds)" if folds else "")
                     + "; Parameters: all parameters of each model (the paper's convention: the totals add the "
                       "models up, shared layers counted per model); Trainable: parameters updated.")
    if table.notes:
        out.notes.append(f"Paper: {table.notes}")
    return out


def _per_training(models: list[dict]) -> list[dict]:
    """Fold models of one (task, method) collapsed into one mean entry (a fold is one training)."""
    if len(models) <= 1:
        return models
    first = dict(models[0])
    first["seconds"] = sum(m["seconds"] for m in models) / len(models)
    return [first]


def training_table(table: PaperTable, results: dict) -> Table:
    """Validation loss (and accuracy) and training seconds per model (preprint Tables 1 and 3)."""
    columns = ["Method", "Model"]
    for metric in table.metrics:
        columns += [_label(metric), f"{_label(metric)} (paper)"]
    out = Table(table.key, f"{table.citation}: {table.title}", columns, digits=4)
    aliases = _method_aliases(table, results)
    method = aliases.get("urep")

    def add(paper_method: str, paper_task: str | None, label: str, models: list[dict]) -> None:
        cells: list[Any] = [STRATEGY_LABELS.get(paper_method, paper_method), label]
        models = _per_training(models)
        for metric in table.metrics:
            if metric == "seconds":
                cells.append(sum(m["seconds"] for m in models) if models else None)
            else:
                values = [m.get("best", {}).get(metric) for m in models if m.get("best", {}).get(metric) is not None]
                cells.append(values[0] if values else None)
            cells.append(paper_value(table.key, paper_method, paper_task, metric) if paper_task else None)
        out.add(*cells)

    source_task = "source"
    if results["config"]["source"]["kind"] == "dilated_cnn":
        source_task = "flow_classification"
    add("urep", source_task, "Shared source", _models(results, "source"))
    for task in results["config"]["tasks"]:
        if task.get("paper_task") == source_task:
            continue
        add("urep", task.get("paper_task"), f"{task['name']} head", _head_models(results, method, task["name"]))
    if results["config"]["baseline"]["enabled"]:
        for task in results["config"]["tasks"]:
            add("traditional", task.get("paper_task"), f"Separate {task['name']} model",
                _models(results, "baseline", task["name"]))
    out.notes.append("Best validation values of each model's history; seconds of training on this run's machine.")
    return out


def comparison_table(table: PaperTable, results: dict) -> Table:
    """Preprint Table 5: U-Rep 2 measured here beside the paper's U-Rep 2, Taskonomy and Genesis rows."""
    columns = ["Method", "Task"] + [_label(m) for m in table.metrics]
    out = Table(table.key, f"{table.citation}: {table.title}", columns)
    method = _method_aliases(table, results)["urep"]
    for task in results["config"]["tasks"]:
        paper_task = task.get("paper_task")
        if paper_task not in table.tasks:
            continue
        out.add("U-Rep (this run)", task["name"],
                *[(_measured(results, task["name"], method, m) or (None, None))[0] for m in table.metrics])
        for paper_method in ("urep", "taskonomy", "genesis"):
            out.add(f"{paper_method} (paper)", task["name"],
                    *[paper_value(table.key, paper_method, paper_task, m) for m in table.metrics])
    return out


REFERENCE_LABELS = {"nl_means": ("Non-local means", "h"), "gaussian_blur": ("Gaussian blur", "sigma")}


def denoising_table(table: PaperTable, results: dict) -> Table:
    """PSNR / SSIM / MS-SSIM per noise level with the paper's rows matched by order (journal Table 2).

    Each level has the CDAE's row (beside the paper's), then, on the same test images, the noisy input
    itself and the classical references of `results["denoising_references"]`; "Gain" is the PSNR above the
    noisy input's.
    """
    columns = ["Noise", "Method"]
    for metric in table.metrics:
        columns += [_label(metric), f"{_label(metric)} (paper)"]
    columns.append("Gain over noisy (dB)")
    out = Table(table.key, f"{table.citation}: {table.title}", columns)
    counters: dict[str, int] = {}
    references = results.get("denoising_references", [])
    for level in results.get("denoising", []):
        counters[level["kind"]] = counters.get(level["kind"], 0) + 1
        paper_method = f"{level['kind']}_{counters[level['kind']]}"
        noisy = level.get("noisy_psnr")
        cells: list[Any] = [level["noise"], "CDAE (source)"]
        for metric in table.metrics:
            cells += [level.get(metric), paper_value(table.key, paper_method, "denoising", metric)]
        out.add(*cells, _gain(level.get("psnr"), noisy))
        cells = [level["noise"], "Noisy input"]
        for metric in table.metrics:
            cells += [level.get(f"noisy_{metric}"), None]
        out.add(*cells, None)
        for ref in (r for r in references if r["noise"] == level["noise"]):
            label, parameter = REFERENCE_LABELS.get(ref["method"], (ref["method"], "parameter"))
            cells = [level["noise"], f"{label} ({parameter} {ref['parameter']:g})"]
            for metric in table.metrics:
                cells += [ref.get(metric), None]
            out.add(*cells, _gain(ref.get("psnr"), noisy))
    n = next((level.get("n") for level in results.get("denoising", [])), None)
    out.notes.append(f"Computed on the source's test split ({n} images), images in [0, 1]; every method of a "
                     "level sees the same noisy images. 'Noisy input' compares the corrupted input with the "
                     "clean image (the starting point); the classical references' strengths were tuned per "
                     "level on validation images (best PSNR over a small grid).")
    if table.notes:
        out.notes.append(f"Paper: {table.notes}")
    return out


def _gain(psnr: float | None, noisy: float | None) -> float | None:
    return None if psnr is None or noisy is None else psnr - noisy


def multimix_table(table: PaperTable, results: dict) -> Table:
    """MultiMix runs (label budgets) beside the paper's MultiMix rows (MultiMix Table 2)."""
    columns = ["Model", "Budget", "Domain"]
    for metric in table.metrics:
        columns += [_label(metric), f"{_label(metric)} (paper)"]
    out = Table(table.key, f"{table.citation}: {table.title}", columns)
    for run in results.get("multimix", {}).get("runs", []):
        for domain in ("in_domain", "cross_domain"):
            metrics = run.get(domain)
            if metrics is None:
                continue
            cells: list[Any] = [run.get("model", "multimix"), run["setting"], domain.replace("_", "-")]
            for metric in table.metrics:
                cells += [metrics.get(metric),
                          paper_value(table.key, run.get("model", "multimix"), domain, metric, run["setting"])]
            out.add(*cells)
    if table.notes:
        out.notes.append(f"Paper: {table.notes}")
    return out


def label_budget_table(results: dict) -> Table | None:
    """MultiMix variants (and U-Rep strategies) per label budget and domain, with sample sizes and the paired
    tests against the full MultiMix (McNemar on correctness, Wilcoxon on per-image Dice); from `multimix.runs`."""
    runs = results.get("multimix", {}).get("runs", [])
    if not runs:
        return None
    classes = list(results["config"].get("multimix", {}).get("classes", []))
    reference = "multimix" if any(r.get("method") == "multimix" for r in runs) else runs[0].get("method")
    out = Table("label_budgets", "MultiMix and U-Rep per label budget (same splits; in-domain and cross-domain)",
                ["Budget", "Model", "Domain", "Acc", "Bal acc", "AUC", "Pred pos", *[f"F1 {c}" for c in classes],
                 "Dice", "Avg HD", "SSIM",
                 "N cls", "N seg", f"McNemar p vs {reference}", f"Wilcoxon p vs {reference}"])
    tests = {(t.get("setting"), t.get("domain"), t["a"], t["b"], t["test"]): _p(t["p_value"])
             for t in results.get("statistics", []) if "setting" in t}
    for run in runs + results.get("multimix", {}).get("references", []):
        budget = run.get("budget", {})
        label = f"seg {budget.get('segmentation')} / cls {budget.get('classification')}" if budget else run["setting"]
        for domain in ("in_domain", "cross_domain"):
            metrics = run.get(domain)
            if metrics is None:
                continue
            key = (run.get("budget_setting"), domain, reference, run.get("model"))
            name = f"U-Rep {STRATEGY_LABELS.get(run['method'], run['method'])}" if run.get("kind") == "urep" \
                else run.get("model")
            out.add(label, name, domain.replace("_", "-"), metrics.get("accuracy"), metrics.get("balanced_accuracy"),
                    metrics.get("auc"), metrics.get("positive_fraction"), *[metrics.get(f"f1_{c}") for c in classes], metrics.get("dice"), metrics.get("hausdorff"),
                    metrics.get("ssim"), metrics.get("n_classification"), metrics.get("n_segmentation"),
                    tests.get((*key, "mcnemar")), tests.get((*key, "wilcoxon")))
    out.notes.append("SSIM compares the binarised predicted mask with the reference mask. Avg HD in pixels. "
                     "p-values compare the row's model with the full MultiMix on the same test images. "
                     "Bal acc: balanced accuracy; Pred pos: fraction of test images predicted as a class other "
                     "than the first (0 or 1 = a constant classifier).")
    split = results.get("data", {}).get("split_note")
    if split:
        out.title += f"; split: {split}"
    return out


def seed_summary_table(results: dict) -> Table | None:
    """MultiMix and U-Rep over seeds (`multimix.seeds`): mean (spread) per budget and domain, and how many
    seeds' paired tests (a U-Rep row vs MultiMix, an ablation variant vs the full MultiMix) reached
    significance; from `multimix.summary`."""
    summary = results.get("multimix", {}).get("summary")
    if not summary:
        return None
    metrics = ("accuracy", "balanced_accuracy", "auc", "positive_fraction", "dice")
    title = "MultiMix and U-Rep over seeds: mean (sample std)"
    split = results.get("data", {}).get("split_note")
    out = Table("label_budgets_seeds", title + (f"; split: {split}" if split else ""),
                ["Budget", "Model", "Domain", "Seeds", "Acc", "Bal acc", "AUC", "Pred pos", "Dice",
                 "McNemar p per seed", "DeLong p per seed", "Wilcoxon p per seed"])
    for entry in summary:
        cells = [(entry[m]["mean"], entry[m]["std"]) if m in entry else None for m in metrics]
        tests = []
        for test in ("mcnemar", "delong", "wilcoxon"):
            found = [v for k, v in entry.get("tests", {}).items() if k.startswith(test)]
            tests.append("; ".join(", ".join(f"{p:.3g}" for p in v["p_values"]) + f" ({v['significant']}/"
                                   f"{v['n_seeds']} sig.)" for v in found) or None)
        out.add(entry["setting"], entry["model"], entry["domain"].replace("_", "-"), len(entry["seeds"]), *cells,
                *tests)
    out.notes.append("Spread: sample standard deviation over seeds (label draw, weights, data order); the split "
                     "and U-Rep's source are fixed. p-values, one per seed, on the same test images: a U-Rep row "
                     "vs each MultiMix variant; a MultiMix variant's row vs the full MultiMix.")
    return out


def metrics_table(results: dict) -> Table:
    """Every task x method with all metrics (no paper columns)."""
    out = Table("metrics", "All test metrics", ["Task", "Method", *[_label(m) for m in ALL_METRICS], "N test"])
    for task in results["config"]["tasks"]:
        for method in _methods(results):
            entry = results.get("tasks", {}).get(task["name"], {}).get("methods", {}).get(method)
            if entry is None:
                continue
            out.add(task["name"], STRATEGY_LABELS.get(method, method),
                    *[_measured(results, task["name"], method, m) for m in ALL_METRICS], entry.get("n_test"))
    _add_reference_rows(out, results, ALL_METRICS, task_first=True, n_test=True)
    return out


def ensemble_table(results: dict) -> Table | None:
    """Test metrics of the fold ensembles (mean of the fold models' probabilities)."""
    out = Table("ensemble", "Fold ensembles on the test set", ["Task", "Method", *[_label(m) for m in ALL_METRICS]])
    for task in results["config"]["tasks"]:
        for method in _methods(results):
            entry = results.get("tasks", {}).get(task["name"], {}).get("methods", {}).get(method) or {}
            ensemble = entry.get("ensemble")
            if ensemble:
                out.add(task["name"], STRATEGY_LABELS.get(method, method), *[ensemble.get(m) for m in ALL_METRICS])
    return out if out.rows else None


def _p(value: float | None) -> PValue | None:
    """A p-value cell (`< 1e-4` / scientific notation, never `0.0000`)."""
    return None if value is None else PValue(value)


def _difference(test: dict) -> float | int | None:
    """Which method a paired test favours (positive: A), from the test's recorded detail."""
    detail = test.get("detail") or {}
    if test["test"] == "mcnemar" and "b" in detail:
        return int(detail["b"]) - int(detail["c"])
    if test["test"] == "delong" and detail.get("auc_a") is not None:
        return detail["auc_a"] - detail["auc_b"]
    return detail.get("median_difference")


def statistics_table(results: dict) -> Table | None:
    """Paired tests between strategies, against the baseline and against the same run's references."""
    tests = results.get("statistics", [])
    if not tests:
        return None
    from urep.experiments.references import REFERENCE_LABELS as METHOD_REFERENCES

    alpha = results["config"]["statistics"]["alpha"]
    out = Table("statistics", "Paired tests (McNemar on per-image correctness; DeLong on the AUC; Wilcoxon on "
                "per-image scores)", ["Task", "A", "B", "Test", "On", "N", "A - B", "Statistic", "p",
                                      f"p < {alpha:g}"], digits=4)

    def label(method: str) -> str:
        return STRATEGY_LABELS.get(method, METHOD_REFERENCES.get(method, method))

    for test in tests:
        p = test["p_value"]
        out.add(test["task"], label(test["a"]), label(test["b"]),
                test["test"], test.get("on", ""), test.get("n"), _difference(test), test["statistic"], _p(p),
                None if p is None or (isinstance(p, float) and math.isnan(p)) else bool(p < alpha))
    out.notes.append("A - B, the direction of each test: McNemar, images only A got right minus images only B got "
                     "right; DeLong, AUC of A minus AUC of B; Wilcoxon, the median per-image difference.")
    for key in results["config"].get("paper_tables", []):
        notes = PAPER_TABLES[key].notes
        if PAPER_TABLES[key].kind == "performance" and "McNemar" in notes:
            out.notes.append(f"{PAPER_TABLES[key].citation}: {notes}")
    return out


def data_table(results: dict) -> Table | None:
    """Sample sizes: images, patients and labels per data source; split sizes per task."""
    data = results.get("data")
    if not data:
        return None
    out = Table("data", "Data (sample sizes)", ["Data", "Images", "Patients", "Labels"])
    for name, info in data.get("sources", {}).items():
        labels = ", ".join(f"{k} {v}" for k, v in sorted(info.get("labels", {}).items()))
        out.add(name, info.get("images"), info.get("patients"), labels or "-")
    for name, info in data.get("tasks", {}).items():
        out.add(f"task {name}", info.get("train", 0) + info.get("val", 0) + info.get("test", 0), None,
                f"train {info.get('train')}, val {info.get('val')}, test {info.get('test')}, "
                f"folds {info.get('folds', 0)}")
    for setting, info in data.get("budgets", {}).items():
        seg, cls = info["segmentation"], info["classification"]
        out.add(f"label budget {setting}", None, None,
                f"masks {seg['labelled']} labelled + {seg['unlabelled']} unlabelled; class labels "
                f"{cls['labelled']} labelled + {cls['unlabelled']} unlabelled")
    return out


def super_resolution_table(results: dict) -> Table | None:
    """A super-resolution source's restoration of its test images against the interpolated input."""
    rows = results.get("super_resolution")
    if not rows:
        return None
    out = Table("super_resolution", "Super-resolution source: test images restored after down-sampling",
                ["Scale", "Interpolated PSNR", "Restored PSNR", "Interpolated SSIM", "Restored SSIM",
                 "Interpolated MS-SSIM", "Restored MS-SSIM", "Images"])
    for row in rows:
        out.add(f"x{row['scale']}", row.get("interpolated_psnr"), row.get("psnr"), row.get("interpolated_ssim"),
                row.get("ssim"), row.get("interpolated_ms_ssim"), row.get("ms_ssim"), row.get("n"))
    out.notes.append("Input: each image down-sampled by the scale (area average) and up-sampled back (bicubic); "
                     "no paper numbers exist (the preprint only names this representation).")
    return out


def recommendation_table(results: dict) -> Table | None:
    """Counts of the Doppler recommendation over the test images (flow x quality -> decision)."""
    rec = results.get("recommendation")
    if not rec or not rec.get("counts"):
        return None
    out = Table("recommendation", "Derivable task: recommendation (flow type x quality)",
                ["Flow", "Quality", "Recommendation", "Images"])
    for row in rec["counts"]:
        out.add(row["flow"], row["quality"], row["recommendation"], row["count"])
    if rec.get("agreement") is not None:
        out.notes.append(f"Agreement with the recommendation from the true labels: {rec['agreement']:.3f}.")
    return out


def explain_table(results: dict) -> Table | None:
    """Grad-CAM energy inside the lung (or other) mask per class."""
    explain = results.get("explain") or {}
    energy = explain.get("energy_by_class")
    if not energy:
        return None
    out = Table("gradcam_energy", f"Grad-CAM energy inside the {explain.get('mask_task', 'mask')} mask "
                f"({explain.get('task')})", ["Class", "Mean energy inside", "Untrained model", "Mask area",
                                              "Images"])
    for name, info in energy.items():
        out.add(name, info.get("mean"), info.get("untrained"), info.get("mask_area"), info.get("n"))
    out.notes.append("Energy = share of the Grad-CAM map inside the mask. References: the same architecture "
                     "freshly initialised (untrained), and the mask's share of the image (what a uniform map "
                     "gets); a model attending to the mask scores above both.")
    return out


SEGMENTATION_NOTE = (
    "IoU and Dice are per-image means (every test image weighs the same); the paper columns are compared with "
    "them. The authors' public code computes IoU pooled over the whole flattened set (soft, smooth 1), which "
    "weighs large masks more: both are in the 'Segmentation overlap' table.")


def _reference_label(method: str) -> str:
    from urep.experiments.references import REFERENCE_LABELS

    return f"Reference: {REFERENCE_LABELS.get(method, method)}"


def _reference_measured(entry: dict, metric: str) -> tuple[float, float | None] | None:
    value = entry.get("metrics", {}).get(metric)
    return None if value is None else (value, entry.get("std", {}).get(metric))


def _add_reference_rows(out: Table, results: dict, metrics: Any, paper_columns: bool = False,
                        task_first: bool = False, n_test: bool = False, extra: Any = ()) -> None:
    """Rows of the same-run references (`tasks[TASK]["references"]`) under the methods of `out`."""
    for task in results["config"]["tasks"]:
        refs = results.get("tasks", {}).get(task["name"], {}).get("references") or {}
        for method, entry in refs.items():
            cells: list[Any] = [task["name"], _reference_label(method)] if task_first else \
                [_reference_label(method), _task_label(task)]
            for metric in metrics:
                cells.append(_reference_measured(entry, metric))
                if paper_columns:
                    cells.append(None)
            cells += [_reference_measured(entry, metric) for metric in extra]
            if n_test:
                cells.append(entry.get("n_test"))
            out.add(*cells)


#: Columns of the segmentation-overlap table: (metric key, header).
OVERLAP_COLUMNS = (("iou", "IoU per image"), ("dice", "Dice per image"), ("iou_pooled", "IoU pooled (soft)"),
                   ("dice_pooled", "Dice pooled (soft)"), ("iou_pooled_05", "IoU pooled (0.5)"),
                   ("dice_pooled_05", "Dice pooled (0.5)"))


def segmentation_overlap_table(results: dict) -> Table | None:
    """Per-image and pooled IoU/Dice side by side for every segmentation task, method and reference."""
    out = Table("segmentation_overlap", "Segmentation overlap: per-image means and pooled (authors' code)",
                ["Task", "Method", *[h for _, h in OVERLAP_COLUMNS], "N test"])
    for task in results["config"]["tasks"]:
        if task["kind"] != "segmentation":
            continue
        entry = results.get("tasks", {}).get(task["name"], {})
        rows = [(STRATEGY_LABELS.get(m, m), e) for m, e in entry.get("methods", {}).items()]
        rows += [(_reference_label(m), e) for m, e in (entry.get("references") or {}).items()]
        for label, method_entry in rows:
            out.add(task["name"], label, *[_reference_measured(method_entry, k) for k, _ in OVERLAP_COLUMNS],
                    method_entry.get("n_test"))
    if not out.rows:
        return None
    out.notes.append("Per image: the mean over test images of each image's score (threshold 0.5). Pooled: "
                     "I = sum(truth * prediction), S = sum(truth) + sum(prediction) over every pixel of the "
                     "test set, IoU = (I + 1) / (S - I + 1), Dice = (2 I + 1) / (S + 1), with the predicted "
                     "probabilities (soft, the authors' metric) or the prediction thresholded at 0.5.")
    out.notes.append("The paper columns of the performance tables are compared with the per-image means.")
    return out


def references_table(results: dict) -> Table | None:
    """Where U-Rep stands against the same-run references: the main scores and one sentence per task."""
    from urep.experiments.references import standing_sentences

    sentences = standing_sentences(results, STRATEGY_LABELS)
    if not sentences:
        return None
    out = Table("references", "U-Rep against simple references (same split, same test set, same run)",
                ["Task", "Method", "Acc", "AUC", "IoU", "Dice", "N test"])
    for task in results["config"]["tasks"]:
        entry = results.get("tasks", {}).get(task["name"], {})
        if not entry.get("references"):
            continue
        rows = [(STRATEGY_LABELS.get(m, m), e) for m, e in entry.get("methods", {}).items()]
        rows += [(_reference_label(m), e) for m, e in entry["references"].items()]
        for label, method_entry in rows:
            out.add(task["name"], label, *[_reference_measured(method_entry, k)
                                           for k in ("accuracy", "auc", "iou", "dice")], method_entry.get("n_test"))
    out.notes += sentences
    out.notes.append("References: the majority class and PCA + logistic regression on downsampled raw pixels "
                     "(classification), the mean training mask thresholded at 0.5 and a U-Net with skip "
                     "connections trained like the baselines (segmentation); each fitted on the same training "
                     "images as U-Rep's heads.")
    return out


def in_domain_table(results: dict) -> Table | None:
    """Every method and reference on the training pool's validation patients (in-domain, out-of-fold)."""
    out = Table("in_domain", "In-domain validation: each fold model on its own held-out training patients",
                ["Task", "Method", "Acc", "BalAcc", "AUC", "IoU", "Dice", "N", "Folds"])
    for task in results["config"]["tasks"]:
        entry = results.get("tasks", {}).get(task["name"], {})
        rows = [(STRATEGY_LABELS.get(m, m), e) for m, e in entry.get("methods", {}).items()]
        rows += [(_reference_label(m), e) for m, e in (entry.get("references") or {}).items()]
        for label, method_entry in rows:
            in_domain = method_entry.get("in_domain")
            if not in_domain:
                continue
            metrics = in_domain["metrics"]
            out.add(task["name"], label, *[metrics.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "iou",
                                                                     "dice")], in_domain["n"], in_domain["folds"])
    if not out.rows:
        return None
    out.notes.append("Out-of-fold: with k folds every training-pool image is scored once, by the fold model that "
                     "did not train on it (one fold: the single validation split). These images also chose each "
                     "model's epoch (early stopping on the validation loss), so the numbers are slightly "
                     "optimistic; the test-set tables above are the unbiased ones.")
    return out


_BUILDERS = {
    "performance": performance_table, "cost": cost_table, "training": training_table,
    "comparison": comparison_table, "denoising": denoising_table, "multimix": multimix_table,
}


def transfer_table(results: dict) -> Table | None:
    """The transfer matrix of a `pairwise_transfer` experiment: gain of each task (row) from each partner."""
    transfer = results.get("transfer")
    if not transfer:
        return None
    tasks = list(transfer["matrix"])
    out = Table("transfer_matrix", "Transfer: gain of each task from joint training with each partner",
                ["Task", "Metric", "Alone", *[f"with {p}" for p in tasks]])
    for task in tasks:
        out.add(task, transfer["metric"][task], transfer["alone"][task], *[transfer["matrix"][task][p] for p in tasks])
    out.notes.append("Gain = test score trained jointly with the partner minus trained alone (same source "
                     "representation and split); negative = negative transfer.")
    return out


def build_tables(results: dict) -> list[Table]:
    """Every table of a run: the configured paper tables, then the run-wide ones.

    Args:
        results: the results dict of a run (`results.json`).

    Returns:
        Tables in report order.
    """
    tables: list[Table] = []
    for key in results["config"].get("paper_tables", []):
        paper = PAPER_TABLES[key]
        builder = _BUILDERS.get(paper.kind)
        if builder is not None:
            tables.append(builder(paper, results))
    tables += [t for t in (references_table(results), segmentation_overlap_table(results), in_domain_table(results))
               if t is not None]
    if results["config"]["tasks"] and results.get("tasks"):
        tables.append(metrics_table(results))
    for extra in (super_resolution_table, transfer_table, label_budget_table, seed_summary_table, ensemble_table,
                  statistics_table, explain_table, recommendation_table, data_table):
        table = extra(results)
        if table is not None:
            tables.append(table)
    return tables


def summary_table(results: dict) -> Table:
    """A short table for the terminal: per task, the main metric of each method (the transfer matrix for a
    `pairwise_transfer` run; the label-budget table for MultiMix experiments)."""
    if results.get("transfer"):
        return transfer_table(results)
    budgets = label_budget_table(results)
    if budgets is not None:
        return budgets
    out = Table("summary", f"{results['config']['name']}: test results", ["Task", *(
        STRATEGY_LABELS.get(m, m) for m in _methods(results))])
    for task in results["config"]["tasks"]:
        metric = "iou" if task["kind"] == "segmentation" else "accuracy"
        n_test = (results.get("data", {}).get("tasks", {}).get(task["name"]) or {}).get("test")
        size = "" if n_test is None else f", n={n_test}"  # small test sets read differently
        out.add(f"{task['name']} ({_label(metric)}{size})",
                *[(_measured(results, task["name"], m, metric) or (None, None))[0] for m in _methods(results)])
    for level in results.get("denoising", []):
        noisy = level.get("noisy_psnr")
        label = f"denoising {level['noise']} (PSNR dB" + (f"; noisy input {noisy:.2f})" if noisy is not None else ")")
        out.add(label, *[level.get("psnr")] + [None] * (len(out.columns) - 2))
    for row in results.get("super_resolution", []):
        out.add(f"super-resolution x{row['scale']} (PSNR dB)", *[row.get("psnr")] + [None] * (len(out.columns) - 2))
    return out


def write_tables(results: dict, run_dir: str | os.PathLike) -> list[Path]:
    """Write `tables/NAME.md` and `tables/NAME.csv` for every table and `report.md` at the run's root.

    Returns:
        The written paths.
    """
    run_dir = Path(run_dir)
    layout = RunDir(run_dir)
    written = []
    tables = build_tables(results)
    for table in tables:
        written.append(atomic_write_text(layout.table(table.name, "md"), table.to_markdown()))
        written.append(atomic_write_text(layout.table(table.name, "csv"), table.to_csv()))
    written.append(atomic_write_text(layout.report, _report_markdown(results, tables, run_dir)))
    logger.info("wrote %d tables under %s", len(tables), layout.tables)
    return written


def _report_markdown(results: dict, tables: list[Table], run_dir: Path) -> str:
    config = results["config"]
    lines = [f"# {config['name']}", "", config.get("description", ""), ""]
    env = results.get("environment", {})
    lines.append(f"Seed {results.get('seed')}; urep {env.get('urep', '?')}; TensorFlow "
                 f"{env.get('packages', {}).get('tensorflow', env.get('packages', {}).get('tensorflow-cpu', '?'))}; "
                 f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs); GPUs: {len(env.get('gpus', []))}; "
                 f"wall time {results.get('wall_seconds', 0) / 60:.1f} min.")
    lines.append("")
    for warning in results.get("warnings", []):
        lines += [f"**{warning}**", ""]
    for table in tables:
        lines.append(table.to_markdown())
    figure_dir = RunDir(run_dir).figures
    figures = sorted(p.relative_to(run_dir).as_posix() for p in figure_dir.rglob("*.png")) \
        if figure_dir.is_dir() else []
    if figures:  # every figure, those in sub-folders (Grad-CAM) under their own heading
        top = [f for f in figures if f.count("/") == 1]
        lines += ["### Figures", ""] + [f"![{Path(f).stem}]({f})\n" for f in top]
        for folder in sorted({Path(f).parent.as_posix() for f in figures} - {figure_dir.name}):
            lines += [f"#### {Path(folder).name}", ""] + [
                f"![{Path(f).stem}]({f})\n" for f in figures if Path(f).parent.as_posix() == folder]
    return "\n".join(lines) + "\n"
