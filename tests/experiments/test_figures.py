"""Run figures: what the curves draw, the paper's cost ratio, Grad-CAM and denoising panels, report links."""

from __future__ import annotations

import numpy as np
import pytest
from test_report import synthetic_results

from urep.experiments.figures import (
    _curves,
    _paper_cost_ratio,
    cost_chart,
    denoising_examples,
    gradcam_figure,
    training_curves,
)
from urep.experiments.report import write_tables


def test_curves_keep_train_and_val_loss_only():
    history = {"joint_loss": [2.0, 1.9], "lr": [1e-3, 1e-3],
               "seg": {"loss": [0.5, 0.4], "val_loss": [0.6, 0.5], "val_dice": [0.7, 0.8]}}
    assert _curves(history) == {"seg loss": [0.5, 0.4], "seg val_loss": [0.6, 0.5]}


def test_paper_cost_ratio_is_the_journal_table4_totals():
    minutes, params, citation = _paper_cost_ratio(synthetic_results())
    assert minutes == pytest.approx(459.47 / 312.82) and params == pytest.approx(3160070 / 1882279)
    assert "Table 4" in citation


def test_result_figures_are_written(tmp_path):
    results = synthetic_results()
    for model in results["models"]:
        model["history"] = {"loss": [1.0, 0.8], "val_loss": [1.1, 0.9]}
    assert training_curves(results, tmp_path / "curves.png").stat().st_size > 1000
    assert cost_chart(results, tmp_path / "cost.png").stat().st_size > 1000
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32))
    mask[8:24, 8:24] = 1
    assert gradcam_figure(rng.random((32, 32)), rng.random((8, 8)), mask, "t", tmp_path / "g.png").is_file()
    clean = rng.random((2, 32, 32, 1)).astype("float32")
    assert denoising_examples(clean, {"g": clean}, {"g": clean}, tmp_path / "d.png").is_file()


def test_report_embeds_figures_in_sub_folders(tmp_path):
    (tmp_path / "figures" / "gradcam").mkdir(parents=True)
    for name in ("figures/cost.png", "figures/gradcam/cls_000_normal.png"):
        (tmp_path / name).write_bytes(b"png")
    write_tables(synthetic_results(), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "![cost](figures/cost.png)" in report
    assert "#### gradcam" in report and "![cls_000_normal](figures/gradcam/cls_000_normal.png)" in report
