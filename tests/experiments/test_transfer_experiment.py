"""`experiment: pairwise_transfer`: every task alone and every pair jointly, the transfer matrix written."""

from __future__ import annotations

import json

import pytest
from test_cross_stitch_experiment import tiny_config

from urep.experiments.config import ConfigError, load_config, parse_config


def test_pairwise_transfer_writes_the_matrix_table_figure_and_results(tmp_path):
    from urep.experiments.runner import run_experiment

    config = parse_config(tiny_config(experiment="pairwise_transfer", strategies=["joint"], figures=True))
    run_experiment(config, tmp_path / "run")
    run = tmp_path / "run"
    transfer = json.loads((run / "results.json").read_text())["transfer"]
    assert transfer["metric"] == {"lungs": "iou", "abnormal": "accuracy"}
    assert set(transfer["alone"]) == {"lungs", "abnormal"}
    assert transfer["matrix"]["lungs"]["lungs"] is None
    by_pair = {(p["task"], p["partner"]): p["score"] for p in transfer["pairs"]}
    for task, partner in (("lungs", "abnormal"), ("abnormal", "lungs")):
        assert transfer["matrix"][task][partner] == pytest.approx(by_pair[task, partner] - transfer["alone"][task])
    table = (run / "tables" / "transfer_matrix.csv").read_text().splitlines()
    assert table[0] == "Task,Metric,Alone,with lungs,with abnormal" and len(table) == 3
    assert (run / "tables" / "transfer_matrix.md").is_file()
    assert (run / "figures" / "transfer_matrix.png").stat().st_size > 0
    assert "transfer_matrix" in (run / "report.md").read_text()


def test_pairwise_transfer_config():
    config = load_config("cxr_transfer_phantom")
    assert config.experiment == "pairwise_transfer" and len(config.tasks) == 3
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        parse_config(tiny_config(experiment="pairwise_transfer", strategies=["joint"],
                                 tasks=[{"name": "lungs", "kind": "segmentation", "data": "phantoms"}]))
