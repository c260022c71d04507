"""`urep bench --quick`: runs every kind of urep's own benchmarks and writes well-formed output.

Benchmarks are not tests: nothing here checks a speed. One quick run (module fixture; about 40 s of CPU on
two idle cores) is inspected for the keys of `bench.json`, the Markdown tables and the plot; the helpers
are checked on hand-made values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from urep.bench import suite
from urep.bench.common import format_cell, is_stat, markdown_table, stat_leaves, summarize
from urep.cli import main

OWN = ("params", "cost", "inference", "scaling", "memory")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "out"
    assert main(["bench", "--quick", "--out", str(out), "--only", *OWN]) == 0
    return out


@pytest.fixture(scope="module")
def record(quick_run) -> dict:
    return json.loads((quick_run / "bench.json").read_text(encoding="utf-8"))


def _stats(result: dict) -> list[dict]:
    return [cell for t in result["tables"] for row in t["rows"] for cell in row if is_stat(cell)]


def test_bench_json_describes_the_machine_and_every_benchmark(record):
    assert record["quick"] is True and record["complete"] is True
    assert record["only"] == list(OWN)
    machine = record["machine"]
    for key in ("cpu", "cores", "tensorflow", "keras", "xla_default", "date", "load_average", "environment"):
        assert key in machine, key
    assert machine["cores"] >= 1 and machine["cpu"]
    assert set(record["benchmarks"]) == set(OWN)
    for name, result in record["benchmarks"].items():
        assert result["status"] == "ok", (name, result.get("error"))
        assert result["seconds"] > 0 and result["tables"] and result["headlines"], name
        for stat in _stats(result):
            assert stat["min"] <= stat["median"] <= stat["max"] and stat["n"] == len(stat["values"])
        for item in result["tables"]:
            assert all(len(row) == len(item["columns"]) for row in item["rows"]), item["title"]


def test_cost_compares_heads_with_separate_models_to_early_stopping(record):
    runs = record["benchmarks"]["cost"]["data"]["runs"]["32"]["cxr_heterogeneous"]
    assert len(runs) == 1
    repeat = runs[0]
    assert set(repeat["shared"]) == set(repeat["separate"]) == {"lung_segmentation", "abnormality_classification"}
    for approach in ("shared", "separate"):
        for result in repeat[approach].values():
            assert result["seconds"] > 0 and 1 <= result["epochs"] <= 3 and result["steps"] >= result["epochs"]
    for head in repeat["shared"]:
        # Frozen encoder: the head trains fewer parameters than the same architecture trained from scratch.
        assert repeat["shared"][head]["trainable_params"] < repeat["separate"][head]["trainable_params"]
        assert repeat["shared"][head]["total_params"] == repeat["separate"][head]["total_params"]
    totals = record["benchmarks"]["cost"]["data"]["totals"]["32"]["cxr_heterogeneous"][0]
    heads = sum(r["seconds"] for r in repeat["shared"].values())
    assert totals["shared_seconds"] == pytest.approx(heads + repeat["source"]["seconds"])


def test_parameters_match_the_papers_where_the_architecture_is_published(record):
    rows = record["benchmarks"]["params"]["data"]["rows"]
    baseline = [r for r in rows if r[2] == "separate (baseline_classifier)"]
    assert baseline and all(r[4] == r[6] == 1_573_506 for r in baseline)
    doppler_seg = [r for r in rows if r[0] == "doppler_heterogeneous" and r[1] == "envelope_segmentation"]
    assert all(r[4] == 786_497 for r in doppler_seg)
    assert record["benchmarks"]["params"]["data"]["cxr_homogeneous"]["paper_ratio"] == pytest.approx(
        887_145 / 4_720_518)


def test_inference_scaling_and_memory_records(record, quick_run):
    inference = record["benchmarks"]["inference"]["data"]["results"]["32"]
    assert set(inference) == {"classification", "segmentation+classification"}
    entry = inference["classification"]["no_xla"]["2"]
    assert entry["fused_images_per_s"]["median"] > 0 and entry["factor"]["median"] > 0
    scaling = record["benchmarks"]["scaling"]["data"]
    assert scaling["counts"] == [1, 2]
    assert scaling["shared"][1]["median"] > scaling["shared"][0]["median"]
    assert (quick_run / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    memory = next(iter(record["benchmarks"]["memory"]["data"].values()))
    assert 100 < memory["peak_rss_mb"]["median"] < 64_000
    assert memory["polled_peak_mb"]["median"] <= memory["peak_rss_mb"]["median"] + 1


def test_bench_md_has_the_summary_and_a_table_per_benchmark(quick_run, record):
    text = (quick_run / "bench.md").read_text(encoding="utf-8")
    assert text.startswith("# urep benchmarks")
    assert "| benchmark | measure | measured | paper / expected |" in text
    n_tables = sum(len(r["tables"]) for r in record["benchmarks"].values())
    assert text.count("\n|---") == n_tables + 2  # + the machine table and the summary
    assert "![scaling](scaling.png)" in text
    assert record["machine"]["cpu"] in text


def test_helpers_format_stats_and_tables():
    stat = summarize([3.0, 1.0, 2.0])
    assert (stat["median"], stat["min"], stat["max"], stat["n"]) == (2.0, 1.0, 3.0, 3)
    assert format_cell(stat) == "2 (1–3)"
    assert format_cell(1234567) == "1,234,567" and format_cell(None) == "—"
    assert markdown_table(["a", "b"], [["x", stat]]).splitlines()[1] == "|---|---:|"
    assert stat_leaves({"s": {"64": {"fit": {"median": 1, "min": 0, "max": 2}}}, "environment": {}}) == [
        (("s", "64", "fit"), {"median": 1, "min": 0, "max": 2})]
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_delegated_records_are_tabulated():
    record = {"batch_size": 16, "sizes": {64: {"cdae": {"fit": {"median": 10.0, "min": 9.0, "max": 11.0},
                                                       "loop": {"median": 20.0, "min": 19.0, "max": 21.0}}}}}
    section = suite.adapt_delegated("train_throughput", record)
    assert section["tables"][0]["rows"][1][2:] == ["loop", record["sizes"][64]["cdae"]["loop"], 2.0]
    generic = suite.adapt_delegated("data_pipeline", {"cached": {"median": 5, "min": 4, "max": 6}})
    assert generic["tables"][0]["rows"] == [["cached", {"median": 5, "min": 4, "max": 6}]]


def test_unknown_benchmark_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown benchmark.*nonsense"):
        main(["bench", "--quick", "--out", str(tmp_path / "o"), "--only", "nonsense"])
    assert not (tmp_path / "o").exists()


def test_the_suite_ships_inside_the_package():
    """`urep bench` imports the suite from the installed package, not from a checkout folder."""
    import urep

    package = Path(urep.__file__).resolve().parent
    assert Path(suite.__file__).resolve().parent == package / "bench"
    assert suite.BENCHMARKS["memory"][0] == "urep.bench.memory"
    assert all(suite._load(name) is not None for name in suite.BENCHMARKS)


@pytest.mark.parametrize(("profile", "policy"), [("gpu", "mixed_float16"), ("cpu-bf16", "mixed_bfloat16")])
def test_profiles_build_the_models_in_their_policy_and_record_it(tmp_path, monkeypatch, profile, policy):
    """`urep bench --profile gpu|cpu-bf16` on a machine without a GPU: the models in the profile's mixed
    precision, the float32 policy back after, no device memory row."""
    import keras

    seen = []

    def params(out_dir, quick, repeats):
        seen.append(keras.config.dtype_policy().name)
        return suite.section("params", "Parameters", headlines=[["parameters", "1", "1"]])

    monkeypatch.setattr(suite, "_load", lambda name: params)
    assert main(["bench", "--quick", "--out", str(tmp_path / "o"), "--only", "params", "--profile", profile]) == 0
    record = json.loads((tmp_path / "o" / "bench.json").read_text(encoding="utf-8"))
    assert seen == [policy] and keras.config.dtype_policy().name == "float32"
    assert record["profile"] == profile and record["benchmarks"]["params"]["profile"] == profile
    assert "peak_device_memory_mb" not in record["benchmarks"]["params"]  # no GPU here
    assert f"profile {profile}" in (tmp_path / "o" / "bench.md").read_text(encoding="utf-8")


def test_batchnorm_benchmark_times_every_variant_on_the_same_model():
    """`urep.bench.batchnorm.measure`: every variant timed, each round; the speedups are median ratios."""
    from urep.bench import batchnorm

    assert "batchnorm" in suite.DELEGATED and suite._load("batchnorm") is batchnorm.run
    assert batchnorm.precisions()[0] == "float32"
    result = batchnorm.measure("head", 32, "float32", steps=1, repeats=2)
    assert result["auto"]["n"] == result["fused"]["n"] == result["keras"]["n"] == 2
    assert all(v > 0 for side in batchnorm.VARIANTS for v in result[side]["values"])
    assert result["speedup"] == pytest.approx(result["auto"]["median"] / result["keras"]["median"])
    assert result["speedup_fused"] == pytest.approx(result["fused"]["median"] / result["keras"]["median"])
    import keras

    assert keras.config.dtype_policy().name == "float32"


def test_epoch_start_benchmark_times_each_epochs_first_batch():
    """`urep.bench.data_pipeline._epoch_start_ms`: one time per epoch and source, the first epoch apart."""
    from urep.bench import data_pipeline

    result = data_pipeline._epoch_start_ms(3, size=32, n_train=20, n_val=12)
    assert (result["size"], result["n_train"], result["n_val"], result["epochs"]) == (32, 20, 12, 3)
    for name in ("augmented_training_pairs", "validation_pairs"):
        assert result[name]["first_epoch"] > 0
        assert result[name]["n"] == 2 and all(v > 0 for v in result[name]["values"])
        assert result[name]["min"] <= result[name]["median"] <= result[name]["max"]
    assert "time to an epoch's first batch, validation pairs (20 / 12 at 32x32)" in data_pipeline._table(
        {"sizes": {}, "epoch_start_ms": result})
