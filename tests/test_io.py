"""`urep.io`: atomic writes survive SIGKILL; run directories carry a marker and are deleted only with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from urep.io import (
    MARKER,
    ModelFileError,
    RunDirError,
    RunDirExistsError,
    atomic_write_json,
    load_keras_model,
    prepare_run_dir,
    remove_run_dir,
)

WRITER = """
import sys
from urep.io import atomic_write_json
path = sys.argv[1]
i = 0
while True:
    atomic_write_json(path, {"i": i, "payload": [i] * 200000, "complete": True})
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_while_writing_leaves_the_old_complete_file(tmp_path):
    """A process killed with SIGKILL in the middle of writing results.json leaves a complete earlier version
    (or no file when it never finished one), never a partial one."""
    path = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    seen = []
    for delay in (0.0, 0.05, 0.13, 0.21, 0.34):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
        deadline = time.monotonic() + 60
        while delay and not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
        if not path.exists():
            assert delay == 0.0, "a file existed before this kill and must survive it"
            continue
        record = json.loads(path.read_text())  # a partial file would not parse
        assert record["complete"] is True and record["payload"] == [record["i"]] * 200000
        seen.append(record["i"])
    assert len(seen) >= 4


def test_marker_and_overwrite_rules(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    assert (run / MARKER).is_file()
    atomic_write_json(run / "results.json", {"a": 1})
    with pytest.raises(RunDirExistsError, match="already exists and is not empty; pass --overwrite"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, overwrite=True) == run and not (run / "results.json").exists()
    with pytest.raises(RunDirError, match="--resume and --overwrite exclude each other"):
        prepare_run_dir(run, overwrite=True, resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("x")
    with pytest.raises(RunDirError, match=f"refusing to delete {foreign}: it is not a urep run directory"):
        prepare_run_dir(foreign, overwrite=True)
    with pytest.raises(RunDirError, match="not a urep run directory"):
        remove_run_dir(foreign)
    assert (foreign / "data.csv").read_text() == "x"
    assert prepare_run_dir(foreign, resume=True) == foreign and not (foreign / MARKER).exists()
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        prepare_run_dir(target)


def test_damaged_keras_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file .*missing.keras not found"):
        load_keras_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"\x00" * 50)
    with pytest.raises(ModelFileError, match=r"bad\.keras is damaged or not a \.keras file \(not a zip archive; "
                                             r"50 bytes\)"):
        load_keras_model(bad)
