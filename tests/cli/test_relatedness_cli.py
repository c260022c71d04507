"""`urep relatedness`: standalone and experiment configs, flags, output files, and config errors."""

from __future__ import annotations

import json
import logging

import keras
import pandas as pd
import pytest
import yaml

from urep.cli import main
from urep.data.phantoms import make_cxr_phantoms, make_doppler_phantoms
from urep.experiments.relatedness import load_relatedness_config
from urep.relatedness import TABLE_COLUMNS


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_cxr_phantoms(root / "cxr_source", n_patients=20, views_per_patient=1, size=64, seed=0)
    make_cxr_phantoms(root / "cxr_target", n_patients=10, views_per_patient=1, size=64, seed=1)
    make_doppler_phantoms(root / "doppler", n_patients=4, images_per_patient=3, size=64, seed=0)
    return root


def write_config(path, **overrides):
    config = {
        "source": {"dataset": "folder", "root": "cxr_source"},
        "targets": {"cxr": {"dataset": "folder", "root": "cxr_target"},
                    "doppler": {"dataset": "folder", "root": "doppler"}},
        "image_size": [64, 64],
        "n_permutations": 30,
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_standalone_config_prints_table_warns_and_writes_output(data_root, tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="urep.relatedness")
    config = write_config(tmp_path / "relatedness.yaml")
    out = tmp_path / "out" / "table.csv"
    code = main(["relatedness", str(config), "--data-root", str(data_root), "--output", str(out),
                 "--fail-unrelated"])
    assert code == 3
    printed = capsys.readouterr().out
    assert "frechet_normalized" in printed and "unrelated to the source: doppler" in printed
    assert any("'doppler' looks unrelated" in r.getMessage() for r in caplog.records)
    table = pd.read_csv(out, index_col="target")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert bool(table.loc["cxr", "related"]) and not bool(table.loc["doppler", "related"])
    assert table.loc["cxr", "n_source"] == 20 and table.loc["doppler", "n_target"] == 12


def test_threshold_flag_overrides_and_json_output(data_root, tmp_path, capsys):
    config = write_config(tmp_path / "relatedness.yaml", threshold=0.001)
    out = tmp_path / "table.json"
    code = main(["relatedness", str(config), "--data-root", str(data_root), "--threshold", "1000",
                 "--output", str(out), "--fail-unrelated", "--max-images", "10"])
    assert code == 0
    assert "unrelated to the source" not in capsys.readouterr().out
    rows = json.loads(out.read_text())["table"]
    assert [row["target"] for row in rows] == ["cxr", "doppler"]
    assert all(row["related"] for row in rows)
    assert rows[0]["n_source"] == 10  # --max-images caps each set


def test_encoder_from_config_sets_features_and_image_size(data_root, tmp_path, capsys):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="encoder_out")(inputs)
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)).save(tmp_path / "source.keras")
    config = write_config(tmp_path / "relatedness.yaml", encoder="source.keras")
    raw = yaml.safe_load(config.read_text())
    del raw["image_size"]
    config.write_text(yaml.safe_dump(raw))
    parsed = load_relatedness_config(config)
    assert parsed.encoder == str(tmp_path / "source.keras") and parsed.image_size is None
    assert main(["relatedness", str(config), "--data-root", str(data_root)]) == 0
    assert "doppler" in capsys.readouterr().out


def test_experiment_config_compares_source_data_with_task_data(tmp_path, capsys):
    phantom = {"generator": "cxr", "n_patients": 6, "per_patient": 1, "size": 32}
    config = {
        "name": "tiny",
        "image_size": [32, 32],
        "data": {"src": {"phantom": {**phantom, "seed": 1}},
                 "heads": {"phantom": {**phantom, "seed": 2}},
                 "dop": {"phantom": {"generator": "doppler", "n_patients": 2, "per_patient": 3, "size": 32}}},
        "source": {"kind": "cdae", "data": ["src"]},
        "tasks": [{"name": "seg", "kind": "segmentation", "data": "heads", "test_data": "dop"}],
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["relatedness", str(path), "--n-permutations", "20"]) == 0
    printed = capsys.readouterr().out
    table_lines = [line.split()[0] for line in printed.splitlines()[2:] if line.strip()]
    assert table_lines[:2] == ["heads", "dop"]
    assert "unrelated to the source: dop" in printed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: unknown key 'colour'"),
        ({"targets": {}}, "targets: needs at least one target"),
        ({"source": {"dataset": "nope", "root": "cxr_source"}}, "source.dataset: unknown dataset 'nope'"),
        ({"source": {"root": "cxr_source"}}, "source.dataset: required key is missing"),
        ({"targets": {"t": {"dataset": "folder", "root": "missing"}}}, "targets.t.root: data folder"),
        ({"alpha": 2}, "alpha: must be in (0, 1), got 2"),
        ({"image_size": "big"}, "image_size"),
        ({"threshold": -1}, "threshold: must be positive, got -1"),
        ({"seed": -1}, "seed: must be at least 0, got -1"),
        ({"source": {"dataset": "folder", "root": "cxr_source", "limit": 1}}, "source.limit: must be at least 2"),
        ({"image_size": 4}, "image_size: expected sizes >= 8, got 4"),
    ],
)
def test_config_errors_name_key_and_file(data_root, tmp_path, change, message):
    config = write_config(tmp_path / "bad.yaml", **change)
    with pytest.raises(SystemExit) as info:
        main(["relatedness", str(config), "--data-root", str(data_root)])
    text = str(info.value)
    assert message in text and str(config) in text


def test_missing_or_invalid_files_and_bad_output(tmp_path):
    with pytest.raises(SystemExit, match="config file not found"):
        main(["relatedness", str(tmp_path / "none.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(SystemExit, match="not valid YAML"):
        main(["relatedness", str(bad)])
    config = write_config(tmp_path / "ok.yaml")
    with pytest.raises(SystemExit, match="--output must end in .csv or .json"):
        main(["relatedness", str(config), "--output", str(tmp_path / "table.txt")])
