"""`experiment: multimix | urep_vs_multimix` through the runner: label budgets, both methods on the same split,
in-domain and cross-domain scores, paired tests, tables rebuilt from results.json."""

from __future__ import annotations

import dataclasses

import pytest

from urep.experiments.config import ConfigError, load_config, parse_config
from urep.experiments.multimix_experiment import MultiMixExperiment, budget_setting
from urep.experiments.scale import shrink


def _tiny(name: str, **multimix):
    config = shrink(load_config(name), patients=8)
    return dataclasses.replace(config, figures=False,
                               multimix=dataclasses.replace(config.multimix, **multimix))


@pytest.mark.parametrize("budget, expected", [
    ((10, 100), "cls=100,seg=10"), (("all", "all"), "cls=full,seg=full"), ((50, None), "cls=0,seg=50"),
])
def test_budget_setting_uses_the_paper_table_keys(budget, expected):
    assert budget_setting(*budget) == expected


@pytest.mark.parametrize("multimix, key", [
    ({"label_budgets": [[0, 10]]}, "multimix.label_budgets[0][0]"),
    ({"label_budgets": [[10, "some"]]}, "multimix.label_budgets[0][1]"),
    ({"variants": ["fixmatch"]}, "multimix.variants[0]"),
    ({"variants": []}, "multimix.variants"),
])
def test_bad_budgets_and_variants_name_the_key(multimix, key):
    raw = {"name": "mm", "experiment": "multimix",
           "data": {"seg": {"phantom": {"generator": "cxr"}}},
           "multimix": {"segmentation_data": "seg", "classification_data": "seg", **multimix}}
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw)


def test_unknown_multimix_options_are_rejected_by_name(tmp_path):
    config = load_config("multimix_cxr_phantom", overrides=["multimix.options.warmup=3"])
    with pytest.raises(ValueError, match="warmup"):
        MultiMixExperiment(config, tmp_path)


def test_budget_larger_than_the_training_set_is_an_early_error(tmp_path):
    config = _tiny("multimix_cxr_phantom", label_budgets=((500, 4),), variants=("unet",))
    experiment = MultiMixExperiment(config, tmp_path)
    experiment.load_data()
    with pytest.raises(ValueError, match="label budget 500"):
        experiment.run_budget((500, 4))


def test_urep_vs_multimix_runs_both_on_the_same_split_and_rebuilds_its_tables(tmp_path):
    from urep.experiments.runner import load_results, run_experiment, write_report

    config = _tiny("urep_vs_multimix_phantom", label_budgets=((4, 4),))
    results = run_experiment(config, tmp_path / "run")

    runs = {run["model"]: run for run in results["multimix"]["runs"]}
    assert set(runs) == {"multimix", "urep_independent"}
    for run in runs.values():
        assert run["setting"] == "cls=4,seg=4"
        assert {"accuracy", "f1_normal", "f1_abnormal", "dice", "hausdorff", "ssim"} <= set(run["in_domain"])
        assert {"dice", "hausdorff", "ssim", "n_segmentation"} <= set(run["cross_domain"])
        assert "accuracy" not in run["cross_domain"]  # no cross-domain classification source configured
    assert runs["multimix"]["in_domain"]["n_segmentation"] == runs["urep_independent"]["in_domain"]["n_segmentation"]
    assert results["data"]["budgets"]["cls=4,seg=4"]["segmentation"]["labelled"] == 4
    tests = {(t["test"], t["domain"]) for t in results["statistics"]}
    assert tests == {("mcnemar", "in_domain"), ("wilcoxon", "in_domain"), ("wilcoxon", "cross_domain")}
    assert all(0.0 <= t["p_value"] <= 1.0 for t in results["statistics"])

    tables = tmp_path / "run" / "tables"
    before = {p.name: p.read_bytes() for p in tables.iterdir()}
    assert {"label_budgets.md", "multimix_table2.md", "statistics.md", "data.csv"} <= set(before)
    for path in tables.iterdir():
        path.unlink()
    write_report(load_results(tmp_path / "run"), tmp_path / "run")
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == before


def test_multimix_kind_trains_a_single_task_variant_once_per_own_budget(tmp_path):
    from urep.experiments.runner import run_experiment

    config = _tiny("multimix_cxr_phantom", label_budgets=((4, 4), (4, "all")), variants=("unet",))
    results = run_experiment(config, tmp_path / "run")

    runs = results["multimix"]["runs"]
    assert [(run["model"], run["setting"]) for run in runs] == [("unet", "cls=0,seg=4")]
    assert "accuracy" not in runs[0]["in_domain"] and runs[0]["cross_domain"]["n_segmentation"] == 16
    assert [m["id"] for m in results["models"]] == ["budgets/cls=4,seg=4/multimix/unet"]
    assert results["statistics"] == []  # no U-Rep to compare with
    assert (tmp_path / "run" / "budgets" / "cls=4,seg=4" / "checkpoints" / "multimix" / "unet" /
            "best.weights.h5").is_file()
    assert (tmp_path / "run" / "tables" / "label_budgets.md").is_file()
