"""The MultiMix model side: building a variant's network, the training step, prediction and test scores.

``make_train_step`` returns the ``tf.function`` of one optimizer step: the total loss
``CE + λ·FixMatch + α·Dice + β·KL`` (paper eqs. 1-2) over the parts the variant trains, the saliency bridge
input computed inside the step. ``predict_multimix`` / ``evaluate_multimix`` run the model in inference mode.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urep.losses import dice_loss, fixmatch_loss, segmentation_kl
from urep.metrics import classification_scores, segmentation_scores
from urep.models.multimix import MultiMix, multimix
from urep.training.config import _check
from urep.training.distribute import gradients
from urep.training.multimix.config import VARIANTS, MultiMixConfig
from urep.training.multimix.data import _images, _labels, _masks


def multimix_for_variant(variant: str, **model_kwargs: Any) -> MultiMix:
    """Build the network an ablation needs: ``urep.models.multimix.multimix`` with the bridge on or off.

    Args:
        variant: one of ``VARIANTS``.
        **model_kwargs: passed to ``multimix`` (``input_shape``, ``channels``, ...); ``saliency_bridge`` is set
            from the variant.

    Returns:
        A ``MultiMix`` model.

    Raises:
        ValueError: unknown variant, or a ``saliency_bridge`` argument that contradicts it.
    """
    _check(variant in VARIANTS, f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    wanted = VARIANTS[variant].saliency
    _check(model_kwargs.pop("saliency_bridge", wanted) == wanted,
           f"variant {variant!r} needs saliency_bridge={wanted}")
    return multimix(saliency_bridge=wanted, **model_kwargs)


def make_train_step(model: MultiMix, optimizer: keras.optimizers.Optimizer, config: MultiMixConfig):
    """One optimizer step over a ``training_dataset`` batch, as a ``tf.function`` (XLA with ``jit_compile``).

    Args:
        model: the ``MultiMix`` being trained.
        optimizer: a built optimizer over ``model.network.trainable_variables``.
        config: weights, threshold, KL mode and the variant's parts.

    Returns:
        ``step(batch) -> {"loss", "ce", "ssl", "mask_rate", "dice", "kl"}`` (the terms the variant has).
    """
    return tf.function(train_step_body(model, optimizer, config), jit_compile=config.jit_compile)


def train_step_body(model: MultiMix, optimizer: keras.optimizers.Optimizer, config: MultiMixConfig):
    """The Python body of ``make_train_step``'s step, not yet traced.

    For callers that trace it themselves, e.g. a ``keras.Model.train_step`` run by ``model.fit`` (the
    ``fit`` rows of ``urep.bench.multimix_throughput``). Same arguments and return value as ``make_train_step``.
    """
    parts = config.parts
    network = model.network
    variables = network.trainable_variables

    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if parts.segmentation:
            seg_x = batch["seg_images"]
            n_labelled = tf.shape(seg_x)[0]
            if parts.kl:
                seg_x = tf.concat([seg_x, batch["seg_unlabelled"]], axis=0)
            seg_inputs = model.network_inputs(seg_x)  # saliency: inner tape, inference mode, constant
        if parts.classification:
            cls_x = batch["cls_images"]
            n_cls = tf.shape(cls_x)[0]
            if parts.ssl:
                n_weak = tf.shape(batch["weak"])[0]
                cls_x = tf.concat([cls_x, batch["weak"], batch["strong"]], axis=0)
        terms: dict[str, tf.Tensor] = {}
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            if parts.segmentation:
                logits = network(seg_inputs, training=True)["segmentation_logits"]
                probs = tf.sigmoid(tf.cast(logits, tf.float32))
                # Soft Dice per image (smooth 1), averaged over the batch: the public code's dice_loss.
                terms["dice"] = tf.reduce_mean(dice_loss(batch["seg_masks"], probs[:n_labelled], per_image=True))
                total += config.dice_weight * terms["dice"]
                if parts.kl:
                    terms["kl"] = segmentation_kl(probs[:n_labelled], probs[n_labelled:], config.kl_mode)
                    total += config.kl_weight * terms["kl"]
            if parts.classification:
                logits = tf.cast(model.classifier(cls_x, training=True), tf.float32)
                terms["ce"] = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=batch["cls_labels"], logits=logits[:n_cls]))
                total += terms["ce"]
                if parts.ssl:
                    weak, strong = logits[n_cls:n_cls + n_weak], logits[n_cls + n_weak:]
                    terms["ssl"], mask = fixmatch_loss(weak, strong, config.threshold)
                    terms["mask_rate"] = tf.reduce_mean(mask)
                    total += config.ssl_weight * terms["ssl"]
        grads = gradients(tape, total, variables, optimizer)  # through the loss scale under mixed_float16
        # Parts a variant does not train (e.g. the decoder of "encoder") get zero gradients: Adam leaves them
        # exactly unchanged, and one optimizer serves every variant.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        terms["loss"] = total
        return terms

    return step


def predict_multimix(model: MultiMix, images: Any, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Predict in inference mode, the saliency bridge computed as in ``MultiMix.call`` (no labels needed).

    Args:
        model: a ``MultiMix``.
        images: ``(N, H, W, C)`` or ``(N, H, W)`` float32 in [0, 1].
        batch_size: prediction batch size.

    Returns:
        ``{"segmentation": (N, H, W, 1), "classification": (N, n_classes)}`` probabilities.
    """
    images = _images(images, "images")
    predict = _predict_fn(model)
    outputs: dict[str, list[np.ndarray]] = {"segmentation": [], "classification": []}
    for start in range(0, len(images), batch_size):
        batch = predict(tf.constant(images[start:start + batch_size]))
        for key in outputs:
            outputs[key].append(batch[key].numpy())
    return {key: np.concatenate(values) for key, values in outputs.items()}


_PREDICT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_fn(model: MultiMix):
    """One traced inference function per model (the saliency's inner tape included)."""
    if model not in _PREDICT_FNS:
        shape = model.network.get_layer("image").output.shape
        spec = tf.TensorSpec([None, *shape[1:]], tf.float32)
        _PREDICT_FNS[model] = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return _PREDICT_FNS[model]


def evaluate_multimix(
    model: MultiMix,
    seg_images: Any = None,
    seg_masks: Any = None,
    cls_images: Any = None,
    cls_labels: Any = None,
    class_names: Sequence[str] | None = ("normal", "pneumonia"),
    batch_size: int = 16,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The paper's metrics on one test set: accuracy and F1 per class; Dice, average Hausdorff and SSIM.

    Segmentation and classification are evaluated on their own images (in the paper JSRT/Montgomery for
    segmentation, CheX/NIH for classification); pass either pair or both. SSIM compares the binarised predicted
    mask with the reference mask (both in {0, 1}, ``max_val`` 1; ``tf.image.ssim`` via
    ``urep.metrics.reconstruction_metrics``; NaN for images smaller than its 11-pixel window).

    Args:
        model: a trained ``MultiMix``.
        seg_images: ``(N, H, W[, C])`` in [0, 1], with ``seg_masks`` ``(N, H, W[, 1])`` 0/1.
        seg_masks: reference masks.
        cls_images: ``(M, H, W[, C])`` in [0, 1], with ``cls_labels`` ``(M,)`` class indices.
        cls_labels: reference classes.
        class_names: names of the classes (keys of ``f1_per_class``); None = "0", "1", ...
        batch_size: prediction batch size.
        threshold: mask binarisation threshold.

    Returns:
        ``{"classification": {"accuracy", "balanced_accuracy", "auc", "positive_fraction" (see
        ``urep.metrics.balanced_scores``), "f1_per_class": {name: f1}, "metrics": full
        urep.metrics.classification_metrics dict, "predicted": (M,) int, "correct": (M,) bool},
        "segmentation": {"dice", "avg_hausdorff", "ssim", "metrics": full segmentation_metrics dict,
        "per_image": {"dice", "avg_hausdorff", "ssim": (N,) arrays}}}`` — only the tasks given. The per-sample
        arrays feed ``urep.statistics.mcnemar`` / ``wilcoxon_paired``.

    Raises:
        ValueError: when neither task's data is given, or the arrays are inconsistent.
    """
    _check(seg_images is not None or cls_images is not None, "evaluate_multimix needs seg_images or cls_images")
    _check((seg_images is None) == (seg_masks is None), "seg_images and seg_masks must be given together")
    _check((cls_images is None) == (cls_labels is None), "cls_images and cls_labels must be given together")
    result: dict[str, Any] = {}
    if cls_images is not None:
        images = _images(cls_images, "cls_images")
        labels = _labels(cls_labels, "cls_labels", images, model.n_classes)
        probs = predict_multimix(model, images, batch_size)["classification"]
        result["classification"] = classification_scores(labels, probs, class_names)
    if seg_images is not None:
        images = _images(seg_images, "seg_images")
        masks = _masks(seg_masks, "seg_masks", images)
        probs = predict_multimix(model, images, batch_size)["segmentation"]
        result["segmentation"] = segmentation_scores(masks, probs, threshold)
    return result
