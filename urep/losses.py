"""Losses of the papers: BCE + Dice, Dice, CCE, MSE, the joint strategy's weighted sum, MultiMix's SSL terms.

Pure functions (`dice_coefficient`, `dice_loss`, `bce_dice_loss`, `weighted_sum`, `fixmatch_loss`,
`segmentation_kl`) with thin `keras.losses.Loss` classes on top (`DiceLoss`, `BCEDiceLoss`), usable in
`model.compile` and in custom loops and serialized under the package name "urep". Dice is per image by default
(`per_image=True`, smoothing 1); docs/design.md ("Losses, metrics and splits") gives the conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf
from keras import ops


# -------------------------------------------------------------------------------------------- pure math
def dice_coefficient(y_true: Any, y_pred: Any, smooth: float = 1.0, per_image: bool = True) -> Any:
    """Soft Dice coefficient `(2 * sum(y * p) + smooth) / (sum(y) + sum(p) + smooth)`.

    Args:
        y_true: ground-truth masks `(batch, H, W, C)` (or any `(batch, ...)`) in [0, 1].
        y_pred: predicted probabilities, same shape.
        smooth: smoothing constant (>= 0) added to numerator and denominator.
        per_image: True: one coefficient per image, shape `(batch,)`; False: one over the whole batch,
            a scalar.

    Returns:
        The Dice coefficient(s) in [0, 1].
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape))) if per_image else None
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


def dice_loss(y_true: Any, y_pred: Any, smooth: float = 1.0, per_image: bool = True) -> Any:
    """`1 - dice_coefficient(...)`: shape `(batch,)` when `per_image`, else a scalar."""
    return 1.0 - dice_coefficient(y_true, y_pred, smooth, per_image)


def bce_dice_loss(
    y_true: Any,
    y_pred: Any,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    per_image: bool = True,
    from_logits: bool = False,
) -> Any:
    """`bce_weight * BCE + dice_weight * Dice loss` (journal equation 1 with both weights 1).

    BCE is Keras' binary cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]) averaged over each
    image's pixels; with `per_image=False` it is averaged over the whole batch, like the Dice term.

    Args:
        y_true: masks `(batch, H, W, C)` in {0, 1} (soft labels allowed).
        y_pred: probabilities (or logits with `from_logits`), same shape.
        bce_weight: weight of the BCE term.
        dice_weight: weight of the Dice term.
        smooth: Dice smoothing constant.
        per_image: see `dice_coefficient`.
        from_logits: `y_pred` holds logits; a sigmoid is applied for the Dice term.

    Returns:
        Shape `(batch,)` when `per_image`, else a scalar.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = keras.losses.binary_crossentropy(y_true, y_pred, from_logits=from_logits)
    bce_axes = tuple(range(1, len(bce.shape))) if per_image else None
    bce = ops.mean(bce, axis=bce_axes) if bce_axes != () else bce
    probabilities = ops.sigmoid(y_pred) if from_logits else y_pred
    return bce_weight * bce + dice_weight * dice_loss(y_true, probabilities, smooth, per_image)


def weighted_sum(losses: Mapping[str, Any], weights: Mapping[str, float] | None = None) -> Any:
    """The joint strategy's loss `sum_i w_i * L_i` over named task losses.

    Args:
        losses: task name -> scalar loss tensor.
        weights: task name -> weight (>= 0), with exactly the keys of `losses`; None for all ones.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: no loss, keys that differ between `losses` and `weights` (nothing is dropped
            silently), or a negative / non-numeric weight.
    """
    if not losses:
        raise ValueError("weighted_sum needs at least one task loss")
    weights = _check_weights(losses, weights)
    return sum(weights[name] * value for name, value in losses.items())


def _check_weights(losses: Mapping[str, Any], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {name: 1.0 for name in losses}
    missing = sorted(set(losses) - set(weights))
    extra = sorted(set(weights) - set(losses))
    if missing or extra:
        raise ValueError(
            f"loss weights must name exactly the tasks {sorted(losses)}; missing {missing}, unknown {extra}"
        )
    for name, value in weights.items():
        _check_non_negative(value, f"weight of task {name!r}")
    return {name: float(value) for name, value in weights.items()}


def _check_non_negative(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} must be a non-negative number, got {value!r}")
    return float(value)


def _check_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be True or False, got {value!r}")
    return value


# ------------------------------------------------------------------------- semi-supervised (MultiMix)
#: `segmentation_kl` modes: the paper's pixel-wise pairs, or batch-averaged maps (an option).
KL_MODES = ("pixelwise", "batch_mean")


def fixmatch_loss(weak_logits: tf.Tensor, strong_logits: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """FixMatch's unsupervised term: ``mean_i CE(strong_i, argmax weak_i) · [max softmax(weak_i) >= t]``.

    The pseudo-labels and the mask are constants (no gradient through the weak view). The mean runs over the
    whole unlabelled batch, masked-out images count as 0 (FixMatch; the public code).

    Args:
        weak_logits: ``(batch, n_classes)`` logits of the weak views.
        strong_logits: ``(batch, n_classes)`` logits of the strong views of the same images.
        threshold: confidence t.

    Returns:
        ``(loss, mask)``: a scalar and the ``(batch,)`` float32 0/1 mask of kept pseudo-labels.
    """
    probs = tf.nn.softmax(tf.stop_gradient(tf.cast(weak_logits, tf.float32)), axis=-1)
    pseudo = tf.argmax(probs, axis=-1, output_type=tf.int32)
    mask = tf.cast(tf.reduce_max(probs, axis=-1) >= threshold, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pseudo, logits=tf.cast(strong_logits, tf.float32))
    return tf.reduce_mean(ce * mask), mask


def segmentation_kl(labelled_probs: tf.Tensor, unlabelled_probs: tf.Tensor, mode: str = "pixelwise",
                    epsilon: float = 1e-6) -> tf.Tensor:
    """KL between labelled and unlabelled segmentation predictions, each pixel a (background, foreground) pair.

    Args:
        labelled_probs: ``(batch_l, H, W, 1)`` sigmoid foreground probabilities on labelled images (P).
        unlabelled_probs: ``(batch_u, H, W, 1)`` the same on unlabelled images (Q).
        mode: ``"pixelwise"`` (the paper's): ``KL(P_i ‖ Q_i)`` per pixel of the i-th pair, averaged (equal
            batches); ``"batch_mean"``: ``KL(mean_b P ‖ mean_b Q)`` per pixel, averaged over pixels (batch sizes
            may differ).
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]``.

    Returns:
        A non-negative scalar; 0 exactly when the compared distributions are equal.

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode not in KL_MODES:
        raise ValueError(f"kl mode must be one of {KL_MODES}, got {mode!r}")
    p = tf.cast(labelled_probs, tf.float32)
    q = tf.cast(unlabelled_probs, tf.float32)
    if mode == "batch_mean":
        p = tf.reduce_mean(p, axis=0)
        q = tf.reduce_mean(q, axis=0)
    p = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
    q = tf.clip_by_value(q, epsilon, 1.0 - epsilon)
    kl = p * (tf.math.log(p) - tf.math.log(q)) + (1.0 - p) * (tf.math.log(1.0 - p) - tf.math.log(1.0 - q))
    return tf.reduce_mean(kl)


# ------------------------------------------------------------------------------------- Keras objects
@keras.saving.register_keras_serializable(package="urep")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss `1 - dice_coefficient` (see the module docstring for per-image vs whole batch).

    Args:
        smooth: smoothing constant (>= 0).
        per_image: one Dice per image then averaged over the batch (default), or one over the batch.
        name, reduction, dtype: as `keras.losses.Loss`.

    Raises:
        ValueError: a negative smoothing constant or a non-boolean `per_image`.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        per_image: bool = True,
        name: str = "dice_loss",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth = _check_non_negative(smooth, "smooth")
        self.per_image = _check_bool(per_image, "per_image")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return dice_loss(y_true, y_pred, self.smooth, self.per_image)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth, "per_image": self.per_image}


@keras.saving.register_keras_serializable(package="urep")
class BCEDiceLoss(keras.losses.Loss):
    """`bce_weight * BCE + dice_weight * Dice loss`, the papers' segmentation loss (journal equation 1).

    Args:
        bce_weight: weight of binary cross-entropy (>= 0).
        dice_weight: weight of the Dice loss (>= 0); not both zero.
        smooth: Dice smoothing constant (>= 0).
        per_image: see `DiceLoss`.
        from_logits: predictions are logits.
        name, reduction, dtype: as `keras.losses.Loss`.

    Raises:
        ValueError: negative weights or smoothing, both weights zero, or non-boolean flags.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        per_image: bool = True,
        from_logits: bool = False,
        name: str = "bce_dice_loss",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bce_weight = _check_non_negative(bce_weight, "bce_weight")
        self.dice_weight = _check_non_negative(dice_weight, "dice_weight")
        if self.bce_weight == 0 and self.dice_weight == 0:
            raise ValueError("bce_weight and dice_weight cannot both be 0")
        self.smooth = _check_non_negative(smooth, "smooth")
        self.per_image = _check_bool(per_image, "per_image")
        self.from_logits = _check_bool(from_logits, "from_logits")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return bce_dice_loss(
            y_true, y_pred, self.bce_weight, self.dice_weight, self.smooth, self.per_image, self.from_logits
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
            "per_image": self.per_image,
            "from_logits": self.from_logits,
        }


#: Keras' own losses, re-exported under the names the experiments use.
CategoricalCrossentropy = keras.losses.CategoricalCrossentropy
SparseCategoricalCrossentropy = keras.losses.SparseCategoricalCrossentropy
def balanced_class_weights(labels: Any, n_classes: int) -> list[float]:
    """`n / (n_classes_present * n_c)` per class (scikit-learn's `compute_class_weight("balanced")`); a class
    absent from `labels` gets 1.

    Args:
        labels: `(N,)` integer class indices in `[0, n_classes)`.
        n_classes: number of classes.
    """
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).astype(int).ravel()
    if labels.size == 0:
        raise ValueError("balanced_class_weights needs at least one label")
    present = np.unique(labels)
    weights = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=labels), strict=True))
    return [float(weights.get(c, 1.0)) for c in range(n_classes)]


@keras.saving.register_keras_serializable(package="urep")
class ClassWeightedCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy of one-hot targets, each example weighted by its true class's weight.

    Args:
        class_weights: one weight per class (e.g. `balanced_class_weights`).
        name, reduction, dtype: as `keras.losses.Loss`.
    """

    def __init__(self, class_weights: list[float], name: str = "class_weighted_cce",
                 reduction: str = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = [float(w) for w in class_weights]
        if not self.class_weights or any(w < 0 for w in self.class_weights):
            raise ValueError(f"class_weights must be non-negative numbers, got {class_weights!r}")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        weights = ops.sum(y_true * ops.convert_to_tensor(self.class_weights, dtype="float32"), axis=-1)
        return keras.losses.categorical_crossentropy(y_true, ops.cast(y_pred, "float32")) * weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_weights": self.class_weights}


BinaryCrossentropy = keras.losses.BinaryCrossentropy
MeanSquaredError = keras.losses.MeanSquaredError

LOSSES: dict[str, type[keras.losses.Loss]] = {
    "bce_dice": BCEDiceLoss,
    "dice": DiceLoss,
    "cce": CategoricalCrossentropy,
    "sparse_cce": SparseCategoricalCrossentropy,
    "mse": MeanSquaredError,
    "bce": BinaryCrossentropy,
}

#: The loss of each kind of task (names in `LOSSES`): the papers' BCE + Dice for segmentation (journal
#: equation 1), cross-entropy for classification, MSE for reconstruction (denoising, super-resolution).
TASK_LOSSES: dict[str, str] = {"classification": "cce", "segmentation": "bce_dice", "reconstruction": "mse"}


def get_loss(name: str, **kwargs: Any) -> keras.losses.Loss:
    """Build a loss by its config name.

    Args:
        name: one of "bce_dice", "dice", "cce", "sparse_cce", "mse", "bce".
        **kwargs: constructor arguments of that loss.

    Returns:
        A new `keras.losses.Loss`.

    Raises:
        ValueError: an unknown name.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)


class WeightedSumLoss:
    """The joint strategy's loss over several tasks: `sum_i w_i * loss_i(y_true[i], y_pred[i])`.

    For custom training loops (`model.compile` handles dict outputs with its own `loss_weights`).

    Args:
        losses: task name -> `keras.losses.Loss` or a `get_loss` name.
        weights: task name -> weight (>= 0), same keys as `losses`; None for all ones.

    Raises:
        ValueError: as `weighted_sum`, or an unknown loss name.
    """

    def __init__(
        self, losses: Mapping[str, keras.losses.Loss | str], weights: Mapping[str, float] | None = None
    ) -> None:
        if not losses:
            raise ValueError("WeightedSumLoss needs at least one task loss")
        self.losses = {
            name: get_loss(loss) if isinstance(loss, str) else loss for name, loss in losses.items()
        }
        self.weights = _check_weights(self.losses, weights)

    def components(self, y_true: Mapping[str, Any], y_pred: Mapping[str, Any]) -> dict[str, Any]:
        """Task name -> that task's (unweighted) scalar loss.

        Raises:
            ValueError: `y_true` or `y_pred` lacks a task.
        """
        for label, values in (("y_true", y_true), ("y_pred", y_pred)):
            missing = sorted(set(self.losses) - set(values))
            if missing:
                raise ValueError(f"{label} lacks tasks {missing}; expected {sorted(self.losses)}")
        return {name: loss(y_true[name], y_pred[name]) for name, loss in self.losses.items()}

    def __call__(self, y_true: Mapping[str, Any], y_pred: Mapping[str, Any]) -> Any:
        """The weighted total, a scalar tensor."""
        return weighted_sum(self.components(y_true, y_pred), self.weights)
