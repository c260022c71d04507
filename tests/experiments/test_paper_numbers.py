"""Paper numbers as data: spot checks against the papers' tables and the lookup helpers."""

from __future__ import annotations

import math

import pytest

from urep.experiments.paper_numbers import PAPER_TABLES, paper_row, paper_value


@pytest.mark.parametrize(("table", "method", "task", "metric", "expected"), [
    ("journal_table2", "gaussian_1", "denoising", "psnr", 39.05),
    ("journal_table2", "gaussian_5", "denoising", "ms_ssim", 0.88),
    ("journal_table2", "poisson_1", "denoising", "ssim", 0.93),
    ("journal_table3", "independent", "lung_segmentation", "iou", 0.98),
    ("journal_table3", "joint", "lung_segmentation", "accuracy", 0.92),
    ("journal_table3", "baseline", "abnormality_classification", "mcc", 0.60),
    ("journal_table4", "proposed", "total", "params", 1882279),
    ("journal_table4", "baseline", "total", "minutes", 459.47),
    ("journal_table4", "baseline", "lung_segmentation", "minutes", 148.02),
    ("journal_table5", "alternating", "viral_vs_normal", "mcc", 0.90),
    ("journal_table5", "baseline", "bacterial_vs_viral", "f1", 0.75),
    ("journal_table6", "proposed", "total", "minutes", 4.81),
    ("journal_table6", "baseline", "total", "minutes", 34.15),
    ("journal_table7", "independent", "quality_assessment", "mcc", 0.92),
    ("journal_table7", "baseline", "flow_classification", "f1", 0.88),
    ("journal_table8", "proposed", "total", "params", 1838042),
    ("journal_table8", "baseline", "envelope_segmentation", "minutes", 130.02),
    ("journal_table9", "joint", "ma_vs_tr", "mcc", 0.95),
    ("journal_table10", "baseline", "total", "params", 4720518),
    ("preprint_denoising", "gaussian_1", "denoising", "psnr", 39.74),
    ("preprint_table2", "urep", "abnormality_classification", "auc", 0.88),
    ("preprint_table4", "traditional", "envelope_segmentation", "iou", 0.954),
    ("preprint_table5", "genesis", "envelope_segmentation", "iou", 0.92),
])
def test_spot_values(table, method, task, metric, expected):
    assert paper_value(table, method, task, metric) == pytest.approx(expected)


def test_cells_the_paper_leaves_empty_are_none():
    assert paper_value("journal_table3", "independent", "lung_segmentation", "mcc") is None
    assert paper_value("journal_table3", "independent", "no_such_task", "accuracy") is None
    assert paper_row("journal_table3", "independent", "lung_segmentation").values["iou"] == 0.98


def test_unknown_table_raises_naming_the_known_ones():
    with pytest.raises(KeyError, match="journal_table3"):
        paper_value("journal_table99", "independent", "x", "accuracy")


def test_cost_totals_add_up_where_the_paper_adds_them():
    for key in ("journal_table4", "journal_table8", "journal_table10"):
        rows = {(r.method, r.task): r.values for r in PAPER_TABLES[key].rows}
        parts = sum(v["params"] for (m, t), v in rows.items() if m == "proposed" and t != "total")
        assert parts == rows[("proposed", "total")]["params"], key


def test_every_row_has_only_declared_metrics():
    for table in PAPER_TABLES.values():
        for row in table.rows:
            assert set(row.values) <= set(table.metrics), (table.key, row)
            assert all(isinstance(v, (int, float)) and (v == v or math.isnan(v)) for v in row.values.values())
