"""Tests of urep/training/multimix.py: loss terms, config, data checks, training, checkpoint selection, ablations.

(Named test_multimix_training.py, not test_multimix.py: tests/models/test_multimix.py exists and the tests
folders have no __init__.py, so two test modules with one basename cannot be collected together.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import urep
from urep.training import multimix as mm
from urep.training.multimix import (
    VARIANTS,
    MultiMixConfig,
    MultiMixData,
    evaluate_multimix,
    fixmatch_loss,
    label_budget,
    multimix_for_variant,
    segmentation_kl,
    train_multimix,
)

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


# -- loss terms ------------------------------------------------------------------------------------------
def test_pseudo_label_mask_respects_the_threshold():
    # Two classes: max softmax probability = sigmoid(|logit difference|).
    max_probs = np.array([0.69, 0.71, 0.9, 0.5, 0.7001])
    diffs = np.log(max_probs / (1 - max_probs))
    weak = tf.constant(np.stack([np.zeros(5), diffs], axis=1) * np.array([[1.0], [-1], [1], [1], [-1]]),
                       tf.float32)
    strong = tf.constant(np.random.default_rng(0).standard_normal((5, 2)), tf.float32)
    loss, mask = fixmatch_loss(weak, strong, threshold=0.7)
    np.testing.assert_array_equal(mask.numpy(), [0, 1, 1, 0, 1])
    pseudo = weak.numpy().argmax(axis=1)
    log_probs = strong.numpy() - np.log(np.exp(strong.numpy()).sum(axis=1, keepdims=True))
    ce = -log_probs[np.arange(5), pseudo]
    assert float(loss) == pytest.approx(float(np.mean(ce * mask.numpy())), rel=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([weak, strong])
        loss, _ = fixmatch_loss(weak, strong, 0.7)
    assert tape.gradient(loss, weak) is None  # pseudo-labels are constants
    assert np.abs(tape.gradient(loss, strong).numpy()).sum() > 0
    nothing_kept, mask = fixmatch_loss(weak, strong, threshold=0.95)
    assert float(nothing_kept) == 0.0 and mask.numpy().sum() == 0


@pytest.mark.parametrize("mode", ["batch_mean", "pixelwise"])
def test_kl_is_zero_for_identical_and_positive_for_different_predictions(mode):
    rng = np.random.default_rng(1)
    p = tf.constant(rng.uniform(0.05, 0.95, (3, 8, 8, 1)), tf.float32)
    assert float(segmentation_kl(p, p, mode)) == pytest.approx(0.0, abs=1e-7)
    q = tf.constant(rng.uniform(0.05, 0.95, (3, 8, 8, 1)), tf.float32)
    assert float(segmentation_kl(p, q, mode)) > 1e-3
    with tf.GradientTape() as tape:
        tape.watch(q)
        value = segmentation_kl(p, q, mode)
    assert np.abs(tape.gradient(value, q).numpy()).sum() > 0


def test_kl_matches_the_bernoulli_formula_on_batch_means():
    p = tf.constant([[[[0.9]]], [[[0.7]]]])  # labelled batch mean 0.8
    q = tf.constant([[[[0.2]]]])  # unlabelled (a different batch size is fine)
    expected = 0.8 * np.log(0.8 / 0.2) + 0.2 * np.log(0.2 / 0.8)
    assert float(segmentation_kl(p, q)) == pytest.approx(expected, rel=1e-5)


def test_public_code_single_channel_softmax_kl_is_always_zero():
    """The defect being fixed: softmax over one channel is 1, so its KL carries no signal."""
    labelled = tf.constant(np.random.default_rng(2).standard_normal((2, 8, 8, 1)), tf.float32)
    unlabelled = -labelled
    p = tf.nn.softmax(labelled, axis=-1)
    public = p * (tf.nn.log_softmax(labelled, axis=-1) - tf.nn.log_softmax(unlabelled, axis=-1))
    assert float(tf.reduce_mean(public)) == 0.0
    assert float(segmentation_kl(tf.sigmoid(labelled), tf.sigmoid(unlabelled), "pixelwise")) > 0.1


# -- configuration and data ------------------------------------------------------------------------------
def test_config_defaults_are_the_papers_and_the_schedule_steps_every_8_epochs():
    config = MultiMixConfig()
    assert (config.learning_rate, config.batch_size, config.threshold) == (1e-4, 10, 0.7)
    assert (config.ssl_weight, config.dice_weight, config.kl_weight) == (0.25, 5.0, 0.01)
    assert [config.learning_rate_at(e) for e in (0, 7, 8, 16)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-6])
    assert MultiMixConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "fixmatch"}, "variant"),
        ({"threshold": 1.5}, "threshold"),
        ({"kl_weight": -1.0}, "kl_weight"),
        ({"kl_mode": "sum"}, "kl_mode"),
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


def test_label_budget_splits_reproducibly_and_stratifies():
    images = np.arange(30)[:, None]
    labels = np.array([0] * 20 + [1] * 10)
    (li, ll), (ui, ul) = label_budget((images, labels), 9, seed=3, stratify=labels)
    assert len(li) == 9 and len(ui) == 21
    assert set(li[:, 0]) | set(ui[:, 0]) == set(range(30)) and not set(li[:, 0]) & set(ui[:, 0])
    assert np.bincount(ll).tolist() == [6, 3]
    again, _ = label_budget((images, labels), 9, seed=3, stratify=labels)
    np.testing.assert_array_equal(again[0], li)
    other, _ = label_budget((images, labels), 9, seed=4, stratify=labels)
    assert not np.array_equal(other[0], li)
    frame = pd.DataFrame({"image": [f"{i}.png" for i in range(30)], "label": labels})
    labelled, unlabelled = label_budget(frame, 10, seed=0, stratify="label")
    assert len(labelled) == 10 and len(unlabelled) == 20 and labelled["label"].sum() in (3, 4)
    everything, none = label_budget(images, "all")
    assert len(everything) == 30 and len(none) == 0
    with pytest.raises(ValueError, match="label budget n"):
        label_budget(images, 31)
    with pytest.raises(ValueError, match="share their first dimension"):
        label_budget((images, labels[:5]), 3)


# -- training --------------------------------------------------------------------------------------------
def test_tiny_multimix_run_lowers_the_loss_and_selects_on_validation(data, tmp_path):
    urep.seed_everything(0)
    model = multimix_for_variant("multimix", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    config = _config(epochs=4, steps_per_epoch=4, lr_decay_epochs=100)
    result = train_multimix(model, data, config, run=tmp_path)
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.history["dice"][-1] < result.history["dice"][0]
    for key in ("ce", "ssl", "mask_rate", "kl", "val_dice", "val_accuracy", "val_score", "lr"):
        assert len(result.history[key]) == 4
    assert all(k > 0 for k in result.history["kl"])
    scores = result.history["val_score"]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert result.best_score == pytest.approx(max(scores))
    np.testing.assert_allclose(np.add(result.history["val_dice"], result.history["val_accuracy"]), scores)
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

    monkeypatch.setattr(mm, "_validation_metrics", fake_validation)
    result = train_multimix(model, data, _config(variant="unet", epochs=3, steps_per_epoch=1), run=tmp_path)
    assert result.best_epoch == 2 and result.best_score == 0.9
    for restored, kept in zip(model.network.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots[1], snapshots[2], strict=True))
    fresh = multimix_for_variant("unet", input_shape=(SIZE, SIZE, 1), channels=CHANNELS)
    fresh.network.load_weights(result.checkpoint)
    for loaded, kept in zip(fresh.network.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(loaded, kept)


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
    from urep.training import STRATEGIES, Task, TrainConfig, finetune

    assert STRATEGIES["multimix"] is mm.multimix_strategy
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
