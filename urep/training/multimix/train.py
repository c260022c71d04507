"""MultiMix training loop: ``train_multimix`` (epochs, validation, best-epoch selection) and the "multimix" strategy.

After every epoch the validation sets are predicted and scored (``_validation_metrics``); the epoch with the
best ``val_score`` (balanced score or validation loss, never plain accuracy) is kept, optionally written to the
run directory and restored. ``multimix_strategy`` adapts it to ``urep.training.strategies.finetune``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urep.io import atomic_save, atomic_write_json
from urep.losses import dice_loss
from urep.metrics import balanced_scores, segmentation_metrics
from urep.models.multimix import MultiMix
from urep.run_dir import RunDir
from urep.training.config import _check
from urep.training.loop import TrainResult
from urep.training.multimix.config import MultiMixConfig
from urep.training.multimix.data import MultiMixData, data_from_tasks, steps_per_epoch, training_dataset
from urep.training.multimix.step import make_train_step, predict_multimix

logger = logging.getLogger(__name__)


@dataclass
class MultiMixResult:
    """What ``train_multimix`` returns.

    Attributes:
        variant: the variant trained.
        history: per-epoch lists (like ``urep.training.TrainResult``): the mean training loss terms ("loss",
            "ce", "ssl", "mask_rate" = fraction of pseudo-labels kept, "dice", "kl" as the variant has them),
            "lr", "seconds", and the validation metrics: "val_dice", "val_dice_loss", "val_accuracy",
            "val_balanced_accuracy", "val_auc", "val_positive_fraction", "val_ce", "val_loss", "val_score"
            (as the variant has them; see ``_validation_metrics``).
        best_epoch: 1-based epoch with the highest ``val_score`` (the first on ties).
        best_score: that score.
        best_metrics: that epoch's validation metrics.
        epochs_run: epochs completed.
        steps_run: optimizer steps taken.
        seconds: wall-clock training time (validation included).
        trainable_params: trainable parameters of the network.
        total_params: all parameters.
        checkpoint: path of the best weights (``best.weights.h5``, for ``model.network.load_weights``) when a
            run directory was given.
        config: the ``MultiMixConfig`` as a dict.
        compute_dtype: what the convolutions computed in (``float32``, ``bfloat16``, ``float16``); float16
            steps go through dynamic loss scaling.
    """

    variant: str
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float = float("-inf")
    best_metrics: dict[str, float] = field(default_factory=dict)
    epochs_run: int = 0
    steps_run: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    checkpoint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    compute_dtype: str = "float32"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def _validation_metrics(model: MultiMix, data: MultiMixData, config: MultiMixConfig) -> dict[str, float]:
    """Validation metrics and the checkpoint-selection score ``val_score`` (higher is better).

    ``selection="balanced"``: ``w_seg · Dice + w_cls · (balanced accuracy + AUC) / 2`` divided by the weights
    used (AUC left out when undefined); ``selection="loss"``: minus the validation loss
    ``CE + dice_weight · soft-Dice loss`` of the tasks the variant trains. Plain accuracy never selects: on an
    imbalanced set a constant classifier scores high (0.757 on Kermany's test split).
    """
    parts = config.parts
    metrics: dict[str, float] = {}
    score = 0.0
    weights = 0.0
    loss = 0.0
    if parts.segmentation:
        probs = predict_multimix(model, data.val_seg_images, config.eval_batch_size)["segmentation"]
        metrics["val_dice"] = segmentation_metrics(data.val_seg_masks, probs)["dice"]
        metrics["val_dice_loss"] = float(tf.reduce_mean(dice_loss(
            tf.constant(data.val_seg_masks), tf.constant(probs), per_image=True)))
        loss += config.dice_weight * metrics["val_dice_loss"]
        score += config.selection_weights[0] * metrics["val_dice"]
        weights += config.selection_weights[0]
    if parts.classification:
        probs = predict_multimix(model, data.val_cls_images, config.eval_batch_size)["classification"]
        scores = balanced_scores(data.val_cls_labels, probs)
        metrics.update({f"val_{key}": value for key, value in scores.items()})
        picked = np.clip(probs[np.arange(len(probs)), data.val_cls_labels], 1e-7, 1.0)
        metrics["val_ce"] = float(-np.mean(np.log(picked)))
        loss += metrics["val_ce"]
        balanced = scores["balanced_accuracy"] if math.isnan(scores["auc"]) else \
            (scores["balanced_accuracy"] + scores["auc"]) / 2
        score += config.selection_weights[1] * balanced
        weights += config.selection_weights[1]
    _check(weights > 0, f"selection_weights {config.selection_weights} give variant {config.variant!r} no score")
    metrics["val_loss"] = loss
    metrics["val_score"] = -loss if config.selection == "loss" else score / weights
    return metrics


def compute_dtype(model: MultiMix) -> str:
    """The dtype ``model``'s convolutions compute in: ``float32``, or ``bfloat16`` / ``float16`` when it was
    built under a mixed-precision policy (``urep.training.distribute.mixed_precision_scope``)."""
    return model.network.get_layer("encoder_out").compute_dtype


def multimix_optimizer(model: MultiMix, learning_rate: float) -> keras.optimizers.Optimizer:
    """The paper's Adam over ``model.network``'s trainable variables, built; wrapped in a
    ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling) when the model computes in float16."""
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if compute_dtype(model) == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.network.trainable_variables)
    return optimizer


def _run_dir(run: Any, variant: str) -> Path | None:
    """Where a run keeps this variant's checkpoint: ``RUN/checkpoints/multimix/<variant>``."""
    if run is None:
        return None
    if isinstance(run, (str, os.PathLike)):
        root = Path(run)
    elif isinstance(getattr(run, "root", None), (str, os.PathLike)):
        root = Path(run.root)
    else:
        raise ValueError(f"run must be None, a run directory path or a urep.training.Run, got {run!r}")
    return RunDir(root).checkpoint(f"multimix/{variant}")


def _restore_finished(model: MultiMix, checkpoint_dir: Path | None, config: MultiMixConfig) -> MultiMixResult | None:
    """The result of a run that finished in `checkpoint_dir` with the same config, its best weights loaded into
    `model`; None when there is none (or `restore_best` is off: only the best weights are kept)."""
    if checkpoint_dir is None or not config.restore_best:
        return None
    result_path, weights_path = checkpoint_dir / "result.json", checkpoint_dir / "best.weights.h5"
    if not (result_path.is_file() and weights_path.is_file()):
        return None
    stored = json.loads(result_path.read_text(encoding="utf-8"))
    try:  # the config's own round trip (lists vs tuples, NumPy scalars), not a comparison of JSON texts
        same = MultiMixConfig.from_dict(stored.get("config")) == config
    except ValueError:  # a config this version no longer accepts
        same = False
    if not same:
        logger.warning("multimix %s: %s holds a finished run of another config; training again", config.variant,
                       checkpoint_dir)
        return None
    model.network.load_weights(weights_path)
    logger.info("multimix %s: run already finished in %s; restored its best weights (epoch %s)", config.variant,
                checkpoint_dir, stored.get("best_epoch"))
    return MultiMixResult(**stored)


def train_multimix(model: MultiMix, data: MultiMixData, config: MultiMixConfig | dict | None = None,
                   run: Any = None) -> MultiMixResult:
    """Train MultiMix (or one of its ablations) and keep the epoch with the best validation score.

    Args:
        model: a ``MultiMix`` whose ``saliency_bridge`` matches the variant (see ``multimix_for_variant``).
        data: the labelled/unlabelled/validation arrays the variant needs.
        config: a ``MultiMixConfig`` or a dict of its fields; None = the paper's defaults.
        run: None, a run directory path, or a ``urep.training.Run``: the best weights are written (atomically)
            to ``RUN/checkpoints/multimix/<variant>/best.weights.h5`` whenever the score improves, and the
            result to ``.../result.json`` at the end. A folder that already holds a finished run of the same
            config (e.g. ``urep run --resume``) is restored: its best weights are loaded and its result
            returned, without training. (No mid-training resume: an unfinished run trains again.)

    Returns:
        A ``MultiMixResult``. With ``restore_best`` the model holds the best epoch's weights on return.

    Raises:
        ValueError: a bad config, data missing for the variant, a model whose bridge/classes/input do not fit,
            or a non-finite training loss.
    """
    config = MultiMixConfig.from_dict(config if config is not None else {})
    parts = config.parts
    _check(isinstance(model, MultiMix), f"model must be a urep.models.multimix.MultiMix, got {type(model).__name__}")
    _check(model.saliency_bridge == parts.saliency,
           f"variant {config.variant!r} needs a model with saliency_bridge={parts.saliency}, got "
           f"{model.saliency_bridge} (build it with multimix_for_variant)")
    data.check(parts, model.n_classes)
    expected = tuple(model.network.get_layer("image").output.shape[1:])
    shapes = {a.shape[1:] for a in (data.seg_images, data.cls_images, data.seg_unlabelled, data.cls_unlabelled,
                                    data.val_seg_images, data.val_cls_images) if a is not None}
    _check(all(s == expected for s in shapes), f"images {sorted(shapes)} do not fit the model input {expected}")
    checkpoint_dir = _run_dir(run, config.variant)
    finished = _restore_finished(model, checkpoint_dir, config)
    if finished is not None:
        return finished

    optimizer = multimix_optimizer(model, config.learning_rate)
    step = make_train_step(model, optimizer, config)
    n_steps = steps_per_epoch(data, config)
    iterator = iter(training_dataset(data, config))
    result = MultiMixResult(
        variant=config.variant,
        trainable_params=int(sum(int(np.prod(v.shape)) for v in model.network.trainable_variables)),
        total_params=int(model.network.count_params()),
        config=config.to_dict(),
        compute_dtype=compute_dtype(model),
    )
    best_weights = None
    start = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        learning_rate = config.learning_rate_at(epoch)
        optimizer.learning_rate = learning_rate
        sums: dict[str, float] = {}
        for _ in range(n_steps):
            terms = step(next(iterator))
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value)
        record = {key: value / n_steps for key, value in sums.items()}
        _check(math.isfinite(record["loss"]), f"MultiMix training loss is not finite at epoch {epoch + 1}: {record}")
        record.update(_validation_metrics(model, data, config))
        record.update(lr=learning_rate, seconds=time.perf_counter() - epoch_start)
        for key, value in record.items():
            result.history.setdefault(key, []).append(float(value))
        result.epochs_run, result.steps_run = epoch + 1, result.steps_run + n_steps
        logger.info("multimix %s epoch %d/%d: %s", config.variant, epoch + 1, config.epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if record["val_score"] > result.best_score:
            result.best_epoch, result.best_score = epoch + 1, record["val_score"]
            result.best_metrics = {k: v for k, v in record.items() if k.startswith("val_")}
            best_weights = model.network.get_weights()
            if checkpoint_dir is not None:
                path = checkpoint_dir / "best.weights.h5"
                atomic_save(path, model.network.save_weights)
                result.checkpoint = str(path)
    result.seconds = time.perf_counter() - start
    if config.restore_best and best_weights is not None:
        model.network.set_weights(best_weights)
    if checkpoint_dir is not None:
        atomic_write_json(checkpoint_dir / "result.json", result.to_dict())
    return result


def multimix_strategy(assembly: Any, tasks: Sequence[Any], config: Any = None, run: Any = None,
                      data: MultiMixData | None = None, multimix: MultiMixConfig | dict | None = None,
                      seg_unlabelled: Any = None, cls_unlabelled: Any = None) -> dict[str, Any]:
    """The "multimix" entry of ``STRATEGIES``: ``finetune(model, tasks, "multimix", config, run, ...)``.

    Args:
        assembly: the ``MultiMix`` model.
        tasks: a segmentation and/or a classification ``Task`` (their data is read into arrays), ignored when
            ``data`` is given except for naming the results.
        config: the ``TrainConfig`` of the registry signature. MultiMix keeps its own paper schedule (Adam 1e-4,
            x0.1 every 8 epochs, batch 10): its settings come from ``multimix``, not from this.
        run: None, a run directory or a ``urep.training.Run``.
        data: the arrays directly (then ``seg_unlabelled``/``cls_unlabelled`` must be inside it).
        multimix: a ``MultiMixConfig`` or a dict of its fields (variant, epochs, ...).
        seg_unlabelled: unlabelled segmentation images (with tasks).
        cls_unlabelled: unlabelled classification images (with tasks).

    Returns:
        ``{task name: urep.training.TrainResult}`` (phase ``multimix/<variant>``, monitor ``val_score``; the
        MultiMix result dict in ``extra["multimix"]``).
    """
    _check(isinstance(assembly, MultiMix), f"the multimix strategy needs a MultiMix model, got {type(assembly).__name__}")
    if data is None:
        data = data_from_tasks(tasks, seg_unlabelled=seg_unlabelled, cls_unlabelled=cls_unlabelled)
    else:
        _check(seg_unlabelled is None and cls_unlabelled is None,
               "give the unlabelled images inside data, not as separate arguments")
    if config is not None:
        logger.info("multimix strategy: the TrainConfig is not used; MultiMix settings come from `multimix`")
    settings = MultiMixConfig.from_dict(multimix if multimix is not None else {})
    outcome = train_multimix(assembly, data, settings, run=run)
    names = [task.name for task in tasks] or [settings.variant]
    return {
        name: TrainResult(
            name=name, phase=f"multimix/{settings.variant}", strategy="multimix", history=outcome.history,
            epochs_run=outcome.epochs_run, steps_run=outcome.steps_run, seconds=outcome.seconds,
            phase_seconds=outcome.seconds, best_epoch=outcome.best_epoch, best_value=outcome.best_score,
            monitor="val_score", stop_reason="max_epochs", trainable_params=outcome.trainable_params,
            total_params=outcome.total_params, checkpoint=outcome.checkpoint,
            learning_rate=settings.learning_rate_at(settings.epochs - 1), extra={"multimix": outcome.to_dict()},
        )
        for name in names
    }
