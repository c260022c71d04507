"""The CDAE source in the experiment pipeline: classical references in the denoising table, and the baseline's
separate denoiser reusing the source's trained weights (one training, counted on both sides' cost)."""

from __future__ import annotations

import numpy as np
from test_cross_stitch_experiment import tiny_config

from urep.experiments.config import config_to_dict, parse_config


def test_baseline_denoiser_reuses_the_source_and_references_share_the_test_images(tmp_path, monkeypatch):
    from urep.experiments import pipeline as pipeline_module
    from urep.experiments.baselines import baseline_denoiser
    from urep.experiments.pipeline import UrepPipeline
    from urep.experiments.report import build_tables
    from urep.models import classical_denoisers

    monkeypatch.setattr(pipeline_module, "REFERENCE_TUNING_IMAGES", 4)
    monkeypatch.setitem(classical_denoisers.DEFAULT_GRIDS, "nl_means", (3.0, 20.0))
    monkeypatch.setitem(classical_denoisers.DEFAULT_GRIDS, "gaussian_blur", (0.3, 1.0))
    raw = tiny_config(baseline={"enabled": True, "denoise_inputs": True}, strategies=["independent"])
    raw["source"]["eval_noise"] = [{"kind": "gaussian", "level": 0.1}]
    raw["paper_tables"] = ["journal_table2"]
    pipeline = UrepPipeline(parse_config(raw), tmp_path)
    pipeline.load_data()
    trained = []
    original = UrepPipeline._train_denoiser
    monkeypatch.setattr(UrepPipeline, "_train_denoiser",
                        lambda self, *a, **k: trained.append(a[-2]) or original(self, *a, **k))
    pipeline.train_source()
    baseline_denoiser(pipeline)  # what run_baselines does first with baseline.denoise_inputs

    assert trained == ["source"]  # one denoiser training for both sides
    assert not (tmp_path / "checkpoints" / "baseline_denoiser").exists()
    for mine, theirs in zip(pipeline.denoiser.get_weights(), pipeline.source_model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    models = {m["role"]: m for m in pipeline.results["models"] if m["role"] in ("source", "denoiser")}
    assert models["denoiser"]["seconds"] == models["source"]["seconds"] > 0
    assert models["denoiser"]["reused_from"] == models["source"]["id"]

    references = pipeline.results["denoising_references"]
    assert [(r["noise"], r["method"]) for r in references] == [("gaussian 0.1", "nl_means"),
                                                               ("gaussian 0.1", "gaussian_blur")]
    level = pipeline.results["denoising"][0]
    for row in references:
        assert row["n"] == level["n"] and 0 < row["n_val"] <= 4
        assert row["psnr"] > level["noisy_psnr"]  # tuned filters beat the noisy input at sigma 0.1
        assert row["validation_psnr"][row["parameter"]] == max(row["validation_psnr"].values())
    results = {**pipeline.results, "config": config_to_dict(pipeline.config), "tasks": {}, "statistics": []}
    table2 = next(t for t in build_tables(results) if t.name == "journal_table2")
    assert [row[1].split(" (")[0] for row in table2.rows] == ["CDAE", "Noisy input", "Non-local means",
                                                              "Gaussian blur"]
