"""Report tables from a results dict: paper numbers adjacent, cost totals, CSV, identical rebuilds."""

from __future__ import annotations

import csv
import io

import pytest

from urep.experiments.config import config_to_dict, load_config
from urep.experiments.report import build_tables, summary_table, write_tables


def _model(id_, role, method, task, seconds, total, trainable, fold=0):
    return {"id": id_, "role": role, "method": method, "task": task, "tasks": [task] if task else [],
            "fold": fold, "seconds": seconds, "phase_seconds": seconds, "trainable_params": trainable,
            "total_params": total, "epochs_run": 2, "stop_reason": "max_epochs",
            "best": {"val_loss": 0.5}, "history": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}}


def synthetic_results(name: str = "cxr_heterogeneous_phantom") -> dict:
    config = config_to_dict(load_config(name))
    tasks = {}
    for i, task in enumerate(config["tasks"]):
        methods = {}
        for j, method in enumerate([*config["strategies"], "baseline"]):
            value = 0.5 + 0.1 * j + 0.01 * i
            metrics = {"accuracy": value, "f1": value - 0.05, "iou": value - 0.1, "mcc": value - 0.2}
            methods[method] = {"metrics": metrics, "std": {k: 0.01 for k in metrics}, "folds": [metrics, metrics],
                               "ensemble": metrics, "n_test": 24}
        tasks[task["name"]] = {"kind": task["kind"], "paper_task": task["paper_task"], "methods": methods}
    models = [_model("source/source", "source", "urep", None, 120.0, 1000, 900),
              _model("baseline_denoiser/baseline_denoiser", "denoiser", "baseline", None, 60.0, 1000, 900)]
    for task in config["tasks"]:
        for fold in (0, 1):
            models.append(_model(f"independent/fold{fold}/{task['name']}/{task['name']}", "head", "independent",
                                 task["name"], 30.0 + fold * 30, 500, 100, fold))
            models.append(_model(f"baseline/fold{fold}/{task['name']}/{task['name']}", "baseline", "baseline",
                                 task["name"], 90.0, 2000, 2000, fold))
    return {"schema": 1, "config": config, "seed": 0, "tasks": tasks, "models": models,
            "denoising": [{"noise": "gaussian 0.03", "kind": "gaussian", "level": 0.03, "psnr": 30.0, "ssim": 0.8,
                           "ms_ssim": 0.9, "noisy_psnr": 25.0, "noisy_ssim": 0.6}],
            "statistics": [{"task": "abnormality_classification", "a": "independent", "b": "joint",
                            "test": "mcnemar", "on": "per-image correctness", "statistic": 1.0, "p_value": 0.03,
                            "significant": True, "n": 24}],
            "data": {"sources": {"shenzhen_phantoms": {"images": 96, "patients": 48, "labels": {"normal": 48}}},
                     "tasks": {"lung_segmentation": {"train": 60, "val": 30, "test": 48, "folds": 3}}},
            "environment": {"urep": "0.1.0", "packages": {}}, "wall_seconds": 60.0}


def _table(tables, name):
    return next(t for t in tables if t.name == name)


def test_performance_table_puts_paper_numbers_beside_measured():
    tables = build_tables(synthetic_results())
    table3 = _table(tables, "journal_table3")
    assert table3.columns[2:6] == ["Acc", "Acc (paper)", "F", "F (paper)"]
    rows = {(r[0], r[1]): r for r in table3.rows}
    independent_seg = rows[("Independent", "lung_segmentation")]
    assert independent_seg[2] == (0.5, 0.01) and independent_seg[3] == 0.99
    assert independent_seg[7] == 0.98                      # IoU (paper)
    baseline_cls = rows[("Baseline", "abnormality_classification")]
    assert baseline_cls[3] == 0.80 and baseline_cls[9] == 0.60
    assert "0.500 ± 0.010 | 0.990" in table3.to_markdown()


def test_cost_table_uses_mean_fold_time_and_adds_up_like_the_paper():
    table4 = _table(build_tables(synthetic_results()), "journal_table4")
    rows = {r[1]: r for r in table4.rows}
    assert rows["Shared source"][2] == pytest.approx(2.0) and rows["Shared source"][3] == 302.20
    head = rows["lung_segmentation head (independent)"]
    assert head[2] == pytest.approx(0.75)                  # (30 + 60) / 2 s per fold -> 0.75 min
    total = rows["Source + heads"]
    assert total[2] == pytest.approx(2.0 + 0.75 + 0.75) and total[4] == 1000 + 500 + 500
    assert total[5] == 1882279
    assert rows["Separate models"][4] == 1000 + 2000 + 2000


def test_tables_are_identical_when_rebuilt(tmp_path):
    results = synthetic_results()
    first = write_tables(results, tmp_path / "a")
    second = write_tables(results, tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    names = {p.name for p in first}
    assert {"journal_table3.md", "journal_table3.csv", "journal_table4.md", "statistics.md", "report.md"} <= names


def test_csv_splits_mean_and_std():
    table3 = _table(build_tables(synthetic_results()), "journal_table3")
    rows = list(csv.reader(io.StringIO(table3.to_csv())))
    assert rows[0][:5] == ["Method", "Task", "Acc", "Acc std", "Acc (paper)"]
    assert rows[1][:5] == ["Independent", "lung_segmentation", "0.5", "0.01", "0.99"]


def test_preprint_tables_map_urep_and_traditional():
    results = synthetic_results("urep_preprint_cxr_phantom")
    table2 = _table(build_tables(results), "preprint_table2")
    methods = {r[0] for r in table2.rows}
    assert methods == {"Independent", "Baseline"}
    seg = next(r for r in table2.rows if r[0] == "Independent" and r[1] == "lung_segmentation")
    assert seg[3] == 0.9871


def test_summary_table_lists_main_metric_per_method():
    summary = summary_table(synthetic_results())
    assert summary.columns == ["Task", "Independent", "Alternating", "Joint", "Baseline"]
    assert summary.rows[0][0] == "lung_segmentation (IoU, n=48)"  # the test set's size beside its score
    assert summary.rows[0][1] == pytest.approx(0.4)
    assert summary.rows[-1][0] == "denoising gaussian 0.03 (PSNR dB; noisy input 25.00)"
    assert summary.rows[-1][1] == 30.0


def test_denoising_table_has_the_noisy_input_and_the_classical_references():
    results = synthetic_results()
    results["config"]["paper_tables"] = ["journal_table2"]
    results["denoising_references"] = [
        {"noise": "gaussian 0.03", "method": "nl_means", "parameter": 5.0, "psnr": 31.0, "ssim": 0.85,
         "ms_ssim": 0.95},
        {"noise": "gaussian 0.03", "method": "gaussian_blur", "parameter": 0.7, "psnr": 28.0, "ssim": 0.7,
         "ms_ssim": 0.9}]
    table2 = _table(build_tables(results), "journal_table2")
    assert table2.columns[:4] == ["Noise", "Method", "PSNR (dB)", "PSNR (dB) (paper)"]
    assert [row[1] for row in table2.rows] == ["CDAE (source)", "Noisy input", "Non-local means (h 5)",
                                               "Gaussian blur (sigma 0.7)"]
    assert [row[2] for row in table2.rows] == [30.0, 25.0, 31.0, 28.0]
    assert [row[-1] for row in table2.rows] == [5.0, None, 6.0, 3.0]


def test_p_values_never_print_as_zero():
    results = synthetic_results()
    results["statistics"][0]["p_value"] = 3e-7
    table = _table(build_tables(results), "statistics")
    assert table.columns[5] == "N" and table.rows[0][5] == 24
    markdown, csv = table.to_markdown(), table.to_csv()
    assert "< 1e-4" in markdown and "0.0000" not in markdown
    assert "3e-07" in csv  # the CSV keeps the number


def test_paired_tests_show_which_method_they_favour():
    results = synthetic_results()
    results["statistics"] = [
        {"task": "t", "a": "independent", "b": "pca_logistic", "test": "mcnemar", "statistic": 1.0, "p_value": 0.2,
         "n": 40, "detail": {"b": 3, "c": 8, "method": "exact"}},
        {"task": "t", "a": "independent", "b": "pca_logistic", "test": "delong", "statistic": -1.5, "p_value": 0.13,
         "n": 40, "detail": {"auc_a": 0.57, "auc_b": 0.72, "note": ""}},
        {"task": "s", "a": "alternating", "b": "unet", "test": "wilcoxon", "statistic": 222.0, "p_value": 0.011,
         "n": 40, "detail": {"median_difference": -0.006, "note": ""}},
        {"task": "t", "a": "independent", "b": "joint", "test": "mcnemar", "statistic": 1.0, "p_value": 0.5, "n": 24},
    ]
    table = _table(build_tables(results), "statistics")
    column = table.columns.index("A - B")
    assert [row[column] for row in table.rows] == [-5, pytest.approx(-0.15), -0.006, None]
    assert [row[2] for row in table.rows[:3]] == ["PCA + logistic regression", "PCA + logistic regression", "U-Net"]


def test_format_p():
    from urep.experiments.tables import format_p

    assert [format_p(p) for p in (0.0, 5e-5, 4.2e-4, 0.0312, float("nan"))] == [
        "< 1e-4", "< 1e-4", "4.2e-04", "0.031", "-"]
