"""`experiment: multimix | urep_vs_multimix` through the runner: label budgets, both methods on the same split,
in-domain and cross-domain scores, paired tests, tables rebuilt from results.json."""

from __future__ import annotations

import dataclasses

import numpy as np
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
    for run in runs.values():  # balanced scores beside accuracy, so a constant classifier shows
        assert {"balanced_accuracy", "auc", "positive_fraction"} <= set(run["in_domain"])
        assert 0.0 <= run["in_domain"]["positive_fraction"] <= 1.0
    # Both methods trained on the same labelled images (rows and pixels), MultiMix also on the stated pools.
    budget = results["data"]["budgets"]["cls=4,seg=4"]
    given = {(e["method"], e["task"]): e for e in results["multimix"]["labelled"]}
    assert set(given) == {(m, t) for m in ("multimix", "urep") for t in ("segmentation", "classification")}
    train = {t: results["data"]["tasks"][t]["train"] for t in ("segmentation", "classification")}
    for task in ("segmentation", "classification"):
        mm, ur = given[("multimix", task)], given[("urep", task)]
        assert mm["rows"] == ur["rows"] and len(mm["rows"]) == 4 and mm["digest"] == ur["digest"]
        assert budget[task] == {"labelled": 4, "unlabelled": train[task] - 4}
        assert mm["unlabelled_images"] == budget[task]["unlabelled"] > 4
    assert "random patient split" in results["data"]["split_note"]
    tests = {(t["test"], t["domain"]) for t in results["statistics"]}
    # DeLong needs both classes among the (2) tiny test images; the phantom split gives one here
    delong = {("delong", "in_domain")} if results["multimix"]["runs"][0]["in_domain"]["auc"] is not None else set()
    assert tests == {("mcnemar", "in_domain"), ("wilcoxon", "in_domain"), ("wilcoxon", "cross_domain"), *delong}
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


def test_the_ablation_variants_are_tested_against_the_full_multimix(tmp_path):
    from urep.experiments.runner import run_experiment

    config = _tiny("multimix_cxr_phantom", label_budgets=((4, 4),), variants=("multimix", "umtls"), seeds=(3,))
    results = run_experiment(config, tmp_path / "run")

    assert [run["model"] for run in results["multimix"]["runs"]] == ["multimix", "umtls"]
    pairs = {(t["a"], t["b"], t["test"], t["domain"]) for t in results["statistics"]}
    delong = {("multimix", "umtls", "delong", "in_domain")} \
        if results["multimix"]["runs"][0]["in_domain"]["auc"] is not None else set()
    assert pairs == {("multimix", "umtls", "mcnemar", "in_domain"), ("multimix", "umtls", "wilcoxon", "in_domain"),
                     ("multimix", "umtls", "wilcoxon", "cross_domain"), *delong}
    assert all(t["n"] > 0 and 0.0 <= t["p_value"] <= 1.0 for t in results["statistics"])
    assert "umtls" in (tmp_path / "run" / "tables" / "statistics.md").read_text(encoding="utf-8")
    (umtls,) = [e for e in results["multimix"].get("summary", []) if e["model"] == "umtls"
                and e["domain"] == "in_domain"]
    assert set(umtls["tests"]) == {"mcnemar vs multimix", "wilcoxon vs multimix"}
    assert umtls["tests"]["mcnemar vs multimix"]["n_seeds"] == 1


def test_a_multimix_run_under_the_cpu_bf16_profile_trains_in_bfloat16(tmp_path):
    from urep.experiments.distribution import apply_profile
    from urep.experiments.runner import run_experiment

    config = apply_profile(_tiny("multimix_cxr_phantom", label_budgets=((4, 4),), variants=("unet",)), "cpu-bf16")
    results = run_experiment(config, tmp_path / "run")

    assert results["config"]["mixed_precision"] == "mixed_bfloat16"
    assert [m["compute_dtype"] for m in results["models"]] == ["bfloat16"]
    dice = results["multimix"]["runs"][0]["cross_domain"]["dice"]
    assert 0.0 < dice <= 1.0


def test_seeds_repeat_each_budget_with_a_new_label_draw_and_summarise_over_seeds(tmp_path):
    from urep.experiments.runner import run_experiment

    config = _tiny("multimix_cxr_phantom", label_budgets=((4, 4),), variants=("unet",), seeds=(3, 4))
    results = run_experiment(config, tmp_path / "run")

    runs = results["multimix"]["runs"]
    assert [(r["model"], r["seed"]) for r in runs] == [("unet", 3), ("unet", 4)]
    rows = {e["seed"]: e["rows"] for e in results["multimix"]["labelled"] if e["task"] == "segmentation"}
    assert rows[3] != rows[4] and len(rows[3]) == len(rows[4]) == 4  # each seed draws its own labelled images
    (entry,) = [e for e in results["multimix"]["summary"] if e["domain"] == "in_domain"]
    values = [r["in_domain"]["dice"] for r in runs]
    assert entry["seeds"] == [3, 4] and entry["dice"]["values"] == values
    assert entry["dice"]["mean"] == pytest.approx(sum(values) / 2)
    assert entry["dice"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    for seed in (3, 4):
        assert (tmp_path / "run" / "budgets" / f"seed{seed}" / "cls=4,seg=4" / "checkpoints" / "multimix" /
                "unet" / "best.weights.h5").is_file()
    assert (tmp_path / "run" / "tables" / "label_budgets_seeds.md").is_file()


def test_paired_tests_include_delong_on_the_auc_when_both_classes_are_present():
    """The per-seed tests of a MultiMix experiment on fabricated per-image scores: DeLong's test on the
    positive-class scores next to McNemar and Wilcoxon, skipped where the test set holds one class."""
    from types import SimpleNamespace

    from urep.experiments.config import StatisticsConfig
    from urep.experiments.multimix_experiment import MultiMixExperiment
    from urep.statistics import delong

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 30)
    strong, weak = 3 * labels + rng.normal(size=30), rng.normal(size=30)

    def scored(positive, labels):
        return {"in_domain": {"per_image": {"correct": (positive > 0.5) == labels, "labels": labels,
                                            "positive": positive, "dice": rng.random(30)}}}

    fake = SimpleNamespace(config=SimpleNamespace(statistics=StatisticsConfig()), results={"statistics": []},
                           cls_task=SimpleNamespace(name="cls"), seg_task=SimpleNamespace(name="seg"))
    MultiMixExperiment._paired_tests(fake, "cls=4,seg=4", {"multimix": scored(strong, labels),
                                                           "urep_independent": scored(weak, labels)}, seed=1)
    found = {t["test"]: t for t in fake.results["statistics"]}
    assert set(found) == {"mcnemar", "delong", "wilcoxon"}
    expected = delong(labels, strong, weak)
    assert found["delong"]["p_value"] == pytest.approx(expected.p_value) and expected.p_value < 0.05
    assert found["delong"]["detail"]["auc_a"] == pytest.approx(expected.auc_a)
    assert (found["delong"]["a"], found["delong"]["b"], found["delong"]["seed"]) == ("multimix", "urep_independent", 1)

    fake.results["statistics"] = []
    ones = np.ones(30, dtype=int)
    MultiMixExperiment._paired_tests(fake, "cls=4,seg=4", {"multimix": scored(strong, ones),
                                                           "urep_independent": scored(weak, ones)}, seed=1)
    assert {t["test"] for t in fake.results["statistics"]} == {"mcnemar", "wilcoxon"}


def test_seed_summary_collects_per_seed_paired_tests_for_the_table():
    from urep.experiments.multimix_experiment import seed_summary
    from urep.experiments.report import seed_summary_table

    def run(model, kind, seed, accuracy):
        return {"model": model, "method": "multimix" if kind == "multimix" else "independent", "kind": kind,
                "setting": "cls=4,seg=4", "budget_setting": "cls=4,seg=4", "seed": seed,
                "in_domain": {"accuracy": accuracy, "balanced_accuracy": 0.5, "auc": float("nan")}}

    runs = [run("multimix", "multimix", s, a) for s, a in ((0, 0.6), (1, 0.8), (2, 0.7))] + \
        [run("urep_independent", "urep", s, 0.5) for s in (0, 1, 2)]
    tests = [{"setting": "cls=4,seg=4", "domain": "in_domain", "seed": s, "a": "multimix", "b": "urep_independent",
              "test": test, "p_value": p, "significant": p < 0.05}
             for test, values in (("mcnemar", (0.01, 0.2, 0.03)), ("delong", (0.5, 0.6, 0.04)))
             for s, p in enumerate(values)]
    summary = {e["model"]: e for e in seed_summary(runs, tests)}
    assert summary["multimix"]["accuracy"]["mean"] == pytest.approx(0.7)
    assert summary["multimix"]["accuracy"]["std"] == pytest.approx(0.1)
    assert "auc" not in summary["multimix"]  # NaN values are left out, never averaged in
    mcnemar = summary["urep_independent"]["tests"]["mcnemar vs multimix"]
    assert mcnemar == {"p_values": [0.01, 0.2, 0.03], "seeds": [0, 1, 2], "significant": 2, "n_seeds": 3}
    table = seed_summary_table({"multimix": {"summary": list(summary.values())},
                                "data": {"split_note": "jsrt official"}})
    assert "split: jsrt official" in table.title
    row = next(r for r in table.rows if r[1] == "urep_independent")
    assert row[3] == 3 and row[-3] == "0.01, 0.2, 0.03 (2/3 sig.)" and row[-2] == "0.5, 0.6, 0.04 (1/3 sig.)"
    assert row[-1] is None  # no Wilcoxon given


def test_official_split_column_sets_train_val_test_and_draws_val_when_absent():
    import pandas as pd

    from urep.experiments.pipeline import official_parts

    config = load_config("multimix_cxr_phantom")
    frame = pd.DataFrame({"patient": ["a", "b", "c", "d", "e", "f"],
                          "split": ["train", "TRAIN", "val", "test", "test", "train"]})
    assert official_parts(frame, "split", "jsrt", config) == {
        "a": "train", "b": "train", "c": "val", "d": "test", "e": "test", "f": "train"}
    no_val = pd.DataFrame({"patient": [f"p{i}" for i in range(24)], "split": ["train"] * 20 + ["test"] * 4})
    parts = official_parts(no_val, "split", "kermany", config)
    assert [parts[f"p{i}"] for i in range(20, 24)] == ["test"] * 4
    counts = pd.Series(parts).value_counts().to_dict()
    assert counts["test"] == 4 and counts["val"] >= 1 and counts["train"] + counts["val"] == 20
    with pytest.raises(ValueError, match="column 'fold' not in"):
        official_parts(frame, "fold", "jsrt", config)
    with pytest.raises(ValueError, match=r"expected train/val/test, got \['holdout'\]"):
        official_parts(frame.assign(split=["holdout"] + list(frame["split"][1:])), "split", "jsrt", config)
    both = official_parts(pd.concat([frame, frame.assign(split=["val"] * 3 + ["train"] * 3)]), "split", "x", config)
    assert [both[p] for p in "abcdef"] == ["val", "val", "val", "test", "test", "train"]  # test > val > train


def test_real_config_uses_jsrts_official_split_and_a_pool_several_times_the_budget(shared_data, tmp_path):
    config = load_config("urep_vs_multimix_real")
    assert config.data["jsrt"].split_column == "split" and len(config.multimix.seeds) >= 3
    assert config.multimix.variants == ("multimix", "umtls")  # the semi-supervised ablation is in the report
    assert config.image_size == (128, 128)
    config = dataclasses.replace(config, image_size=(32, 32))
    experiment = MultiMixExperiment(config, tmp_path, data_root=str(shared_data))
    experiment.load_data()
    tasks = experiment.results["data"]["tasks"]
    assert (tasks["segmentation"]["train"], tasks["segmentation"]["val"], tasks["segmentation"]["test"]) == \
        (104, 13, 33)
    assert "jsrt (segmentation) official `split` column: train 104 / val 13 / test 33" in \
        experiment.results["data"]["split_note"]
    seg_budget, cls_budget = config.multimix.label_budgets[0]
    assert tasks["segmentation"]["train"] - seg_budget >= 5 * seg_budget
    assert tasks["classification"]["train"] - cls_budget >= 5 * cls_budget
