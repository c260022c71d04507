"""Console logging of the CLI (quiet TensorFlow, per-epoch detail only with -v) and the stage progress lines."""

from __future__ import annotations

import logging
import time

import pytest

from urep.logs import _DetailFilter, quiet_tensorflow
from urep.progress import Stages, format_duration
from urep.training.run import ProgressBar


def _record(name: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


def test_console_filter_hides_per_epoch_detail_but_keeps_stages_and_warnings():
    keep = _DetailFilter()
    assert not keep.filter(_record("urep.training.loop"))
    assert not keep.filter(_record("urep.training"))
    assert keep.filter(_record("urep.training.loop", logging.WARNING))
    assert keep.filter(_record("urep.progress"))
    assert keep.filter(_record("urep.trainingx"))  # only the package and its children are detail


def test_quiet_tensorflow_sets_the_level_but_keeps_the_users(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet_tensorflow(verbose=False)
    import os

    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert logging.getLogger("tensorflow").level == logging.ERROR
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    quiet_tensorflow(verbose=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_stages_log_a_line_per_stage_with_its_time_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="urep.progress")
    stages = Stages(["load", "train", "save"], "exp", weights=[1, 2, 1])
    with stages.stage("load"):
        time.sleep(0.02)
    with stages.stage("train"):
        pass
    with stages.stage("save"):
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "exp: 3 stages follow: load, train, save"
    assert lines[1].startswith("exp: stage 1 of 3 done: load in 0 s") and "ETA ~" in lines[1]
    assert lines[3].startswith("exp: stage 3 of 3 done: save") and "ETA" not in lines[3]
    assert stages.eta(30.0) == 0.0  # nothing left


def test_stages_eta_scales_elapsed_time_by_the_weights_left():
    stages = Stages(["a", "b", "c"], "x", weights=[1, 2, 1])
    stages.done.append("a")
    assert stages.eta(10.0) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="unknown stage 'z'"):
        with stages.stage("z"):
            pass
    with pytest.raises(ValueError, match="weights must be 2 non-negative"):
        Stages(["a", "b"], "x", weights=[1])


def test_format_duration():
    assert [format_duration(s) for s in (42, 210, 9000)] == ["42 s", "3.5 min", "2.5 h"]


def test_progress_bar_draws_one_keras_progbar_per_phase(capsys):
    bar = ProgressBar(4, "phase p (2 epochs)", enabled=True)
    for step in range(3):
        bar.update(1, loss=0.5 - step / 10)
    bar.close()  # stopped early: still ends the line
    out = capsys.readouterr().out
    assert out.startswith("phase p (2 epochs)\n") and "3/4" in out and "loss: 0.3000" in out and out.endswith("\n")
    quiet = ProgressBar(4, "q", enabled=False)
    quiet.update(2, loss=1.0)
    quiet.close()
    assert quiet.count == 2 and capsys.readouterr().out == ""
