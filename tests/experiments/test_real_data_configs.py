"""The real-data configs use the authors' training protocol and one input standardisation; the papers' configs
keep augmentation, class weights and standardisation off (the papers' setting)."""

from __future__ import annotations

import pytest

from urep.experiments.config import load_config

REAL = ("cxr_heterogeneous_shared_data_128", "cxr_heterogeneous_shared_data_256", "cxr_homogeneous_shared_data")
PAPER = ("cxr_heterogeneous", "cxr_homogeneous", "cxr_denoising", "doppler_heterogeneous", "doppler_homogeneous")


@pytest.mark.parametrize("name", REAL)
def test_real_data_configs_train_with_the_authors_protocol(name):
    config = load_config(name)
    # the measured best across sites (docs/real_data.md); the same choice in every real-data config
    assert config.preprocessing.standardize == load_config(REAL[0]).preprocessing.standardize
    for phase in (config.training.heads, config.training.baseline):
        assert phase.augmentation.enabled and phase.augmentation.rotation == 5 and phase.augmentation.zoom == 0.2
        assert phase.early_stopping_patience == 15 and phase.reduce_lr_patience == 5
        assert phase.class_weight == "balanced"


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_keep_augmentation_and_standardisation_off(name):
    config = load_config(name)
    assert config.preprocessing.standardize == "none"
    assert not config.training.heads.augmentation.enabled and config.training.heads.class_weight == "none"
    # the papers' heads: no context blocks on any segmentation head
    assert all("context_dilations" not in task.head for task in config.tasks)


@pytest.mark.parametrize("name", REAL[:2])
def test_real_data_segmentation_heads_widen_the_receptive_field(name, tmp_path):
    from urep.experiments.pipeline import UrepPipeline

    config = load_config(name)
    assert config.tasks[0].kind == "segmentation" and config.tasks[0].head == {"context_dilations": [1, 2, 4]}
    # the option reaches the model the pipeline builds, at a small size
    config = load_config(name, overrides=["image_size=[32, 32]"])
    pipeline = UrepPipeline(config, tmp_path)
    pipeline.source_model = pipeline.build_source_model(name="source")
    head = pipeline._assembly("independent", 0).task_models["lung_segmentation"]
    assert head.get_layer("lung_segmentation_context_conv3").dilation_rate == (4, 4)


@pytest.mark.parametrize("name", REAL)
def test_real_data_configs_find_their_folders(name, shared_data):
    config = load_config(name, data_root=shared_data, check_data=True)
    assert {source.root for source in config.data.values()} <= {p.name for p in shared_data.iterdir()}


@pytest.mark.parametrize("name", REAL + PAPER)
def test_only_the_real_data_configs_start_the_separate_classifier_from_he_normal_weights(name, tmp_path):
    from urep.experiments.baselines import baseline_model
    from urep.experiments.pipeline import UrepPipeline

    config = load_config(name, overrides=["image_size=[32, 32]"])
    expected = "he_normal" if name in REAL else "glorot_uniform"
    assert config.baseline.classifier.get("kernel_initializer", "glorot_uniform") == expected
    task = next((t for t in config.tasks if t.kind == "classification"), None)
    if task is None:
        return
    model = baseline_model(UrepPipeline(config, tmp_path), task, 0)  # the option reaches the built model
    initializer = model.get_layer("conv1").get_config()["kernel_initializer"]
    assert initializer["class_name"] == {"he_normal": "HeNormal", "glorot_uniform": "GlorotUniform"}[expected]
