"""Tests of urep/training/multimix/: config, data checks, the training step, training, checkpoint selection, ablations.

(Named test_multimix_training.py, not test_multimix.py: tests/models/test_multimix.py exists and the tests
folders have no __init__.py, so two test modules with one basename cannot be collected together.)
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import urep
from urep.losses import dice_loss, fixmatch_loss, segmentation_kl
from urep.training.multimix import (
    VARIANTS,
    MultiMixConfig,
    MultiMixData,
    evaluate_multimix,
    make_train_step,
    multimix_for_variant,
    train_multimix,
)
from urep.training.multimix import train as mm_train

SIZE = 32
CHANNELS = (4, 8, 16)


def _phantoms(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two bright 'lungs' on noise; class 1 images are darker overall."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, SIZE, SIZE, 1), "float32")
    masks[:, 8:26, 5:14] = 1.0
    masks[:, 8:26, 18:27] = 1.0
    labels = rng.integers(0, 2, n)
    images = 0.3 * rng.random((n, SIZE, SIZE, 1)) + 0.5 * masks
    images[labels == 1] *= 0.6
    return images.astype("float32"), masks, labels


@pytest.fixture(scope="module")
def data() -> MultiMixData:
    images, masks, labels = _phantoms(40, seed=0)
    return MultiMixData(
        seg_images=images[:8], seg_masks=masks[:8], seg_unlabelled=images[8:16],
        cls_images=images[16:24], cls_labels=labels[16:24], cls_unlabelled=images[24:32],
        val_seg_images=images[32:], val_seg_masks=masks[32:], val_cls_images=images[32:], val_cls_labels=labels[32:],
    )


def _config(**kwargs) -> MultiMixConfig:
    base = dict(epochs=1, steps_per_epoch=2, batch_size=4, learning_rate=1e-3, eval_batch_size=8)
    return MultiMixConfig(**{**base, **kwargs})


# -- configuration and data ------------------------------------------------------------------------------
def test_config_defaults_are_the_papers_and_the_schedule_steps_every_8_epochs():
    config = MultiMixConfig()
    assert (config.learning_rate, config.batch_size, config.threshold) == (1e-4, 10, 0.7)
    assert (config.ssl_weight, config.dice_weight, config.kl_weight) == (0.25, 5.0, 0.01)
    assert config.kl_mode == "pixelwise"  # the paper's eq. 2 (urep.losses.segmentation_kl's default)
    assert [config.learning_rate_at(e) for e in (0, 7, 8, 16)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-6])
    assert MultiMixConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "fixmatch"}, "variant"),
        ({"threshold": 1.5}, "threshold"),
        ({"kl_weight": -1.0}, "kl_weight"),
        ({"kl_mode": "sum"}, "kl_mode"),
        ({"selection": "accuracy"}, "selection must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"selection_weights": (0.0, 0.0)}, "selection_weights"),
        ({"lr_decay_factor": 0.0}, "lr_decay_factor"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiMixConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown multimix config keys"):
        MultiMixConfig.from_dict({"lamda": 0.25})


def test_data_checks_name_the_offending_field(data):
    with pytest.raises(ValueError, match=r"seg_images must be in \[0, 1\]"):
        MultiMixData(seg_images=np.full((2, 8, 8), 2.0), seg_masks=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="seg_masks must hold 0/1"):
        MultiMixData(seg_images=np.zeros((2, 8, 8)), seg_masks=np.full((2, 8, 8), 0.5))
    with pytest.raises(ValueError, match="cls_labels has 3 labels for 2 images"):
        MultiMixData(cls_images=np.zeros((2, 8, 8)), cls_labels=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="one .H, W, C."):
        MultiMixData(seg_images=np.zeros((2, 8, 8)), seg_masks=np.zeros((2, 8, 8)), cls_unlabelled=np.zeros((2, 4, 4)))
    partial = MultiMixData(seg_images=data.seg_images, seg_masks=data.seg_masks)
    with pytest.raises(ValueError, match="seg_unlabelled"):
        partial.check(VARIANTS["multimix"], n_classes=2)


# -- training --------------------------------------------------------------------------------------------
def test_tiny_multimix_run_lowers_the_loss_and_selects_on_validation(data, tmp_path):
    urep.seed_everything(0)
    model = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    config = _config(epochs=4, steps_per_epoch=4, lr_decay_epochs=100)
    result = train_multimix(model, data, config, run=tmp_path)
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.history["dice"][-1] < result.history["dice"][0]
    for key in ("ce", "ssl", "mask_rate", "kl", "val_dice", "val_accuracy", "val_balanced_accuracy", "val_auc",
                "val_positive_fraction", "val_loss", "val_score", "lr"):
        assert len(result.history[key]) == 4
    assert all(k > 0 for k in result.history["kl"])
    scores = result.history["val_score"]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert result.best_score == pytest.approx(max(scores))
    # Default selection: (Dice + (balanced accuracy + AUC) / 2) / 2, never plain accuracy.
    h = result.history
    balanced = (np.asarray(h["val_balanced_accuracy"]) + np.asarray(h["val_auc"])) / 2
    np.testing.assert_allclose((np.asarray(h["val_dice"]) + balanced) / 2, scores, rtol=1e-6)
    # The restored weights are the best epoch's: re-evaluating them reproduces that epoch's validation metrics.
    evaluation = evaluate_multimix(model, data.val_seg_images, data.val_seg_masks, data.val_cls_images,
                                   data.val_cls_labels)
    assert evaluation["segmentation"]["dice"] == pytest.approx(result.best_metrics["val_dice"], abs=1e-6)
    assert evaluation["classification"]["accuracy"] == pytest.approx(result.best_metrics["val_accuracy"])
    checkpoint = tmp_path / "checkpoints" / "multimix" / "multimix" / "best.weights.h5"
    assert result.checkpoint == str(checkpoint) and checkpoint.exists()
    assert (checkpoint.parent / "result.json").exists()
    assert set(evaluation["segmentation"]) >= {"dice", "avg_hausdorff", "ssim", "per_image"}
    assert set(evaluation["classification"]["f1_per_class"]) == {"normal", "pneumonia"}
    assert evaluation["segmentation"]["per_image"]["dice"].shape == (len(data.val_seg_images),)
    assert evaluation["classification"]["correct"].dtype == bool


def test_best_checkpoint_is_the_best_validation_epoch_not_the_last(data, tmp_path, monkeypatch):
    urep.seed_everything(1)
    model = multimix_for_variant("unet", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    scripted = iter([0.2, 0.9, 0.5])
    snapshots = []

    def fake_validation(model, data, config):
        snapshots.append(model.network.get_weights())
        return {"val_dice": 0.0, "val_score": next(scripted)}

    monkeypatch.setattr(mm_train, "_validation_metrics", fake_validation)
    result = train_multimix(model, data, _config(variant="unet", epochs=3, steps_per_epoch=1), run=tmp_path)
    assert result.best_epoch == 2 and result.best_score == 0.9
    for restored, kept in zip(model.network.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots[1], snapshots[2], strict=True))
    fresh = multimix_for_variant("unet", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    fresh.network.load_weights(result.checkpoint)
    for loaded, kept in zip(fresh.network.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(loaded, kept)


def test_a_finished_run_in_the_folder_is_restored_not_retrained(data, tmp_path, monkeypatch):
    """`--resume`: a run folder holding a finished run of the same config gives back its result and its best
    weights without a training step; another config trains again."""
    urep.seed_everything(2)
    config = _config(variant="unet", epochs=2, steps_per_epoch=1)
    first = multimix_for_variant("unet", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    done = train_multimix(first, data, config, run=tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(mm_train, "make_train_step", no_training)
    urep.seed_everything(3)
    again = multimix_for_variant("unet", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    restored = train_multimix(again, data, config, run=tmp_path)
    assert restored.best_epoch == done.best_epoch and restored.checkpoint == done.checkpoint
    assert restored.history == done.history and restored.best_metrics == done.best_metrics
    for a, b in zip(again.network.get_weights(), first.network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="trained again"):
        train_multimix(again, data, _config(variant="unet", epochs=3, steps_per_epoch=1), run=tmp_path)


@pytest.mark.parametrize("variant, frozen_layer, trained_layer", [
    ("encoder", "segmentation_logits", "class_logits"),
    ("unet", "class_logits", "segmentation_logits"),
])
def test_single_task_variants_leave_the_other_head_untouched(data, variant, frozen_layer, trained_layer):
    urep.seed_everything(2)
    model = multimix_for_variant(variant, input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    assert not model.saliency_bridge
    before = {name: [w.copy() for w in model.network.get_layer(name).get_weights()]
              for name in (frozen_layer, trained_layer)}
    result = train_multimix(model, data, _config(variant=variant, restore_best=False))
    for old, new in zip(before[frozen_layer], model.network.get_layer(frozen_layer).get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    changed = [not np.array_equal(o, n)
               for o, n in zip(before[trained_layer], model.network.get_layer(trained_layer).get_weights(), strict=True)]
    assert any(changed)
    expected_terms = {"encoder": {"ce", "loss"}, "unet": {"dice", "loss"}}[variant]
    assert expected_terms <= set(result.history) and not {"ssl", "kl"} & set(result.history)


def test_variant_and_model_must_agree(data):
    with pytest.raises(ValueError, match="saliency_bridge=True"):
        multimix_for_variant("umtls", input_shape=(SIZE, SIZE, 1), channels=CHANNELS, saliency_bridge=False)
    plain = multimix_for_variant("umtl", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    with pytest.raises(ValueError, match="saliency_bridge=True"):
        train_multimix(plain, data, _config(variant="multimix"))
    bridged = multimix_for_variant("multimix", input_shape=(64, 64, 1), channels=CHANNELS)
    with pytest.raises(ValueError, match="do not fit the model input"):
        train_multimix(bridged, data, _config())


def test_multimix_is_a_registered_strategy_and_trains_from_tasks(data):
    from urep.training import Task, TrainConfig, finetune
    from urep.training.multimix import multimix_strategy
    from urep.training.strategies import resolve_strategy

    assert resolve_strategy("multimix") is multimix_strategy
    urep.seed_everything(3)
    model = multimix_for_variant("umtls", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)

    def batches(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)

    onehot = np.eye(2, dtype="float32")
    tasks = [
        Task("lungs", "segmentation", None, "dice", batches(data.seg_images, data.seg_masks),
             val=batches(data.val_seg_images, data.val_seg_masks)),
        Task("pneumonia", "classification", None, "categorical_crossentropy",
             batches(data.cls_images, onehot[data.cls_labels]),
             val=batches(data.val_cls_images, onehot[data.val_cls_labels])),
    ]
    results = finetune(model, tasks, "multimix", TrainConfig(epochs=1), seg_unlabelled=data.seg_unlabelled,
                       multimix={"variant": "umtls", "epochs": 1, "steps_per_epoch": 1, "batch_size": 4})
    assert set(results) == {"lungs", "pneumonia"}
    result = results["pneumonia"]
    assert result.strategy == "multimix" and result.phase == "multimix/umtls" and result.best_epoch == 1
    assert {"ce", "dice", "val_dice", "val_accuracy"} <= set(result.history)
    assert result.extra["multimix"]["config"]["variant"] == "umtls"


# -- how the training step assembles its inputs and loss ---------------------------------------------------
def _fixed_batch(data: MultiMixData, n: int = 4) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(7)
    strong = np.clip(data.cls_unlabelled[:n] + 0.2 * rng.standard_normal(data.cls_unlabelled[:n].shape), 0, 1)
    return {
        "seg_images": tf.constant(data.seg_images[:n]), "seg_masks": tf.constant(data.seg_masks[:n]),
        "seg_unlabelled": tf.constant(data.seg_unlabelled[:n]),
        "cls_images": tf.constant(data.cls_images[:n]), "cls_labels": tf.constant(data.cls_labels[:n]),
        "weak": tf.constant(data.cls_unlabelled[:n]), "strong": tf.constant(strong.astype("float32")),
    }


def test_training_step_assembles_the_papers_loss_from_the_saliency_and_the_threshold(data):
    """Each term recomputed outside the step from the same weights (dropout 0, so training mode is
    deterministic): the decoder must see the model's saliency, the FixMatch mask must use `config.threshold`,
    and the optimised total must be CE + lambda * SSL + alpha * Dice + beta * KL with the configured weights."""
    urep.seed_everything(5)
    model = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS, dropout=0.0)
    batch = _fixed_batch(data)
    weak_probs = tf.nn.softmax(model.classifier(batch["weak"], training=True)).numpy()
    confidence = np.sort(weak_probs.max(axis=1))
    threshold = float((confidence[1] + confidence[2]) / 2)  # two pseudo-labels kept, two below the threshold
    config = _config(threshold=threshold, ssl_weight=0.3, dice_weight=2.0, kl_weight=5.0)

    seg_x = tf.concat([batch["seg_images"], batch["seg_unlabelled"]], axis=0)
    saliency = model.saliency(seg_x)
    assert float(tf.reduce_max(saliency)) > 0
    seg_probs = tf.sigmoid(model.network([seg_x, saliency], training=True)["segmentation_logits"])
    dice = float(tf.reduce_mean(dice_loss(batch["seg_masks"], seg_probs[:4], per_image=True)))
    kl = float(segmentation_kl(seg_probs[:4], seg_probs[4:], "pixelwise"))
    cls_logits = model.classifier(tf.concat([batch["cls_images"], batch["weak"], batch["strong"]], 0), training=True)
    ce = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["cls_labels"], cls_logits[:4])))
    ssl, mask = fixmatch_loss(cls_logits[4:8], cls_logits[8:], threshold)
    np.testing.assert_array_equal(np.sort(mask.numpy()), [0, 0, 1, 1])

    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.network.trainable_variables)
    terms = {k: float(v) for k, v in make_train_step(model, optimizer, config)(batch).items()}

    assert terms["dice"] == pytest.approx(dice, rel=1e-4)  # fails if the decoder got zeros, not the saliency
    assert terms["kl"] == pytest.approx(kl, rel=1e-3) and kl > 1e-4
    assert terms["ce"] == pytest.approx(ce, rel=1e-4)
    assert terms["ssl"] == pytest.approx(float(ssl), rel=1e-4)  # fails with threshold 0 (all four kept)
    assert terms["mask_rate"] == pytest.approx(0.5)
    expected = terms["ce"] + 0.3 * terms["ssl"] + 2.0 * terms["dice"] + 5.0 * terms["kl"]
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)  # fails if the KL is only logged
    assert 5.0 * terms["kl"] > 1e-4 * expected


def test_model_fit_runs_the_same_step_as_the_trainer(data):
    """The benchmark's `model.fit` rows time the trainer's step: one `fit` step and one `make_train_step` step
    from the same weights on the same batch move the network to the same weights (dropout 0)."""
    from urep.bench.multimix_throughput import FitDriver
    from urep.training.multimix import train_step_body

    batch = _fixed_batch(data)
    config = _config(kl_weight=5.0)
    models, optimizers = [], []
    for _ in range(2):
        urep.seed_everything(8)
        model = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS, dropout=0.0)
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.network.trainable_variables)
        models.append(model)
        optimizers.append(optimizer)
    start = [w.copy() for w in models[0].network.get_weights()]
    for a, b in zip(start, models[1].network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    make_train_step(models[0], optimizers[0], config)(batch)
    driver = FitDriver(train_step_body(models[1], optimizers[1], config))
    driver.compile(optimizer=optimizers[1], jit_compile=False)
    history = driver.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=1,
                         shuffle=False, verbose=0)

    assert set(history.history) >= {"loss", "dice", "kl", "ce", "ssl"}
    moved = 0
    for before, loop_w, fit_w in zip(start, models[0].network.get_weights(), models[1].network.get_weights(),
                                     strict=True):
        np.testing.assert_allclose(fit_w, loop_w, rtol=1e-4, atol=1e-6)
        moved += not np.array_equal(before, loop_w)
    assert moved > len(start) // 2


def test_a_pseudo_label_below_the_threshold_contributes_nothing(data):
    """Above every weak confidence: no pseudo-label kept, SSL term 0, and the strong views get no gradient."""
    urep.seed_everything(6)
    model = multimix_for_variant("encssl", input_shape=(SIZE, SIZE, 1), channels=CHANNELS, dropout=0.0)
    batch = {k: v for k, v in _fixed_batch(data).items() if k in ("cls_images", "cls_labels", "weak", "strong")}
    confidence = tf.nn.softmax(model.classifier(batch["weak"], training=True)).numpy().max(axis=1)
    high = float(confidence.max()) + 1e-3
    assert high < 1.0

    def run(threshold, strong):
        urep.seed_everything(6)
        fresh = multimix_for_variant("encssl", input_shape=(SIZE, SIZE, 1), channels=CHANNELS, dropout=0.0)
        fresh.network.set_weights(model.network.get_weights())
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(fresh.network.trainable_variables)
        step = make_train_step(fresh, optimizer, _config(variant="encssl", threshold=threshold))
        terms = step({**batch, "strong": strong})
        return {k: float(v) for k, v in terms.items()}, fresh.network.get_weights()

    other_strong = tf.reverse(batch["strong"], axis=[1])
    kept_none, weights_a = run(high, batch["strong"])
    assert kept_none["ssl"] == 0.0 and kept_none["mask_rate"] == 0.0
    assert kept_none["loss"] == pytest.approx(kept_none["ce"], rel=1e-6)
    _, weights_b = run(high, other_strong)  # the strong views cannot matter when nothing is kept
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    kept_all, _ = run(0.0, batch["strong"])
    assert kept_all["mask_rate"] == 1.0 and kept_all["ssl"] > 0


def test_selection_never_keeps_a_constant_classifier_over_a_balanced_one(monkeypatch, data):
    """Plain accuracy prefers an all-'pneumonia' epoch on a 3:1 set; the balanced score and the loss do not."""
    labels = np.array([1] * 12 + [0] * 4)
    constant = np.tile([[0.2, 0.8]], (16, 1))
    informative = np.where(labels[:, None] == 1, [[0.1, 0.9]], [[0.9, 0.1]])
    informative[:6] = [[0.55, 0.45]]  # six errors on the majority class: accuracy 10/16 < the constant's 12/16
    assert np.mean(informative.argmax(1) == labels) < np.mean(constant.argmax(1) == labels)
    scores = {}
    for selection in ("balanced", "loss"):
        config = _config(variant="encoder", selection=selection)
        for name, probs in (("constant", constant), ("informative", informative)):
            monkeypatch.setattr(mm_train, "predict_multimix", lambda *a, p=probs, **k: {"classification": p})
            split = MultiMixData(val_cls_images=np.zeros((16, 4, 4)), val_cls_labels=labels)
            scores[(selection, name)] = mm_train._validation_metrics(None, split, config)
    for selection in ("balanced", "loss"):
        assert scores[(selection, "informative")]["val_score"] > scores[(selection, "constant")]["val_score"]
    assert scores[("balanced", "constant")]["val_balanced_accuracy"] == 0.5
    assert scores[("balanced", "constant")]["val_positive_fraction"] == 1.0
    assert scores[("balanced", "informative")]["val_positive_fraction"] == pytest.approx(6 / 16)


# -- mixed precision -------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, dtype, scaled", [("mixed_bfloat16", "bfloat16", False),
                                                   ("mixed_float16", "float16", True)])
def test_multimix_trains_under_mixed_precision_with_float32_outputs(data, policy, dtype, scaled):
    from urep.training.distribute import mixed_precision_scope
    from urep.training.multimix import compute_dtype, multimix_optimizer, predict_multimix

    keras.utils.set_random_seed(0)
    reference = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    with mixed_precision_scope(policy):
        model = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    assert compute_dtype(reference) == "float32" and compute_dtype(model) == dtype
    assert model.network.get_layer("class_logits").compute_dtype == "float32"  # logits stay float32
    assert isinstance(multimix_optimizer(model, 1e-3), keras.optimizers.LossScaleOptimizer) is scaled
    assert not isinstance(multimix_optimizer(reference, 1e-3), keras.optimizers.LossScaleOptimizer)

    # the same weights predict what the float32 network predicts, within the low precision's rounding
    model.network.set_weights(reference.network.get_weights())
    low, full = predict_multimix(model, data.val_seg_images), predict_multimix(reference, data.val_seg_images)
    for key in ("segmentation", "classification"):
        assert low[key].dtype == np.float32 and low[key].shape == full[key].shape
        np.testing.assert_allclose(low[key], full[key], atol=0.05)

    before = model.network.get_layer("enc1_conv1").get_weights()[0].copy()
    result = train_multimix(model, data, _config(epochs=2))
    assert result.compute_dtype == dtype
    assert all(np.isfinite(result.history["loss"])) and all(np.isfinite(result.history["kl"]))
    assert not np.allclose(model.network.get_layer("enc1_conv1").get_weights()[0], before)
    assert 0.0 <= result.best_metrics["val_dice"] <= 1.0
