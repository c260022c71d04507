"""Experiment configs: loading, validation errors naming the key and the file, overrides, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from urep.experiments.config import (
    ConfigError,
    ExperimentConfig,
    SuiteConfig,
    apply_overrides,
    check_data_roots,
    config_to_dict,
    find_config,
    list_configs,
    load_any,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
PAPER_CONFIGS = ("cxr_denoising", "cxr_heterogeneous", "cxr_homogeneous", "doppler_heterogeneous",
                 "doppler_homogeneous", "urep_preprint")


def _minimal() -> dict:
    return {
        "name": "tiny",
        "data": {"heads": {"phantom": {"generator": "cxr", "n_patients": 4}}},
        "source": {"data": ["heads"]},
        "tasks": [{"name": "cls", "kind": "classification", "data": "heads", "classes": ["normal", "abnormal"]}],
    }


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_every_paper_config_has_a_phantom_twin_that_loads(name):
    assert name in list_configs() and f"{name}_phantom" in list_configs()
    for stem in (name, f"{name}_phantom"):
        config = load_any(stem)
        assert isinstance(config, (ExperimentConfig, SuiteConfig))


def test_experiments_folder_mirrors_the_packaged_configs():
    shipped = set(list_configs())
    linked = {p.stem for p in (REPO / "experiments").glob("*.yaml")}
    assert linked == shipped
    for stem in linked:
        assert (REPO / "experiments" / f"{stem}.yaml").read_bytes() == find_config(stem).read_bytes()


def test_defaults_are_the_papers_values():
    config = parse_config(_minimal())
    assert config.image_size == (256, 256)
    assert config.split == (0.7, 0.2, 0.1)
    assert config.cross_validation.folds == 10
    assert config.training.source.batch_size == 16 and config.training.source.learning_rate == 1e-3
    assert config.source.noise[0].kind == "gaussian" and config.source.noise[0].level == 0.03
    assert config.statistics.alpha == 0.05 and "mcnemar" in config.statistics.tests


def test_heterogeneous_config_encodes_the_table3_protocol():
    config = load_config("cxr_heterogeneous")
    assert [t.name for t in config.tasks] == ["lung_segmentation", "abnormality_classification"]
    assert {t.data for t in config.tasks} == {"shenzhen"} and {t.test_data for t in config.tasks} == {"montgomery"}
    assert config.cross_validation.folds == 10
    assert config.strategies == ("independent", "alternating", "joint") and config.baseline.enabled


def test_unknown_key_names_key_path_and_file(tmp_path):
    raw = _minimal()
    raw["tasks"][0]["clases"] = ["a", "b"]
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "tasks[0].clases" in str(err.value) and str(path) in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_names_key_path_and_file(tmp_path):
    raw = _minimal()
    raw["training"] = {"heads": {"epochs": "ten"}}
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"training\.heads\.epochs: expected an integer, got 'ten'") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bool_is_not_an_integer(tmp_path):
    raw = _minimal()
    raw["seed"] = True
    with pytest.raises(ConfigError, match="seed: expected an integer"):
        load_config(_write(tmp_path, raw))


def test_missing_required_key(tmp_path):
    raw = _minimal()
    del raw["tasks"][0]["kind"]
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.kind: required key is missing"):
        load_config(_write(tmp_path, raw))


def test_bad_reference_and_literal(tmp_path):
    raw = _minimal()
    raw["tasks"][0]["data"] = "nowhere"
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.data: unknown data source 'nowhere'"):
        load_config(_write(tmp_path, raw))
    raw = _minimal()
    raw["strategies"] = ["independent", "together"]
    with pytest.raises(ConfigError, match=r"strategies\[1\]: expected one of 'independent', .*'cross_stitch', got 'together'"):
        load_config(_write(tmp_path, raw))
    raw = _minimal()
    raw["source"]["kind"] = "vae"
    with pytest.raises(ConfigError, match=r"source\.kind: expected one of 'cdae'"):
        load_config(_write(tmp_path, raw))


def test_missing_data_root_names_key_and_file(tmp_path):
    raw = _minimal()
    raw["data"]["real"] = {"adapter": "shenzhen", "root": "no_such_folder"}
    path = _write(tmp_path, raw)
    config = load_config(path)
    with pytest.raises(ConfigError) as err:
        check_data_roots(config, tmp_path)
    message = str(err.value)
    assert "data.real.root" in message and str(path) in message and "no_such_folder" in message
    with pytest.raises(ConfigError, match="data.real.root"):
        load_config(path, data_root=tmp_path, check_data=True)
    (tmp_path / "no_such_folder").mkdir()
    load_config(path, data_root=tmp_path, check_data=True)


def test_invalid_yaml_and_top_level(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(path)
    assert str(path) in str(err.value)
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_overrides_apply_before_validation(tmp_path):
    path = _write(tmp_path, _minimal())
    config = load_config(path, overrides=["image_size=[32, 32]", "tasks.0.classes=[a, b]", "training.heads.epochs=2"])
    assert config.image_size == (32, 32)
    assert config.tasks[0].classes == ("a", "b")
    assert config.training.heads.epochs == 2
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        apply_overrides({}, ["image_size"])
    with pytest.raises(ConfigError, match=r"tasks\.5: no list item"):
        apply_overrides(_minimal(), ["tasks.5.name=x"])


def test_resolved_config_round_trips():
    config = load_config("cxr_heterogeneous_phantom")
    again = parse_config(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert again == config


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="cxr_heterogeneous"):
        find_config("no_such_experiment")


def test_taskwise_stopping_of_the_heads_is_validated_and_reaches_the_training_config(tmp_path):
    from urep.experiments.pipeline import UrepPipeline

    raw = _minimal()
    raw["training"] = {"heads": {"taskwise_stopping": {"k": 0}}}
    with pytest.raises(ConfigError, match="training.heads.taskwise_stopping"):
        parse_config(raw)
    raw["training"] = {"heads": {"taskwise_stopping": {"k": 2, "main": "cls"}}}
    config = parse_config(raw)
    assert parse_config(config_to_dict(config)) == config
    train_config = UrepPipeline(config, tmp_path)._train_config(config.training.heads)
    assert train_config.taskwise == {"k": 2, "epsilon": 1.0, "main": "cls", "importance": None}
    assert UrepPipeline(config, tmp_path)._train_config(config.training.source).taskwise is None


@pytest.mark.parametrize("source, key, message", [
    ({"scale": 1}, r"source\.scale", "at least 2, got 1"),
    ({"model": {"scale": 2}}, r"source\.model\.scale", "set the degradation factor with source.scale"),
    ({"scale": 40}, r"source\.scale", r"too small to down-sample by source\.scale 40"),
])
def test_super_resolution_source_is_validated(tmp_path, source, key, message):
    raw = _minimal()
    raw["image_size"] = [64, 64]
    raw["source"].update({"kind": "super_resolution", **source})
    with pytest.raises(ConfigError, match=f"{key}: .*{message}"):
        load_config(_write(tmp_path, raw))
    raw["source"] = {"data": ["heads"], "kind": "super_resolution", "scale": 4}
    assert load_config(_write(tmp_path, raw)).source.scale == 4


@pytest.mark.parametrize("changes, message", [
    ({"training": {"heads": {"epochs": 0}}}, "training.heads.epochs: must be at least 1, got 0"),
    ({"training": {"source": {"learning_rate": 0}}}, "training.source.learning_rate: must be positive, got 0.0"),
    ({"training": {"baseline": {"augmentation": {"rotation": 180}}}},
     r"training.baseline.augmentation.rotation: must be in \[0, 180\), got 180.0"),
    ({"preprocessing": {"clahe_tile_grid": 0}}, "preprocessing.clahe_tile_grid: must be positive, got 0"),
    ({"references": {"pca_size": 1}}, "references.pca_size: must be at least 2, got 1"),
    ({"cross_validation": {"folds": 1}}, r"cross_validation.folds: folds must be 0 \(no CV\) or at least 2, got 1"),
    ({"statistics": {"alpha": 1.5}}, r"statistics.alpha: must be in \(0, 1\), got 1.5"),
    ({"batchnorm_momentum": 1.0}, r"batchnorm_momentum: must be in \[0, 1\), got 1.0"),
    ({"image_size": [64, 0]}, r"image_size\[1\]: must be positive, got 0"),
    ({"channels": 2}, "channels: expected one of 1, 3, got 2"),
    ({"split": [0.5, 0.5, 0.5]}, r"split: fractions must be non-negative and sum to 1, got \[0.5, 0.5, 0.5\]"),
    ({"source": {"data": ["heads"], "noise": [{"kind": "gaussian", "level": 0}]}},
     r"source.noise\[0\].level: must be positive, got 0.0"),
    ({"data": {"heads": {"phantom": {"generator": "cxr"}, "limit": 1}}}, "data.heads.limit: must be at least 2, got 1"),
    ({"data": {"heads": {"phantom": {"generator": "cxr"}}, "bare": {}}},
     "data.bare: a data source needs `root` .* or `phantom`"),
    ({"explain": {"mask_task": "lungs"}}, r"explain.mask_task: unknown task 'lungs'; defined: \['cls'\]"),
    ({"recommendation": {"enabled": True, "flow_task": "cls"}}, "recommendation.quality_task: unknown task None"),
    ({"paper_tables": ["table_99"]}, r"paper_tables\[0\]: unknown paper table 'table_99'; known: \["),
    ({"tasks": [{"name": "cls", "kind": "classification", "data": "heads", "classes": ["a"]}]},
     r"tasks\[0\].classes: a classification task needs at least two classes"),
    ({"strategies": []}, "strategies: name at least one fine-tuning strategy"),
])
def test_each_rule_names_key_value_and_expectation(tmp_path, changes, message):
    path = _write(tmp_path, {**_minimal(), **changes})
    with pytest.raises(ConfigError, match=f"^{message}.* \\(in {re.escape(str(path))}\\)$"):
        load_config(path)


def test_train_settings_map_onto_one_train_config():
    raw = _minimal()
    raw["training"] = {"heads": {"epochs": 3, "batch_size": 4, "optimizer": "adam", "learning_rate": 0.01,
                                 "reduce_lr_patience": 2, "early_stopping_patience": None, "max_steps_per_epoch": 5,
                                 "jit_compile": False, "taskwise_stopping": {"k": 2}, "data_autotune": True}}
    parsed = parse_config(raw).training
    assert parsed.source.data_autotune is False  # the default: tf.data autotuning off
    settings = parsed.heads
    config = settings.train_config(seed=7, deterministic=True, mixed_precision="mixed_bfloat16")
    assert (config.epochs, config.batch_size, config.seed, config.deterministic) == (3, 4, 7, True)
    assert (config.optimizer.name, config.learning_rate, config.reduce_lr_patience) == ("adam", 0.01, 2)
    assert config.early_stopping_patience is None and config.max_steps_per_epoch == 5 and not config.jit_compile
    assert config.data_autotune is True
    assert config.taskwise == {"k": 2, "epsilon": 1.0, "main": None, "importance": None}
    assert config.mixed_precision == "mixed_bfloat16" and config.progress_bar is None
    task = settings.train_config(seed=0, optimizer="sgd", learning_rate=0.5, progress_bar=False, epochs=1)
    assert (task.optimizer.name, task.learning_rate, task.progress_bar, task.epochs) == ("sgd", 0.5, False, 1)
    assert task.optimizer.lookahead_steps is None  # Lookahead off by default


def test_lookahead_reaches_every_optimizer_of_its_phase(tmp_path):
    """`lookahead_steps` / `lookahead_alpha` of a phase reach its own and its tasks' optimizers; bad values are
    named with their key."""
    raw = _minimal()
    raw["training"] = {"baseline": {"optimizer": "adam", "lookahead_steps": 5, "lookahead_alpha": 0.5}}
    settings = parse_config(raw).training.baseline
    assert settings.optimizer_spec() == {"name": "adam", "learning_rate": 1e-3, "lookahead_steps": 5,
                                         "lookahead_alpha": 0.5}
    assert settings.optimizer_spec("rmsprop", 0.01)["name"] == "rmsprop"
    optimizer = settings.train_config(seed=0, optimizer="sgd").optimizer
    assert (optimizer.name, optimizer.lookahead_steps, optimizer.lookahead_alpha) == ("sgd", 5, 0.5)
    assert "lookahead_steps" not in parse_config(raw).training.heads.optimizer_spec()  # per phase
    for changes, message in [({"lookahead_steps": 0}, "training.baseline.lookahead_steps: must be at least 1"),
                             ({"lookahead_alpha": 0}, r"training.baseline.lookahead_alpha: must be in \(0, 1\]")]:
        raw["training"] = {"baseline": changes}
        with pytest.raises(ConfigError, match=message):
            load_config(_write(tmp_path, raw))


def test_head_options_are_those_of_the_head_builder(tmp_path):
    import inspect

    from urep.experiments.config import head_keys
    from urep.models import MultiTaskModel, segmentation_head_from_encoder

    raw = _minimal()
    raw["tasks"][0]["head"] = {"dropout": 0.3, "dropuot": 0.2}
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.head\.dropuot: not an option of a classification "
                                          r"head on a cdae source; options: \['dense_units', 'dropout'\]"):
        load_config(_write(tmp_path, raw))
    raw["tasks"] = [{"name": "seg", "kind": "segmentation", "data": "heads",
                     "head": {"decoder_filters": [8, 8]}}]
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.head\.decoder_filters: .*options: \['context_dilations', 'context_width'\]"):
        load_config(_write(tmp_path, raw))
    raw["tasks"][0]["head"] = {"context_dilations": [1, 2, 4]}
    assert load_config(_write(tmp_path, raw)).tasks[0].head == {"context_dilations": [1, 2, 4]}
    # the allowed names are keyword arguments of the builders the pipeline calls
    classification = inspect.signature(MultiTaskModel.add_classification_head).parameters
    segmentation = inspect.signature(MultiTaskModel.add_segmentation_head).parameters
    assert set(head_keys("classification", "cdae")) <= set(classification)
    assert set(head_keys("segmentation", "cdae")) <= set(segmentation)
    assert set(head_keys("segmentation", "dilated_cnn")) <= (
        set(segmentation) & set(inspect.signature(segmentation_head_from_encoder).parameters))
