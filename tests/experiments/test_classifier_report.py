"""The constant-classifier flag in a method's summary and as a warning line in report.md; the measured-only
classifier columns (balanced accuracy, AUC, predicted-positive fraction) of the paper tables."""

from __future__ import annotations

import numpy as np

from urep.experiments.evaluation import summarise_method


def test_summary_lists_constant_folds_and_the_report_prints_a_warning(tmp_path):
    from test_report import synthetic_results

    from urep.experiments.report import write_tables

    y = np.array([0] * 6 + [1] * 6)
    good = np.stack([1 - y, y], axis=1).astype(np.float32) * 0.8 + 0.1
    constant = np.tile([[0.2, 0.8]], (12, 1))
    summary = summarise_method("classification", y, [good, constant], ("normal", "abnormal"))
    assert [f["fold"] for f in summary["constant_predictions"]] == [1]
    assert summary["folds"][0]["balanced_accuracy"] == 1.0 and summary["folds"][1]["balanced_accuracy"] == 0.5
    results = synthetic_results()
    results["warnings"] = ["WARNING: abnormality_classification / joint fold 1 predicts 'abnormal' for 100%"]
    write_tables(results, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**WARNING: abnormality_classification / joint fold 1 predicts 'abnormal' for 100%**" in report
    table3 = (tmp_path / "tables" / "journal_table3.md").read_text()
    assert "| BalAcc | AUC (paper)" not in table3 and "BalAcc" in table3 and "Pred+ frac" in table3
