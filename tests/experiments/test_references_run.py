"""A tiny phantom run end to end: the references land in results.json, the tables and the report, and the
same config and seed give the same metrics a second time (reproducibility on CPU)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from urep.experiments.config import load_config
from urep.experiments.runner import run_experiment
from urep.experiments.scale import shrink


def _tiny_config():
    config = shrink(load_config("cxr_heterogeneous_phantom"), patients=8, folds=0, steps=1, epochs=1)
    return dataclasses.replace(
        config, strategies=("independent",), figures=False,
        baseline=dataclasses.replace(config.baseline, enabled=False),
        explain=dataclasses.replace(config.explain, gradcam=False),
        references=dataclasses.replace(config.references, unet=True, unet_model={"filters": [4, 8]},
                                       pca_components=5, pca_size=8))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    config = _tiny_config()
    runs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name) / "run"
        run_experiment(config, out)
        runs.append((out, json.loads((out / "results.json").read_text())))
    return runs


def test_tiny_run_reports_the_references(two_runs):
    out, results = two_runs[0]
    assert set(results["tasks"]["lung_segmentation"]["references"]) == {"mean_mask", "unet"}
    assert set(results["tasks"]["abnormality_classification"]["references"]) == {"majority", "pca_logistic"}
    majority = results["tasks"]["abnormality_classification"]["references"]["majority"]["metrics"]
    assert majority["auc"] == pytest.approx(0.5)
    unet = results["tasks"]["lung_segmentation"]["references"]["unet"]
    assert 0.0 <= unet["metrics"]["iou_pooled"] <= 1.0 and unet["n_test"] == results["data"]["tasks"][
        "lung_segmentation"]["test"]
    assert [m["method"] for m in results["models"] if m["role"] == "reference"] == ["unet"]
    metrics_md = (out / "tables" / "metrics.md").read_text()
    for label in ("Reference: Mean mask", "Reference: U-Net", "Reference: Majority class",
                  "Reference: PCA + logistic regression"):
        assert label in metrics_md and label in (out / "tables" / "journal_table3.md").read_text()
    report = (out / "report.md").read_text()
    assert "lung_segmentation, IoU (per image): independent" in report and "vs U-Net" in report
    assert "IoU pooled (soft)" in report and "compared with the per-image means" in report


def _metrics(results: dict) -> dict[str, float]:
    flat = {}
    for task, entry in results["tasks"].items():
        for group in ("methods", "references"):
            for method, summary in entry.get(group, {}).items():
                for key, value in summary["metrics"].items():
                    if value is not None:
                        flat[f"{task}/{method}/{key}"] = value
    for level in results.get("denoising", []):
        for key in ("psnr", "ssim"):
            flat[f"denoising/{level['noise']}/{key}"] = level[key]
    return flat


def test_same_config_and_seed_give_the_same_metrics(two_runs):
    first, second = (_metrics(results) for _, results in two_runs)
    assert len(first) > 20 and first.keys() == second.keys()
    differ = {k: (first[k], second[k]) for k in first if abs(first[k] - second[k]) >= 5e-4}
    assert not differ, f"metrics differ between two runs of the same config and seed: {differ}"


def test_in_domain_metrics_score_each_validation_patient_once(two_runs):
    out, results = two_runs[0]
    for task, entry in results["tasks"].items():
        summaries = {**entry["methods"], **entry["references"]}
        counts = {name: (s["in_domain"]["n"], s["in_domain"]["folds"]) for name, s in summaries.items()}
        # one split (folds=0): every method and reference scored on the same validation patients
        assert len(set(counts.values())) == 1, counts
        n, folds = next(iter(counts.values()))
        assert folds == 1 and n == results["data"]["tasks"][task]["val"] > 0
    majority = results["tasks"]["abnormality_classification"]["references"]["majority"]["in_domain"]["metrics"]
    assert majority["max_predicted_fraction"] == pytest.approx(1.0)  # one class for every validation patient
    table = (out / "tables" / "in_domain.md").read_text()
    assert "Reference: Majority class" in table and "optimistic" in table


def test_the_reference_unet_trains_on_the_baselines_augmented_batches(tmp_path, monkeypatch):
    """The U-Net reference follows the segmentation baseline's protocol, augmentation included."""
    from urep.data.batches import AugmentedBatches
    from urep.training import loop

    config = _tiny_config()
    augmentation = dataclasses.replace(config.training.baseline.augmentation, enabled=True, rotation=5.0,
                                       zoom=0.2, brightness=0.1, contrast=0.1, gamma=0.1)
    config = dataclasses.replace(config, training=dataclasses.replace(
        config.training, baseline=dataclasses.replace(config.training.baseline, augmentation=augmentation)))
    seen = {}
    real = loop.train_model

    def spy(model, loss, train, *args, **kwargs):
        seen[kwargs["phase"]] = train
        return real(model, loss, train, *args, **kwargs)

    monkeypatch.setattr(loop, "train_model", spy)
    run_experiment(config, tmp_path / "run")
    batches = seen["reference_unet/fold0/lung_segmentation"]
    assert isinstance(batches, AugmentedBatches)
    assert batches.masks is True  # the masks follow the images' geometric transform
    assert batches.options["zoom"] == 0.2 and batches.options["gamma"] == 0.1


def test_every_method_is_tested_against_the_references_with_the_auc_interval(two_runs):
    """Paired tests of the U-Rep method against each same-run reference (not references against each other),
    DeLong's on the AUC among them, and every binary AUC with its DeLong interval."""
    out, results = two_runs[0]
    found = {(t["task"], t["a"], t["b"], t["test"]) for t in results["statistics"]}
    assert found == {
        ("lung_segmentation", "independent", "mean_mask", "wilcoxon"),
        ("lung_segmentation", "independent", "unet", "wilcoxon"),
        ("abnormality_classification", "independent", "majority", "mcnemar"),
        ("abnormality_classification", "independent", "majority", "delong"),
        ("abnormality_classification", "independent", "pca_logistic", "mcnemar"),
        ("abnormality_classification", "independent", "pca_logistic", "delong"),
    }
    task = results["tasks"]["abnormality_classification"]
    for test in results["statistics"]:
        assert 0.0 <= test["p_value"] <= 1.0 and test["n"] == task["methods"]["independent"]["n_test"]
        if test["test"] == "delong":
            assert test["detail"]["auc_a"] == pytest.approx(task["methods"]["independent"]["metrics"]["auc"])
            assert test["detail"]["auc_b"] == pytest.approx(task["references"][test["b"]]["metrics"]["auc"])
    assert task["references"]["majority"]["metrics"]["auc"] == 0.5
    for entry in (task["methods"]["independent"], *task["references"].values()):
        metrics = entry["metrics"]
        assert metrics["auc_ci_low"] <= metrics["auc"] <= metrics["auc_ci_high"]
    assert "PCA + logistic regression" in (out / "tables" / "statistics.md").read_text(encoding="utf-8")
