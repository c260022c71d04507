"""Shrink an experiment for a quick run: smaller images, fewer phantoms, fewer epochs and folds.

Used by `urep demo --quick`, the tests (every `*_phantom.yaml` at tiny size) and `urep run --tiny`. Real
data sources are limited with `DataSource.limit`; phantom sources get fewer patients.
"""

from __future__ import annotations

import dataclasses

from urep.experiments.config import ExperimentConfig, MultiMixExperimentConfig, TrainSettings

__all__ = ["shrink", "TINY"]

#: The smallest sensible run: 32x32 images, 12 patients per phantom set, one epoch, two folds, no XLA.
#: XLA is off because compiling every model's steps dominates a run of a few steps: the tiny
#: `cxr_homogeneous_phantom` took 47 s without XLA and 193 s with it (2-core CPU, loaded).
TINY = {"image_size": 32, "patients": 12, "epochs": 1, "folds": 2, "limit": 24, "steps": 2, "jit_compile": False}
#: Integer label budgets of a shrunk MultiMix experiment are capped at this many images.
TINY_BUDGET = 4


def _train(settings: TrainSettings, epochs: int, steps: int | None, batch_size: int | None,
           jit_compile: bool | None = None) -> TrainSettings:
    if jit_compile is not None:
        settings = dataclasses.replace(settings, jit_compile=jit_compile)
    return dataclasses.replace(settings, epochs=min(settings.epochs, epochs),
                               batch_size=batch_size or settings.batch_size,
                               max_steps_per_epoch=steps if steps is not None else settings.max_steps_per_epoch,
                               early_stopping_patience=None if epochs <= 2 else settings.early_stopping_patience)


def _multimix(settings: MultiMixExperimentConfig, epochs: int | None, steps: int | None,
              batch_size: int | None) -> MultiMixExperimentConfig:
    """Fewer MultiMix epochs and steps; integer label budgets capped at `TINY_BUDGET` images."""
    options = dict(settings.options)
    if epochs is not None:
        options["epochs"] = min(options.get("epochs", epochs), epochs)
    if steps is not None:
        options["steps_per_epoch"] = steps
    if batch_size is not None:
        options["batch_size"] = batch_size
    budgets = tuple(tuple(n if n == "all" else min(n, TINY_BUDGET) for n in pair) for pair in settings.label_budgets)
    single = {k: None if getattr(settings, k) is None else min(getattr(settings, k), TINY_BUDGET)
              for k in ("segmentation_labels", "classification_labels")}
    return dataclasses.replace(settings, options=options, label_budgets=budgets, **single)


def shrink(
    config: ExperimentConfig,
    image_size: int | None = TINY["image_size"],
    patients: int | None = TINY["patients"],
    epochs: int | None = TINY["epochs"],
    folds: int | None = TINY["folds"],
    limit: int | None = TINY["limit"],
    steps: int | None = TINY["steps"],
    explain_images: int = 2,
    batch_size: int | None = None,
    jit_compile: bool | None = TINY["jit_compile"],
) -> ExperimentConfig:
    """A smaller copy of `config` (None keeps a setting).

    Args:
        config: the experiment.
        image_size: square image side (phantoms are generated at this size too).
        patients: at most this many patients per phantom source.
        epochs: at most this many epochs per phase.
        folds: cross-validation folds (kept at 0 when the config has none).
        limit: at most this many images per real data source.
        steps: at most this many training steps per epoch.
        explain_images: Grad-CAM overlays drawn.
        batch_size: mini-batch size of every phase (smaller batches give the batch-normalization statistics
            of a short run more updates).
        jit_compile: XLA-compile the training steps of every phase (None keeps the config's setting); off by
            default because compiling costs more than a tiny run saves.

    Returns:
        The new config (the original is unchanged).
    """
    data = {}
    for name, source in config.data.items():
        if source.phantom is not None:
            phantom = source.phantom
            if patients is not None:
                phantom = dataclasses.replace(phantom, n_patients=min(phantom.n_patients, patients))
            if image_size is not None:
                phantom = dataclasses.replace(phantom, size=max(32, image_size))
            source = dataclasses.replace(source, phantom=phantom)
        elif not source.include and limit is not None:
            source = dataclasses.replace(source, limit=min(source.limit or limit, limit))
        data[name] = source
    changes: dict = {"data": data}
    if image_size is not None:
        changes["image_size"] = (image_size, image_size)
    if epochs is not None:
        changes["training"] = dataclasses.replace(
            config.training, source=_train(config.training.source, epochs, steps, batch_size, jit_compile),
            heads=_train(config.training.heads, epochs, steps, batch_size, jit_compile),
            baseline=_train(config.training.baseline, epochs, steps, batch_size, jit_compile))
    if folds is not None and config.cross_validation.folds:
        changes["cross_validation"] = dataclasses.replace(config.cross_validation, folds=folds)
    changes["explain"] = dataclasses.replace(config.explain, n_images=min(config.explain.n_images, explain_images))
    changes["source"] = dataclasses.replace(config.source, examples=min(config.source.examples, 2))
    if config.multimix is not None:
        changes["multimix"] = _multimix(config.multimix, epochs, steps, batch_size)
    shrunk = dataclasses.replace(config, **changes)
    object.__setattr__(shrunk, "path", config.path)
    return shrunk
