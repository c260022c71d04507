"""`urep run`: a config into a run directory; validation errors; refusal to overwrite; `--resume`."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from urep.cli import main


@pytest.fixture(scope="module")
def denoising_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "denoise"
    assert main(["run", "cxr_denoising_phantom", "--tiny", "--out", str(out), "--seed", "3"]) == 0
    return out


def test_run_writes_results_and_the_denoising_table(denoising_run, capsys):
    results = json.loads((denoising_run / "results.json").read_text())
    assert results["seed"] == 3 and results["config"]["seed"] == 3
    assert [row["noise"] for row in results["denoising"]] == [
        "gaussian 0.01", "gaussian 0.03", "gaussian 0.05", "gaussian 0.07", "gaussian 0.1", "poisson 100"]
    # the noisy inputs' PSNR is the noise's own: about -20 log10(sigma) dB for Gaussian noise on [0, 1] images
    # (clipping at 0 and 1 adds a little)
    for row in results["denoising"][:5]:
        assert row["noisy_psnr"] == pytest.approx(-20 * np.log10(row["level"]), abs=0.5), row["noise"]
    assert all(np.isfinite(row["psnr"]) and row["n"] > 0 for row in results["denoising"])
    table = (denoising_run / "tables" / "journal_table2.md").read_text()
    assert "PSNR (dB) (paper)" in table and "39.050" in table and "28.350" in table
    resolved = yaml.safe_load((denoising_run / "config.yaml").read_text())
    assert resolved["name"] == "cxr_denoising_phantom" and resolved["image_size"] == [32, 32]
    assert (denoising_run / "figures" / "denoising_examples_source.png").is_file()
    assert "Shared" not in capsys.readouterr().err


def test_run_writes_where_run_dir_says(denoising_run):
    """Every file of the run is where `RunDir` names it, and nothing lies outside the layout."""
    from urep.run_dir import RunDir

    layout = RunDir(denoising_run)
    for path in (layout.marker, layout.config, layout.log, layout.results, layout.fingerprint, layout.report,
                 layout.manifest, layout.normalizer, layout.model("source", "denoising"),
                 layout.table("journal_table2", "md"), layout.checkpoint("source") / "state.json"):
        assert path.is_file(), path
    for folder in (layout.figures, layout.tensorboard, layout.data):
        assert folder.is_dir() and any(folder.iterdir()), folder
    named = {p.name for p in (layout.marker, layout.config, layout.log, layout.results, layout.fingerprint,
                              layout.report, layout.tables, layout.figures, layout.models, layout.normalizer,
                              layout.checkpoints, layout.tensorboard, layout.data)}
    assert {p.name for p in denoising_run.iterdir()} <= named


def test_run_refuses_to_overwrite(denoising_run):
    with pytest.raises(SystemExit, match="already exists and is not empty"):
        main(["run", "cxr_denoising_phantom", "--tiny", "--out", str(denoising_run)])


def test_resume_restores_finished_phases_instead_of_retraining(denoising_run, tmp_path, monkeypatch):
    """A run interrupted after training (no results.json yet) and resumed: the source phase's final weights
    come from its checkpoint, no epoch runs, and the record is the uninterrupted run's."""
    from urep.training.loop import PhaseEngine

    run = tmp_path / "interrupted"
    shutil.copytree(denoising_run, run)
    (run / "results.json").unlink()
    state = run / "checkpoints" / "source" / "state.json"
    saved = state.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished phase was trained again")

    monkeypatch.setattr(PhaseEngine, "_one_epoch", no_training)
    assert main(["run", "cxr_denoising_phantom", "--tiny", "--out", str(run), "--seed", "3", "--resume"]) == 0
    assert state.read_bytes() == saved
    assert "phase source already finished" in (run / "log.txt").read_text()
    first = json.loads((denoising_run / "results.json").read_text())
    resumed = json.loads((run / "results.json").read_text())
    assert resumed["resumed"] is True
    source = [next(m for m in r["models"] if m["role"] == "source") for r in (first, resumed)]
    assert source[0]["history"] == source[1]["history"]
    assert [row["psnr"] for row in resumed["denoising"]] == pytest.approx([row["psnr"] for row in first["denoising"]])


def test_config_error_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndata: {}\nsource: {data: []}\nimage_sise: [32, 32]\n", encoding="utf-8")
    with pytest.raises(SystemExit) as err:
        main(["run", str(path), "--out", str(tmp_path / "out")])
    assert "image_sise" in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_data_root_is_reported_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["run", "cxr_heterogeneous", "--data-root", str(tmp_path), "--out", str(tmp_path / "out")])
    message = str(err.value)
    assert "data.rsna.root" in message and "cxr_heterogeneous.yaml" in message
    assert not (tmp_path / "out").exists()


def test_unknown_config_name(tmp_path):
    with pytest.raises(SystemExit, match="no shipped config"):
        main(["run", "no_such_experiment", "--out", str(tmp_path / "out")])


@pytest.mark.skipif(os.environ.get("UREP_SLOW_TESTS") != "1", reason="runs both preprint parts; set UREP_SLOW_TESTS=1")
def test_suite_runs_every_part(tmp_path):
    out = tmp_path / "preprint"
    assert main(["run", "urep_preprint_phantom", "--tiny", "--out", str(out)]) == 0
    assert json.loads((out / "suite.json").read_text())["parts"] == ["urep_preprint_cxr_phantom",
                                                                    "urep_preprint_doppler_phantom"]
    for part in ("urep_preprint_cxr_phantom", "urep_preprint_doppler_phantom"):
        assert (out / part / "results.json").is_file()
    assert (out / "urep_preprint_doppler_phantom" / "tables" / "preprint_table4.md").is_file()
