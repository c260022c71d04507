"""`urep demo`: the product's main path, end to end on tiny phantoms (both pipelines, report, explain)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from urep.cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--size", "tiny", "--out", str(out)]) == 0
    return out


def test_demo_writes_both_pipelines_in_the_run_layout(demo_dir, capsys):
    for part in ("cxr", "doppler"):
        for name in ("config.yaml", "results.json", "log.txt", "normalizer.json", "models/manifest.json",
                     "report.md", "tables/metrics.md", "figures/training_curves.png"):
            assert (demo_dir / part / name).is_file(), f"{part}/{name}"
    assert (demo_dir / "report.md").is_file()
    manifest = json.loads((demo_dir / "cxr" / "models" / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"lung_segmentation", "abnormality_classification", "denoising"}
    for entry in manifest["tasks"].values():
        assert (demo_dir / "cxr" / entry["path"]).is_file()
    doppler_manifest = json.loads((demo_dir / "doppler" / "models" / "manifest.json").read_text())
    assert "recommendation" in doppler_manifest and "rules" in doppler_manifest["recommendation"]


def test_cxr_part_compares_three_strategies_and_the_baseline(demo_dir):
    results = json.loads((demo_dir / "cxr" / "results.json").read_text())
    for task in ("lung_segmentation", "abnormality_classification"):
        methods = results["tasks"][task]["methods"]
        assert set(methods) == {"independent", "alternating", "joint", "baseline"}
        for entry in methods.values():
            assert 0.0 <= entry["metrics"]["accuracy"] <= 1.0
            assert entry["n_test"] == results["data"]["tasks"][task]["test"] > 0
    roles = {m["role"] for m in results["models"]}
    assert roles == {"source", "head", "baseline", "denoiser"}
    assert all(m["seconds"] > 0 and m["total_params"] >= m["trainable_params"] > 0 for m in results["models"])
    heads = [m for m in results["models"] if m["role"] in ("head", "baseline")]
    assert all("val_accuracy" in m["history"] and "val_accuracy" in m["best"] for m in heads)
    assert [row["noise"] for row in results["denoising"]] == ["gaussian 0.03"]
    assert results["denoising"][0]["psnr"] > 0
    tests = {(s["a"], s["b"], s["test"]) for s in results["statistics"]}
    assert ("independent", "joint", "mcnemar") in tests and ("independent", "baseline", "wilcoxon") in tests
    energy = results["explain"]["energy_by_class"]
    assert energy, "Grad-CAM energy inside the lung mask was measured"
    assert set(energy) <= {"normal", "abnormal"}
    assert sum(entry["n"] for entry in energy.values()) == results["explain"]["n"] > 0
    assert all(0.0 <= entry["mean"] <= 1.0 for entry in energy.values() if entry["n"])
    for entry in energy.values():  # with its references
        assert 0.0 < entry["mask_area"] < 1.0 and 0.0 <= entry["untrained"] <= 1.0
    report = (demo_dir / "cxr" / "report.md").read_text()
    assert "figures/gradcam/" in report and "Untrained model" in report
    assert results["environment"]["python"] and results["seed"] == 0
    table3 = (demo_dir / "cxr" / "tables" / "journal_table3.md").read_text()
    assert "Acc (paper)" in table3 and "| 0.990 |" in table3


def test_doppler_part_recommends_and_explains(demo_dir):
    results = json.loads((demo_dir / "doppler" / "results.json").read_text())
    assert results["source"]["kind"] == "dilated_cnn"
    assert set(results["tasks"]) == {"envelope_segmentation", "quality_assessment", "flow_classification"}
    rec = results["recommendation"]
    assert rec["n"] == sum(row["count"] for row in rec["counts"]) > 0
    assert 0.0 <= rec["agreement"] <= 1.0
    assert list((demo_dir / "doppler" / "figures" / "gradcam").glob("flow_classification_*.png"))


def test_report_rebuilds_identical_tables(demo_dir, tmp_path):
    copy = tmp_path / "cxr"
    shutil.copytree(demo_dir / "cxr", copy)
    before = {p.name: p.read_bytes() for p in (copy / "tables").iterdir()}
    shutil.rmtree(copy / "tables")
    assert main(["report", str(copy)]) == 0
    after = {p.name: p.read_bytes() for p in (copy / "tables").iterdir()}
    assert after == before


def test_demo_refuses_to_overwrite(demo_dir):
    with pytest.raises(SystemExit, match="already exists and is not empty") as raised:
        main(["demo", "--size", "tiny", "--out", str(demo_dir)])
    assert "--overwrite" in str(raised.value) and "--resume" not in str(raised.value)  # demo has no --resume


def test_log_txt_holds_the_per_epoch_lines_and_the_stage_lines(demo_dir):
    log = (demo_dir / "cxr" / "log.txt").read_text()
    assert "source epoch 1/1" in log
    first = re.search(r"demo_cxr_urep1: stage 1 of (\d+) done: load data", log)
    assert first is not None and f"stage {first.group(1)} of {first.group(1)} done: save models" in log


@pytest.mark.parametrize(("profile", "override", "expected"), [
    ("quick", None, False), ("tiny", None, False), ("full", None, False), ("quick", True, True), ("full", True, True)])
def test_demo_profiles_choose_xla_and_the_override_reaches_every_phase(profile, override, expected):
    from urep.experiments.demo import demo_configs

    for config in demo_configs(profile, jit_compile=override):
        phases = (config.training.source, config.training.heads, config.training.baseline)
        assert [phase.jit_compile for phase in phases] == [expected] * 3, (config.name, profile, override)
