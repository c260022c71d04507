"""The U-Rep pipeline of one experiment: source representation -> heads with each strategy -> baselines ->
statistics -> derivable tasks (Grad-CAM, recommendation) -> saved models.

One code path (`UrepPipeline`) for U-Rep 1 (`source.kind: cdae`), U-Rep 2 (`dilated_cnn`) and the
super-resolution source; every model trains through `urep.training`. Inputs are mean-normalised with the
normalizer fitted on the source's training split (`normalizer.json`); denoising targets and metrics stay in
[0, 1]. Splits, folds, baseline denoiser and saved models: docs/choices.md, "Experiments". The baselines,
references and derivable tasks are functions of the pipeline in `baselines`, `references`, `derivable`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from urep.experiments.baselines import run_baselines
from urep.experiments.config import ExperimentConfig, TaskConfig, TrainSettings
from urep.experiments.derivable import run_explain, run_recommendation
from urep.experiments.evaluation import (
    ensemble_outputs,
    out_of_fold_metrics,
    paired_tests,
    predict,
    summarise_method,
)
from urep.experiments.sources import (
    TaskArrays,
    load_sources,
    patient_folds,
    patient_split,
    read_arrays,
    source_summary,
    task_frame,
)
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["UrepPipeline"]

#: Validation images the classical denoisers are tuned on (per noise level and grid value: a few seconds).
REFERENCE_TUNING_IMAGES = 64


def accuracy_metric(kind: str):
    """A fresh Keras accuracy metric named `accuracy` (history key `val_accuracy`): categorical accuracy for
    classification, pixel accuracy (binary, threshold 0.5) for segmentation; none for reconstruction."""
    import keras

    if kind == "classification":
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if kind == "segmentation":
        return [keras.metrics.BinaryAccuracy(name="accuracy")]
    return []


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[labels]


@dataclass
class TaskData:
    """One task's arrays: the training pool (cross-validated or split) and the test set."""

    config: TaskConfig
    pool: TaskArrays
    test: TaskArrays
    folds: list[tuple[np.ndarray, np.ndarray]]

    def targets(self, arrays: TaskArrays) -> np.ndarray:
        if self.config.kind == "classification":
            return _one_hot(arrays.labels, len(self.config.classes))
        return arrays.masks

    def truth(self) -> np.ndarray:
        return self.test.labels if self.config.kind == "classification" else self.test.masks

    def pool_truth(self) -> np.ndarray:
        return self.pool.labels if self.config.kind == "classification" else self.pool.masks


@dataclass
class MethodOutputs:
    """Outputs of one method on one task, per fold: on the test set, and on the fold's validation patients
    (`(pool indices, outputs)`, for the in-domain out-of-fold metrics)."""

    folds: list[np.ndarray] = field(default_factory=list)
    validation: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


class PipelineResults(TypedDict, total=False):
    """The top-level keys of `UrepPipeline.results` (the runner adds the run's name, config, environment and
    times; `docs/design.md`, `urep.experiments.report`, describes the entries)."""

    models: list[dict]  # every trained model: id, role, task, method, fold, seconds, parameters, history
    tasks: dict[str, dict]  # TASK -> kind, classes, methods[METHOD] (summarise_method), references[METHOD]
    statistics: list[dict]  # paired tests between methods, per task
    data: dict  # sample sizes: sources, source split, tasks
    source: dict  # the source's kind and its own test metrics
    denoising: list[dict]  # the CDAE source per noise level
    denoising_references: list[dict]  # classical denoisers on the same noisy test images
    baseline_denoising: list[dict]  # the baseline's denoiser (the source's weights) per noise level
    super_resolution: list[dict]  # the super-resolution source per scale
    warnings: list[str]  # e.g. constant classifiers
    explain: dict  # Grad-CAM: task, strategy, n, energy by class (`derivable.run_explain`)
    recommendation: dict  # agreement and counts (`derivable.run_recommendation`)
    transfer: dict  # `pairwise_transfer` only (`TransferPipeline`)
    figures: list[str]  # figure paths relative to the run directory


class UrepPipeline:
    """Runs the U-Rep pipeline of `config` inside `run_dir` and fills a results dict (`PipelineResults`).

    Args:
        config: the validated experiment config.
        run_dir: the (prepared) run directory.
        data_root: folder the data sources' `root` is relative to.
        resume: continue finished/interrupted training phases from their checkpoints.
    """

    def __init__(self, config: ExperimentConfig, run_dir: Path, data_root: str | None = None,
                 resume: bool = False) -> None:
        from urep.training.run import Run

        self.config = config
        self.run_dir = Path(run_dir)
        self.data_root = data_root
        # The runner prepared the directory (refusing to overwrite); `resume=True` here only lets a phase
        # continue from a checkpoint found in it, and a fresh directory has none.
        self.manager = Run(self.run_dir, resume=True)
        self.resume = resume
        self.shape = (*config.image_size, config.channels)
        self.results: PipelineResults = {"models": [], "tasks": {}, "statistics": [], "denoising": []}
        self.outputs: dict[str, dict[str, MethodOutputs]] = {}
        self.saved_models: dict[str, Any] = {}
        self.frames: dict = {}
        self.normalizer = None
        self.source_model = None
        self.denoiser = None
        self.task_data: dict[str, TaskData] = {}
        #: task -> reference -> test outputs (fold ensemble), for the paired tests against the references
        self.reference_outputs: dict[str, dict[str, np.ndarray]] = {}
        self.parts: dict[str, str] = {}
        self.figures: list[str] = []

    # -- helpers -------------------------------------------------------------------------------------------
    def _train_config(self, settings: TrainSettings, optimizer: str | None = None, learning_rate: float | None = None):
        config = self.config
        return settings.train_config(seed=config.seed, deterministic=config.deterministic,
                                     mixed_precision=config.mixed_precision, optimizer=optimizer,
                                     learning_rate=learning_rate)

    def _norm(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.normalizer.transform(images), dtype=np.float32)

    @staticmethod
    def _datasets(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        """Training batches of `x, y`, shuffled anew each epoch (`epoch -> dataset`); as `ArrayBatches`, the
        independent strategy can train heads on the frozen encoder's features of `x` (same batches)."""
        from urep.data.batches import ArrayBatches

        return ArrayBatches(x, y, batch_size, seed)

    def _train_batches(self, images: np.ndarray, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                       settings: TrainSettings, kind: str):
        """Training batches: `_datasets(x, y)`, or, with `settings.augmentation.enabled`, `AugmentedBatches`
        of the [0, 1] `images` (fresh seeded draws every epoch, normalized after augmentation; masks get the
        image's geometric transform). The independent strategy then runs its frozen encoder at every step."""
        aug = settings.augmentation
        if not aug.enabled:
            return self._datasets(x, y, batch_size, seed)
        from urep.data.batches import AugmentedBatches

        options = {"rotation": aug.rotation, "zoom": aug.zoom, "horizontal_flip": aug.horizontal_flip,
                   "brightness": aug.brightness, "contrast": aug.contrast, "gamma": aug.gamma}
        return AugmentedBatches(images, y, batch_size, seed, options, masks=kind == "segmentation",
                                mean=float(self.normalizer.mean), scale=float(self.normalizer.scale))

    @staticmethod
    def _loss(kind: str, settings: TrainSettings, y_train: np.ndarray):
        """The task loss; class-weighted cross-entropy for classification with `class_weight: balanced`."""
        from urep.losses import TASK_LOSSES, ClassWeightedCrossentropy, balanced_class_weights

        if kind == "classification" and settings.class_weight == "balanced":
            return ClassWeightedCrossentropy(balanced_class_weights(y_train.argmax(axis=-1), y_train.shape[-1]))
        return TASK_LOSSES[kind]

    @staticmethod
    def _batches(x: np.ndarray, y: np.ndarray, batch_size: int):
        """Validation batches of `x, y` in order, the same every epoch."""
        from urep.data.batches import ArrayBatches

        return ArrayBatches(x, y, batch_size)

    def _record(self, result, role: str, method: str, task: str | None, fold: int | None,
                tasks: list[str] | None = None) -> dict:
        """A `results["models"]` entry from a `urep.training.TrainResult`."""
        history = result.history
        best = {}
        if history.get("val_loss"):
            best["val_loss"] = float(np.nanmin(history["val_loss"]))
        if history.get("val_accuracy"):
            best["val_accuracy"] = float(np.nanmax(history["val_accuracy"]))
        entry = {"id": f"{result.phase}/{result.name}", "role": role, "method": method, "task": task,
                 "tasks": tasks or ([task] if task else []), "fold": fold, "seconds": float(result.seconds),
                 "phase_seconds": float(result.phase_seconds), "trainable_params": int(result.trainable_params),
                 "total_params": int(result.total_params), "epochs_run": int(result.epochs_run),
                 "stop_reason": result.stop_reason, "best": best,
                 "history": {k: [float(v) for v in vals] for k, vals in history.items()} if not fold else {}}
        self.results["models"].append(entry)
        return entry

    # -- data ----------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        """Generate/read every source and prepare each task's pool, folds and test set."""
        config = self.config
        self.frames = load_sources(config, self.run_dir, self.data_root)
        self.results["data"] = {"sources": source_summary(self.frames), "tasks": {}}
        self.parts = {}
        for name, df in self.frames.items():
            if config.data[name].include:
                continue
            patients = df["patient"].astype(str).to_numpy()
            if config.data[name].split_column is not None:
                self.parts.update(official_parts(df, config.data[name].split_column, name, config))
                continue
            train, val, test = patient_split(patients, config.split, config.seed)
            for index, part in ((train, "train"), (val, "val"), (test, "test")):
                self.parts.update({patients[i]: part for i in index})
        for task in config.tasks:
            pool_df = task_frame(self.frames[task.data], task, task.data)
            pool = self._read(pool_df, task)
            if task.test_data is not None:
                test = self._read(task_frame(self.frames[task.test_data], task, task.test_data), task)
            else:
                parts = self._parts_of(pool.patients)
                test = pool.subset(np.flatnonzero(parts == "test"))
                pool = pool.subset(np.flatnonzero(parts != "test"))
            if config.cross_validation.folds:
                folds = patient_folds(pool.patients, config.cross_validation.folds, config.seed, pool.labels)
            elif config.data[task.data].split_column is not None:
                parts = self._parts_of(pool.patients)
                folds = [(np.flatnonzero(parts == "train"), np.flatnonzero(parts == "val"))]
            else:
                fractions = (config.split[0], config.split[1], 0.0)
                total = sum(fractions)
                train, val, _ = patient_split(pool.patients, tuple(f / total for f in fractions), config.seed)
                folds = [(train, val)]
            self.task_data[task.name] = TaskData(task, pool, test, folds)
            self.results["data"]["tasks"][task.name] = {
                "train": int(len(folds[0][0])), "val": int(len(folds[0][1])), "test": int(len(test)),
                "pool": int(len(pool)), "folds": config.cross_validation.folds}
            logger.info("task %s: pool %d images (%d folds), test %d", task.name, len(pool), len(folds), len(test))

    def _parts_of(self, patients: np.ndarray) -> np.ndarray:
        """`train`/`val`/`test` of every row: one patient-level split per data source, shared by the source
        representation and the tasks, so a task's test patients are never seen by the source."""
        return np.array([self.parts[p] for p in patients])

    def _split(self, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = self._parts_of(patients)
        return tuple(np.flatnonzero(parts == part) for part in ("train", "val", "test"))

    def _read(self, df, task: TaskConfig) -> TaskArrays:
        if task.kind == "classification":
            return read_arrays(df, self.config.image_size, self.config.channels, task.label, task.classes,
                               standardize=self.config.preprocessing.options())
        return read_arrays(df, self.config.image_size, self.config.channels, masks=True,
                           standardize=self.config.preprocessing.options())

    # -- source --------------------------------------------------------------------------------------------
    def build_source_model(self, name: str = "source"):
        """A freshly initialised source architecture (`source.kind`, `source.model` keyword arguments)."""
        from urep import models

        kind, kwargs = self.config.source.kind, dict(self.config.source.model)
        momentum = self.config.batchnorm_momentum
        if kind == "cdae":
            return models.set_batchnorm_momentum(models.cdae(input_shape=self.shape, name=name, **kwargs), momentum)
        if kind == "dilated_cnn":
            return models.set_batchnorm_momentum(models.dilated_cnn(
                input_shape=self.shape, n_classes=len(self.config.source.classes), name=name, **kwargs), momentum)
        if kind == "super_resolution":
            # scale 1: the input is the bicubic-restored image at the working size (see SourceConfig.scale)
            return models.super_resolution(input_shape=self.shape, scale=1, name=name, **kwargs)
        raise ValueError(f"unknown source.kind {kind!r}")  # the config loader admits only the kinds above

    def _noisy_epoch(self, clean: np.ndarray, seed: int) -> np.ndarray:
        """Each image corrupted by one of `source.noise`, the assignment rotating with `seed` (`epoch_noise`)."""
        from urep.data.noise import epoch_noise

        return epoch_noise(clean, self.config.source.noise, self.config.seed, seed)

    def train_source(self) -> None:
        """Train the shared representation, fit the normalizer, evaluate denoising per noise level."""
        from urep.data import MeanNormalizer
        from urep.losses import TASK_LOSSES
        from urep.training.loop import train_model

        config = self.config
        source = config.source
        frames = [self.frames[name] for name in source.data]
        import pandas as pd

        df = pd.concat(frames, ignore_index=True)
        supervised = source.kind == "dilated_cnn"
        if supervised:
            df = df[df[source.label].astype(str).isin(source.classes)].reset_index(drop=True)
        arrays = read_arrays(df, config.image_size, config.channels, source.label if supervised else None,
                             source.classes, standardize=config.preprocessing.options())
        train, val, test = self._split(arrays.patients)
        self.results["data"]["source"] = {"train": int(len(train)), "val": int(len(val)), "test": int(len(test))}
        self.normalizer = MeanNormalizer().fit(arrays.images[train])
        settings = config.training.source
        train_config = self._train_config(settings)
        model = self.build_source_model()
        if supervised:
            y = _one_hot(arrays.labels, len(source.classes))
            train_ds = self._datasets(self._norm(arrays.images[train]), y[train], settings.batch_size, config.seed)
            val_ds = self._batches(self._norm(arrays.images[val]), y[val], settings.batch_size)
            result = train_model(model, TASK_LOSSES["classification"], train_ds, val_ds, train_config, name="source",
                                 kind="classification", n_train=len(train), run=self.manager, phase="source",
                                 metrics=accuracy_metric("classification"))
            outputs = predict(model, self._norm(arrays.images[test]))
            from urep.experiments.evaluation import task_metrics

            self.results["source"] = {"kind": source.kind, "test": task_metrics(
                "classification", arrays.labels[test], outputs, source.classes)}
        elif source.kind == "super_resolution":
            low = self._degraded(arrays.images)
            train_ds = self._datasets(self._norm(low[train]), arrays.images[train], settings.batch_size,
                                      config.seed)
            val_ds = self._batches(self._norm(low[val]), arrays.images[val], settings.batch_size)
            result = train_model(model, TASK_LOSSES["reconstruction"], train_ds, val_ds, train_config, name="source",
                                 kind="reconstruction", n_train=len(train), run=self.manager, phase="source")
            self.results["source"] = {"kind": source.kind, "scale": source.scale}
            self.results["super_resolution"] = self._evaluate_super_resolution(model, arrays.images[test],
                                                                                low[test])
        else:
            from urep.models import set_residual_skip

            # a residual CDAE starts as the identity on the un-normalised image (no effect on the papers' layout)
            offset = float(np.ravel(self.normalizer.inverse_transform(np.zeros((1, 1), np.float32)))[0])
            gain = float(np.ravel(self.normalizer.inverse_transform(np.ones((1, 1), np.float32)))[0]) - offset
            set_residual_skip(model, gain, offset)
            result = self._train_denoiser(model, arrays, train, val, "source", train_config)
            self.results["source"] = {"kind": source.kind}
            self.results["denoising"] = self._evaluate_denoising(model, arrays.images[test], "source")
            self.results["denoising_references"] = self._denoising_references(arrays.images[val],
                                                                              arrays.images[test])
        self._record(result, "source", "urep", None, None)
        self.source_model = model

    def _train_denoiser(self, model, arrays: TaskArrays, train: np.ndarray, val: np.ndarray, phase: str,
                        train_config):
        from urep.losses import TASK_LOSSES
        from urep.training.loop import train_model

        clean_train, clean_val = arrays.images[train], arrays.images[val]
        import tensorflow as tf

        batch = train_config.batch_size

        def train_ds(epoch: int):
            noisy = self._norm(self._noisy_epoch(clean_train, epoch))
            return tf.data.Dataset.from_tensor_slices((noisy, clean_train)).shuffle(
                len(noisy), seed=self.config.seed * 1009 + epoch, reshuffle_each_iteration=False).batch(batch)

        val_ds = self._batches(self._norm(self._noisy_epoch(clean_val, 10_000)), clean_val, batch)
        return train_model(model, TASK_LOSSES["reconstruction"], train_ds, val_ds, train_config, name=phase,
                           kind="reconstruction", n_train=len(train), run=self.manager, phase=phase)

    def _evaluate_denoising(self, model, clean: np.ndarray, label: str) -> list[dict]:
        """PSNR/SSIM/MS-SSIM of the reconstruction (and of the noisy input) per `source.eval_noise` level."""
        from urep.metrics import reconstruction_metrics

        rows, examples_noisy, examples_denoised = [], {}, {}
        k = min(self.config.source.examples, len(clean))
        for i, level in enumerate(self.config.source.eval_noise):
            noisy = self._test_noise(clean, i)
            denoised = np.clip(predict(model, self._norm(noisy)), 0.0, 1.0)
            restored = reconstruction_metrics(clean, denoised)
            before = reconstruction_metrics(clean, noisy)
            rows.append({"noise": level.label, "kind": level.kind, "level": level.level,
                         "psnr": restored["psnr"], "ssim": restored["ssim"], "ms_ssim": restored["ms_ssim"],
                         "ms_ssim_scales": restored["ms_ssim_scales"], "noisy_psnr": before["psnr"],
                         "noisy_ssim": before["ssim"], "noisy_ms_ssim": before["ms_ssim"], "n": restored["n"],
                         "model": label})
            examples_noisy[level.label] = noisy[:k]
            examples_denoised[level.label] = denoised[:k]
        if self.config.figures and k:
            from urep.experiments.figures import denoising_examples

            path = denoising_examples(clean[:k], examples_noisy, examples_denoised,
                                      RunDir(self.run_dir).figures / f"denoising_examples_{label}.png",
                                      title=f"{label}: {k} test images, clean / noisy / denoised "
                                            "(PSNR against the clean image)")
            self.figures.append(str(path.relative_to(self.run_dir)))
        return rows

    def _test_noise(self, clean: np.ndarray, i: int) -> np.ndarray:
        """The test images with `source.eval_noise[i]` (the same draw for the CDAE and every reference)."""
        from urep.data.noise import NoiseSpec, add_noise

        level = self.config.source.eval_noise[i]
        return add_noise(clean, NoiseSpec(level.kind, level.level), np.random.default_rng([self.config.seed, 77, i]))

    def _denoising_references(self, clean_val: np.ndarray, clean_test: np.ndarray) -> list[dict]:
        """Classical denoisers (`source.references`) on the CDAE's test images, tuned per noise level on at
        most `REFERENCE_TUNING_IMAGES` validation images (a different noise draw from the test's)."""
        from urep.data.noise import NoiseSpec, add_noise
        from urep.metrics import reconstruction_metrics
        from urep.models.classical_denoisers import DENOISERS, tune_denoiser

        rows = []
        if not self.config.source.references or not len(clean_val):
            return rows
        clean_val = clean_val[:REFERENCE_TUNING_IMAGES]
        for i, level in enumerate(self.config.source.eval_noise):
            noisy_val = add_noise(clean_val, NoiseSpec(level.kind, level.level),
                                  np.random.default_rng([self.config.seed, 78, i]))
            noisy_test = self._test_noise(clean_test, i)
            for name in self.config.source.references:
                started = time.perf_counter()
                value, scores = tune_denoiser(name, clean_val, noisy_val)
                metrics = reconstruction_metrics(clean_test, DENOISERS[name](noisy_test, value))
                rows.append({"noise": level.label, "kind": level.kind, "level": level.level, "method": name,
                             "parameter": value, "validation_psnr": scores, "psnr": metrics["psnr"],
                             "ssim": metrics["ssim"], "ms_ssim": metrics["ms_ssim"], "n": metrics["n"], "n_val": int(len(clean_val)),
                             "seconds": time.perf_counter() - started})
        return rows

    def _degraded(self, images: np.ndarray) -> np.ndarray:
        """The super-resolution source's inputs: down-sampled by `source.scale`, up-sampled back (deterministic,
        so computed once, in batches to bound memory)."""
        from urep.training.source import degrade

        scale, size = self.config.source.scale, tuple(self.config.image_size)
        out = np.empty_like(images)
        for start in range(0, len(images), 256):
            out[start:start + 256] = degrade(images[start:start + 256], scale, size).numpy()
        return out

    def _evaluate_super_resolution(self, model, clean: np.ndarray, low: np.ndarray) -> list[dict]:
        """PSNR/SSIM/MS-SSIM of the restored test images, and of the interpolated inputs for reference."""
        from urep.metrics import reconstruction_metrics

        restored = np.clip(predict(model, self._norm(low)), 0.0, 1.0)
        after, before = reconstruction_metrics(clean, restored), reconstruction_metrics(clean, low)
        scale = self.config.source.scale
        row = {"scale": scale, "psnr": after["psnr"], "ssim": after["ssim"], "ms_ssim": after["ms_ssim"],
               "ms_ssim_scales": after["ms_ssim_scales"], "interpolated_psnr": before["psnr"],
               "interpolated_ssim": before["ssim"], "interpolated_ms_ssim": before["ms_ssim"], "n": after["n"],
               "model": "source"}
        k = min(self.config.source.examples, len(clean))
        if self.config.figures and k:
            from urep.experiments.figures import denoising_examples

            label = f"x{scale}"
            path = denoising_examples(clean[:k], {label: low[:k]}, {label: restored[:k]},
                                      RunDir(self.run_dir).figures / "super_resolution_examples_source.png",
                                      titles=("interpolated", "restored"))
            self.figures.append(str(path.relative_to(self.run_dir)))
        return [row]

    # -- heads ---------------------------------------------------------------------------------------------
    def _assembly(self, strategy: str, fold: int):
        """A `MultiTaskModel` on a fresh copy of the trained source, with one head per task."""
        import keras

        from urep.models import MultiTaskModel, truncate

        clone = keras.models.clone_model(self.source_model)
        clone.set_weights(self.source_model.get_weights())
        assembly = MultiTaskModel(truncate(clone, "encoder_out"), name=f"urep_{strategy}_fold{fold}")
        for task in self.config.tasks:
            self._add_head(assembly, task, clone)
        return assembly

    def _add_head(self, assembly, task: TaskConfig, autoencoder) -> None:
        kwargs = dict(task.head)
        if task.kind == "classification":
            assembly.add_classification_head(task.name, len(task.classes), **kwargs)
        elif self.config.source.kind == "cdae":
            assembly.add_segmentation_head(task.name, autoencoder=autoencoder, **kwargs)
        else:
            assembly.add_segmentation_head(task.name, **kwargs)

    def _task_train_settings(self, task: TaskConfig) -> tuple[str, float]:
        settings = self.config.task_train(task)
        optimizer = task.optimizer
        if optimizer is None:
            if task.kind == "segmentation":
                optimizer = "rmsprop" if self.config.source.kind == "cdae" else "adam"
            else:
                optimizer = settings.optimizer
        return optimizer, settings.learning_rate

    def _tasks_for_fold(self, fold: int, models: dict[str, Any] | None, inputs: dict[str, TaskArrays] | None = None):
        """`urep.training.Task` objects of one fold (`models` None = from the assembly)."""
        from urep.training.strategies import Task

        batch = self.config.training.heads.batch_size
        tasks = []
        for name, data in self.task_data.items():
            pool = inputs[name] if inputs else data.pool
            train_index, val_index = data.folds[fold]
            x = self._norm(pool.images)
            y = data.targets(pool)
            optimizer, learning_rate = self._task_train_settings(data.config)
            settings = self.config.task_train(data.config)
            tasks.append(Task(
                name=name, kind=data.config.kind, model=None if models is None else models[name],
                loss=self._loss(data.config.kind, settings, y[train_index]),
                train=self._train_batches(pool.images[train_index], x[train_index], y[train_index], batch,
                                          self.config.seed + fold, settings, data.config.kind),
                val=self._batches(x[val_index], y[val_index], batch), n_train=int(len(train_index)),
                optimizer=settings.optimizer_spec(optimizer, learning_rate), weight=data.config.loss_weight,
                metrics=accuracy_metric(data.config.kind)))
        return tasks

    def _network(self, strategy: str, fold: int):
        """The network `strategy` trains: the fold's hard-sharing assembly, or its cross-stitch twin."""
        assembly = self._assembly(strategy, fold)
        if strategy != "cross_stitch":
            return assembly
        from urep.models.cross_stitch import cross_stitch_from_assembly

        return cross_stitch_from_assembly(assembly, name=f"cross_stitch_fold{fold}")

    def run_strategy(self, strategy: str) -> None:
        """Fine-tune the heads with `strategy` on every fold; evaluate each fold's models on the test set."""
        from urep.training.strategies import finetune

        train_config = self._train_config(self.config.training.heads)
        options = {}
        if strategy == "alternating" and self.config.alternating_ratio == "equal":
            options["batches_per_task"] = {t.name: 1 for t in self.config.tasks}
        n_folds = len(next(iter(self.task_data.values())).folds)
        for fold in range(n_folds):
            assembly = self._network(strategy, fold)
            tasks = self._tasks_for_fold(fold, None)
            started = time.perf_counter()
            results = finetune(assembly, tasks, strategy, train_config, run=self.manager,
                               phase=f"{strategy}/fold{fold}", **options)
            logger.info("%s fold %d fine-tuned in %.1f s", strategy, fold, time.perf_counter() - started)
            names = list(results)
            for name, result in results.items():
                entry = self._record(result, "head", strategy, name, fold,
                                     tasks=[name] if strategy == "independent" else names)
                for key in ("cross_stitch", "stopped_epoch"):
                    if key in result.extra:
                        entry[key] = result.extra[key]
            for name, data in self.task_data.items():
                model = assembly.task_model(name)
                out = predict(model, self._norm(data.test.images))
                outputs = self.outputs.setdefault(name, {}).setdefault(strategy, MethodOutputs())
                outputs.folds.append(out)
                val_index = data.folds[fold][1]
                outputs.validation.append((val_index, predict(model, self._norm(data.pool.images[val_index]))))
                if fold == 0:
                    self.saved_models[f"{strategy}/{name}"] = model
        for name in self.task_data:
            self._summarise(name, strategy)

    def _summarise(self, task: str, method: str) -> None:
        data = self.task_data[task]
        entry = self.results["tasks"].setdefault(task, {
            "kind": data.config.kind, "paper_task": data.config.paper_task, "classes": list(data.config.classes),
            "methods": {}})
        outputs = self.outputs[task][method]
        entry["methods"][method] = summarise_method(data.config.kind, data.truth(), outputs.folds,
                                                    data.config.classes)
        in_domain = out_of_fold_metrics(data.config.kind, data.pool_truth(), outputs.validation, data.config.classes)
        if in_domain is not None:
            entry["methods"][method]["in_domain"] = in_domain
        for flag in entry["methods"][method].get("constant_predictions", []):
            message = (f"WARNING: {task} / {method} fold {flag['fold']} predicts '{flag['class']}' for "
                       f"{flag['predicted_fraction']:.0%} of the {flag['n']} test images (true share "
                       f"{flag['true_fraction']:.0%}): a constant classifier, its accuracy means nothing")
            logger.warning(message)
            self.results.setdefault("warnings", []).append(message)

    # -- references (baselines: urep.experiments.baselines) ------------------------------------------------
    def run_references(self) -> None:
        """Same-run references on the same folds and test sets (`urep.experiments.references`)."""
        from urep.experiments.references import run_references

        logger.info("computing the references (majority, PCA + logistic regression, mean mask, U-Net)")
        run_references(self)

    # -- statistics and figures (derivable tasks: urep.experiments.derivable) -----------------------------
    def run_statistics(self) -> None:
        """Paired tests between every pair of methods (strategies and baseline) on each task, and of each method
        against each of the same run's references."""
        for name, data in self.task_data.items():
            outputs = {m: ensemble_outputs(o.folds) for m, o in self.outputs.get(name, {}).items()}
            references = self.reference_outputs.get(name, {})
            if not outputs or len(outputs) + len(references) < 2:
                continue
            self.results["statistics"] += paired_tests(name, data.config.kind, data.truth(), outputs,
                                                       self.config.statistics.tests, self.config.statistics.alpha,
                                                       references)

    def primary_strategy(self) -> str:
        return self.config.strategies[0]

    def segmentation_figures(self) -> None:
        """Test images with the true and predicted masks, per segmentation task and method (fold 0)."""
        from urep.experiments.figures import segmentation_overlays

        folds = self.config.cross_validation.folds
        fold = f"fold 1 of {folds}" if folds > 1 else "single split"
        for name, data in self.task_data.items():
            if data.config.kind != "segmentation":
                continue
            k = min(4, len(data.test))
            for method, outs in self.outputs.get(name, {}).items():
                path = segmentation_overlays(data.test.images[:k], data.test.masks[:k], outs.folds[0][:k],
                                             f"{name} ({method}, {fold}, first {k} test images)",
                                             RunDir(self.run_dir).figures / f"segmentation_{name}_{method}.png")
                self.figures.append(str(path.relative_to(self.run_dir)))

    # -- saving --------------------------------------------------------------------------------------------
    def save_models(self, recommendation: dict | None) -> None:
        """`models/STRATEGY/TASK.keras` for every method, `models/manifest.json`, `normalizer.json`."""
        from urep.explain import TaskEntry, save_run_models
        from urep.io import atomic_save

        strategy = self.primary_strategy()
        layout = RunDir(self.run_dir)
        entries, manifest_models = {}, {}
        for task in self.config.tasks:
            entries[task.name] = TaskEntry(
                name=task.name, path=layout.relative(layout.model(strategy, task.name)), kind=task.kind,
                image_size=tuple(self.config.image_size), channels=self.config.channels,
                classes=tuple(task.classes) if task.kind == "classification" else None, strategy=strategy,
                gradcam_layer="encoder_out")
            manifest_models[task.name] = self.saved_models[f"{strategy}/{task.name}"]
        if self.source_model is not None and self.config.source.kind == "cdae":
            entries["denoising"] = TaskEntry(name="denoising", path=layout.relative(layout.model("source", "denoising")),
                                             kind="reconstruction", image_size=tuple(self.config.image_size),
                                             channels=self.config.channels, strategy="source")
            manifest_models["denoising"] = self.source_model
        save_run_models(self.run_dir, manifest_models, entries, self.normalizer, recommendation)
        if self.source_model is not None and self.config.source.kind != "cdae":
            atomic_save(layout.model("source", "source"), self.source_model.save)
        for key, model in self.saved_models.items():
            method, task = key.split("/")
            if method != strategy:
                atomic_save(layout.model(method, task), model.save)
        if self.denoiser is not None:
            atomic_save(layout.model("baseline", "denoiser"), self.denoiser.save)

    # -- whole pipeline ------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Every stage in order; returns the results (without environment and timing, added by the runner)."""
        from urep.progress import Stages

        config, outcome = self.config, {}
        # (stage, relative expected cost for the ETA, what it runs)
        plan: list[tuple[str, float, Any]] = [("load data", 0.2, self.load_data),
                                              ("train source", 2.0, self.train_source)]
        if config.tasks:
            folds = max(config.cross_validation.folds, 1)
            plan += [(f"fine-tune ({strategy})", 1.0 * folds, lambda s=strategy: self.run_strategy(s))
                     for strategy in config.strategies]
            if config.baseline.enabled:
                plan.append(("baselines", 3.0 * folds, lambda: run_baselines(self)))  # whole models per task
            if config.references.enabled:
                plan.append(("references", 1.0 * folds, self.run_references))
            plan.append(("statistics", 0.1, self.run_statistics))
            if config.figures:
                plan.append(("figures", 0.2, self.segmentation_figures))
            plan += [("explain (Grad-CAM)", 0.3, lambda: run_explain(self)),
                     ("recommendation", 0.1, lambda: outcome.update(recommendation=run_recommendation(self))),
                     ("save models", 0.2, lambda: self.save_models(outcome.get("recommendation")))]
        else:
            plan.append(("save models", 0.2, lambda: self.save_models(None)))
        stages = Stages([name for name, _, _ in plan], config.name, [weight for _, weight, _ in plan])
        for name, _, step in plan:
            with stages.stage(name):
                step()
        self.results["figures"] = sorted(self.figures)
        return self.results


def official_parts(df, column: str, name: str, config) -> dict[str, str]:
    """Patient -> `train`/`val`/`test` from a source's official split column (`DataSource.split_column`).

    A source without `val` rows gets its validation patients from `train` in the `split` proportions. A
    patient whose images sit in two parts goes to the later of test > val > train (no image of a test patient
    is trained on), with a warning giving their number.

    Raises:
        ValueError: a missing column, values other than train/val/test, or no train or test rows.
    """
    if column not in df.columns:
        raise ValueError(f"data.{name}.split_column: column {column!r} not in the source's table "
                         f"(columns {sorted(df.columns)})")
    values = df[column].astype(str).str.lower().to_numpy()
    bad = sorted(set(values) - {"train", "val", "test"})
    if bad:
        raise ValueError(f"data.{name}.split_column {column!r}: expected train/val/test, got {bad}")
    patients = df["patient"].astype(str).to_numpy()
    order = {"train": 0, "val": 1, "test": 2}
    parts: dict[str, str] = {}
    moved = set()
    for patient, part in zip(patients, values, strict=True):
        known = parts.setdefault(patient, part)
        if known != part:
            moved.add(patient)
            parts[patient] = max(known, part, key=order.__getitem__)
    if moved:
        logger.warning("data.%s.split_column %r: %d patients have images in two parts; each kept in the later "
                       "of test > val > train", name, column, len(moved))
    found = set(parts.values())
    if not {"train", "test"} <= found:
        raise ValueError(f"data.{name}.split_column {column!r}: needs train and test rows, found {sorted(found)}")
    if "val" not in found:
        train = np.array(sorted(p for p, part in parts.items() if part == "train"))
        fractions = (config.split[0], config.split[1], 0.0)
        total = sum(fractions)
        _, val, _ = patient_split(train, tuple(f / total for f in fractions), config.seed)
        parts.update({train[i]: "val" for i in val})
    return parts
