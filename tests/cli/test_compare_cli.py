"""`urep compare RUN_DIR...`: several runs side by side."""

from __future__ import annotations

import csv
import json

import pytest

from urep.cli import main
from urep.experiments.config import config_to_dict, load_config


def _write_run(folder, accuracy: float, seconds: float):
    config = config_to_dict(load_config("cxr_heterogeneous_phantom"))
    metrics = {"accuracy": accuracy, "f1": accuracy - 0.1}
    tasks = {"abnormality_classification": {"kind": "classification", "methods": {
        "independent": {"metrics": metrics, "std": {"accuracy": 0.02}},
        "baseline": {"metrics": {"accuracy": accuracy - 0.2}, "std": {}}}}}
    models = [{"id": "source/source", "role": "source", "method": "urep", "fold": None, "seconds": seconds,
               "total_params": 100, "trainable_params": 100},
              {"id": "b", "role": "baseline", "method": "baseline", "fold": 0, "seconds": 2 * seconds,
               "total_params": 300, "trainable_params": 300}]
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"schema": 1, "config": config, "tasks": tasks,
                                                     "models": models}), encoding="utf-8")
    return folder


def test_compare_puts_runs_side_by_side(tmp_path, capsys):
    a = _write_run(tmp_path / "a", 0.8, 60.0)
    b = _write_run(tmp_path / "b", 0.7, 120.0)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "| abnormality_classification | Independent | accuracy | 0.800 ± 0.020 | 0.700 ± 0.020 |" in out
    rows = list(csv.reader((tmp_path / "cmp.csv").open()))
    header = rows[0]
    assert header[:3] == ["Task", "Method", "Metric"] and len(header) == 3 + 4   # two runs, value + std each
    cost = [r for r in rows if r[0] == "cost" and r[2] == "minutes"]
    assert cost[0][3] == "1.0" and cost[0][5] == "2.0"          # U-Rep minutes of run a and b
    assert cost[1][3] == "2.0"                                  # baseline minutes of run a


def test_compare_needs_results(tmp_path):
    with pytest.raises(SystemExit, match="holds no results.json"):
        main(["compare", str(tmp_path)])
