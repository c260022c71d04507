"""Bad input to `urep run`: one message naming the key/file/value, exit status 2, the file system untouched.

Each test gives the exact bad input, checks the message fragment and exit status, and that no run folder is
left behind (or that an existing folder is exactly as it was).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from urep.cli import main

CONFIG = """\
name: rel
seed: 3
image_size: [32, 32]
data:
  d: {{adapter: folder, root: {root}}}
source: {{kind: cdae, data: [d], model: {{filters: [8, 8]}}}}
tasks:
  - {{name: cls, kind: classification, data: d, classes: [a, b]}}
strategies: [independent]
baseline: {{enabled: false}}
training:
  source: {{epochs: 1, batch_size: 4}}
  heads: {{epochs: 1, batch_size: 4}}
cross_validation: {{folds: 0}}
explain: {{gradcam: false}}
figures: false
"""


def make_dataset(root: Path, n: int = 8, labels=None, files=None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"im{i}.png"
        cv2.imwrite(str(root / "images" / name), np.full((32, 32), 20 * i, np.uint8))
        rows.append({"file": files[i] if files else name, "label": labels[i] if labels else "ab"[i % 2]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def write_config(tmp_path: Path, root: Path, extra: str = "") -> Path:
    path = tmp_path / "rel.yaml"
    path.write_text(CONFIG.format(root=root) + extra, encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error: exit status 2, one message on stderr, no traceback."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(stop.value) in err
    return str(stop.value)


def test_overwrite_refuses_a_folder_without_the_run_marker(tmp_path, capsys):
    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "important.csv").write_text("a,b\n1,2\n")
    before = snapshot(out)
    message = run_error(["run", str(config), "--out", str(out), "--overwrite"], capsys)
    assert f"refusing to delete {out}: it is not a urep run directory (no .urep-run marker" in message
    assert snapshot(out) == before


def test_overwrite_validates_the_config_before_deleting(tmp_path, capsys):
    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    config.write_text(config.read_text().replace("image_size: [32, 32]", "image_size: [42, 42]"))
    out = tmp_path / "run"
    out.mkdir()
    (out / ".urep-run").write_text("{}")
    (out / "results.json").write_text('{"old": true}')
    before = snapshot(out)
    message = run_error(["run", str(config), "--out", str(out), "--overwrite"], capsys)
    assert "image_size: the cdae source model cannot be built for image_size [42, 42]" in message
    assert "divisible by strides ** len(filters) = 4" in message
    assert snapshot(out) == before


def test_resume_and_overwrite_together_is_an_error(tmp_path, capsys):
    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    message = run_error(["run", str(config), "--out", str(tmp_path / "o"), "--resume", "--overwrite"], capsys)
    assert "--resume and --overwrite exclude each other" in message
    assert not (tmp_path / "o").exists()


def test_out_pointing_at_a_file(tmp_path, capsys):
    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    target = tmp_path / "results.txt"
    target.write_text("x")
    message = run_error(["run", str(config), "--out", str(target)], capsys)
    assert f"{target} is a file, not a folder" in message
    assert target.read_text() == "x"


def test_image_size_the_cdae_cannot_take_leaves_no_folder(tmp_path, capsys):
    """40x40 passes the config schema; the model check runs before phantoms are generated."""
    out = tmp_path / "out"
    message = run_error(["run", "cxr_denoising_phantom", "--set", "image_size=[40, 40]", "--out", str(out)],
                        capsys)
    assert "image_size: the cdae source model cannot be built for image_size [40, 40]" in message
    assert "cxr_denoising_phantom.yaml" in message
    assert not out.exists()


def test_malformed_set_yaml(tmp_path, capsys):
    out = tmp_path / "out"
    message = run_error(["run", "cxr_denoising_phantom", "--set", "image_size=[32, 32", "--out", str(out)],
                        capsys)
    assert "image_size: value '[32, 32' is not valid YAML" in message
    assert not out.exists()


def test_adapter_error_during_run_is_one_message_and_no_folder(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", labels=["a", "b", "a", "b", "a", "b", "a", "b"])
    (root / "images" / "im3.png").unlink()
    out = tmp_path / "out"
    message = run_error(["run", str(write_config(tmp_path, root)), "--out", str(out)], capsys)
    assert "folder: 1 problem(s) under" in message and "im3.png: image file not found" in message
    assert not out.exists()


def test_manifest_path_outside_the_root_is_refused_naming_the_row(tmp_path, capsys):
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.zeros((32, 32), np.uint8))
    files = [f"im{i}.png" for i in range(8)]
    files[2] = "../../secret.png"
    root = make_dataset(tmp_path / "ds", files=files)
    out = tmp_path / "out"
    message = run_error(["run", str(write_config(tmp_path, root)), "--out", str(out)], capsys)
    assert f"{root / 'manifest.csv'} line 4: file '../../secret.png' points outside {root / 'images'}" in message
    assert not out.exists()


def test_a_task_without_rows_is_reported_before_the_folder_exists(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", labels=["x"] * 8)
    out = tmp_path / "out"
    message = run_error(["run", str(write_config(tmp_path, root)), "--out", str(out)], capsys)
    assert "tasks[0].data: task 'cls': no usable rows in data 'd'" in message
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception) as raised:
        main(["--debug", "run", "cxr_denoising_phantom", "--set", "image_size=[40, 40]", "--out",
              str(tmp_path / "o")])
    assert type(raised.value).__name__ == "ConfigError"


def test_user_error_exit_status_from_the_command_line(tmp_path):
    """The real entry point: status 2, one line on stderr, no traceback."""
    done = subprocess.run([sys.executable, "-m", "urep", "run", "cxr_denoising_phantom", "--set", "seed=[1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "urep run: seed: value '[1' is not valid YAML" in done.stderr
    assert not (tmp_path / "o").exists()


# --- --resume checks the fingerprint ------------------------------------------------------------------------


def _fake_run(tmp_path: Path, config_path: Path, out: Path) -> None:
    """A run directory as `urep run` leaves it before training (marker, fingerprint, config.yaml)."""
    from urep.experiments.config import dump_config, load_config
    from urep.experiments.runner import FINGERPRINT_FILE, fingerprint, preflight
    from urep.io import atomic_write_json, atomic_write_text, prepare_run_dir

    config = load_config(config_path)
    run = prepare_run_dir(out)
    atomic_write_json(run / FINGERPRINT_FILE, fingerprint(config, preflight(config)))
    atomic_write_text(run / "config.yaml", dump_config(config))


def test_resume_with_another_seed_or_learning_rate_is_refused(tmp_path, capsys):
    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    out = tmp_path / "run"
    _fake_run(tmp_path, config, out)
    before = snapshot(out)
    message = run_error(["run", str(config), "--out", str(out), "--resume", "--seed", "7",
                         "--set", "training.heads.learning_rate=0.5"], capsys)
    assert f"cannot resume {out}: it was run with other settings" in message
    assert "seed: 3 -> 7" in message and "training.heads.learning_rate: 0.001 -> 0.5" in message
    assert snapshot(out) == before


def test_resume_after_the_data_changed_is_refused(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    config = write_config(tmp_path, root)
    out = tmp_path / "run"
    _fake_run(tmp_path, config, out)
    cv2.imwrite(str(root / "images" / "im0.png"), np.full((32, 32), 7, np.uint8) + np.eye(32, dtype=np.uint8))
    manifest = pd.read_csv(root / "manifest.csv")
    manifest.loc[0, "label"] = "b"
    manifest.to_csv(root / "manifest.csv", index=False)
    message = run_error(["run", str(config), "--out", str(out), "--resume"], capsys)
    assert "data source d: its files or manifest changed" in message


def test_fingerprint_ignores_cosmetic_keys(tmp_path):
    from urep.experiments.config import load_config
    from urep.experiments.runner import fingerprint

    config = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    plain = load_config(config)
    cosmetic = load_config(config, overrides=["description=another", "figures=true", "name=other"])
    changed = load_config(config, overrides=["seed=4"])
    assert fingerprint(plain, {"d": "h"}) == fingerprint(cosmetic, {"d": "h"})
    assert fingerprint(plain, {"d": "h"}) != fingerprint(changed, {"d": "h"})
    assert fingerprint(plain, {"d": "h"}) != fingerprint(plain, {"d": "other"})


def test_resume_of_the_same_run_passes_the_check(tmp_path):
    from urep.experiments.config import load_config
    from urep.experiments.runner import _check_resume, fingerprint, preflight

    config_path = write_config(tmp_path, make_dataset(tmp_path / "ds"))
    out = tmp_path / "run"
    _fake_run(tmp_path, config_path, out)
    config = load_config(config_path)
    _check_resume(out, fingerprint(config, preflight(config)))  # no error


def test_labels_with_stray_whitespace_are_kept_and_unknown_labels_counted(tmp_path, caplog):
    from urep.data import datasets
    from urep.experiments.config import load_config
    from urep.experiments.sources import task_frame

    root = make_dataset(tmp_path / "ds", labels=["a ", " b", "a", "b", "c", "c", "c", "b"])
    frame = datasets.load("folder", root)
    assert sorted(frame["label"]) == ["a", "a", "b", "b", "b", "c", "c", "c"]
    task = load_config(write_config(tmp_path, root)).tasks[0]
    with caplog.at_level("WARNING"):
        rows = task_frame(frame, task, "d")
    assert len(rows) == 5
    assert "task cls: 3 row(s) of data 'd' left out, their label is not one of ['a', 'b']: 'c' (3)" in caplog.text


def test_demo_overwrite_keeps_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    message = run_error(["demo", "--out", str(out), "--overwrite"], capsys)
    assert "not a urep run directory" in message
    assert (out / "thesis.tex").read_text() == "years of work"


def test_report_names_a_damaged_results_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text('{"schema": 1, "config": {')
    message = run_error(["report", str(run)], capsys)
    assert f"{run / 'results.json'} is damaged: not valid JSON" in message


def test_a_resumed_run_dir_is_marked_and_json_written_with_the_umask(tmp_path):
    import os

    from urep.io import MARKER, atomic_write_json, prepare_run_dir

    previous = os.umask(0o027)
    try:
        run = prepare_run_dir(tmp_path / "r")
        path = atomic_write_json(run / "results.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (run / MARKER).is_file()
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert json.loads(path.read_text()) == {"a": 1}
