"""`urep report RUN_DIR`: tables and figures rebuilt from results.json alone, byte-identical tables."""

from __future__ import annotations

import json

import pytest

from urep.cli import main
from urep.experiments.config import config_to_dict, load_config


def _results() -> dict:
    config = config_to_dict(load_config("cxr_heterogeneous_phantom"))
    metrics = {"accuracy": 0.9, "f1": 0.8, "iou": 0.7, "mcc": 0.6}
    methods = {m: {"metrics": metrics, "std": {}, "folds": [metrics], "ensemble": None, "n_test": 10}
               for m in ("independent", "alternating", "joint", "baseline")}
    model = {"id": "source/source", "role": "source", "method": "urep", "task": None, "tasks": [], "fold": None,
             "seconds": 60.0, "trainable_params": 10, "total_params": 12, "best": {},
             "history": {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7]}}
    return {"schema": 1, "config": config, "seed": 0, "models": [model], "statistics": [], "denoising": [],
            "tasks": {t["name"]: {"kind": t["kind"], "methods": methods} for t in config["tasks"]}}


def test_report_rebuilds_tables_identically(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results()), encoding="utf-8")
    assert main(["report", str(run)]) == 0
    first = {p.name: p.read_bytes() for p in (run / "tables").iterdir()}
    assert {"journal_table3.md", "journal_table3.csv", "journal_table4.md", "metrics.md"} <= set(first)
    assert (run / "figures" / "training_curves.png").is_file()
    assert main(["report", str(run)]) == 0
    assert {p.name: p.read_bytes() for p in (run / "tables").iterdir()} == first
    assert "rebuilt" in capsys.readouterr().out
    assert "| Independent | lung_segmentation | 0.900 | 0.990 |" in first["journal_table3.md"].decode()


def test_report_on_a_folder_without_results(tmp_path):
    with pytest.raises(SystemExit, match="holds no results.json"):
        main(["report", str(tmp_path)])


def test_report_rejects_foreign_json(tmp_path):
    (tmp_path / "results.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SystemExit, match="not a urep results record"):
        main(["report", str(tmp_path)])
