"""The baselines stage of `UrepPipeline`: the traditional approach, one randomly initialised model per task
and fold, optionally on inputs denoised by a separate denoiser (the trained source CDAE's weights).

`run_baselines(pipeline)` trains on the same folds, batches and test sets as the strategies and writes the
`baseline` method into `pipeline.results` (`models`, `tasks`, `baseline_denoising`) and `pipeline.outputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from urep.experiments.evaluation import predict
from urep.experiments.sources import TaskArrays

if TYPE_CHECKING:
    from urep.experiments.config import TaskConfig
    from urep.experiments.pipeline import UrepPipeline

__all__ = ["run_baselines", "baseline_model", "baseline_denoiser"]


def run_baselines(pipeline: UrepPipeline) -> None:
    """The traditional approach: a separate denoiser (optional), then one fresh model per task and fold."""
    from urep.experiments.pipeline import MethodOutputs, accuracy_metric
    from urep.training.loop import train_model

    config = pipeline.config
    inputs = {name: data.pool for name, data in pipeline.task_data.items()}
    tests = {name: data.test for name, data in pipeline.task_data.items()}
    if config.baseline.denoise_inputs and config.source.kind == "cdae":
        baseline_denoiser(pipeline)
        inputs = {name: _denoised(pipeline, a) for name, a in inputs.items()}
        tests = {name: _denoised(pipeline, a) for name, a in tests.items()}
    train_config = pipeline._train_config(config.training.baseline)
    batch = config.training.baseline.batch_size
    for name, data in pipeline.task_data.items():
        pool = inputs[name]
        x = pipeline._norm(pool.images)
        y = data.targets(pool)
        for fold, (train_index, val_index) in enumerate(data.folds):
            model = baseline_model(pipeline, data.config, fold)
            optimizer = config.training.baseline.optimizer
            if data.config.kind == "segmentation":
                optimizer = pipeline._task_train_settings(data.config)[0]
            settings = config.training.baseline
            result = train_model(
                model, pipeline._loss(data.config.kind, settings, y[train_index]),
                pipeline._train_batches(pool.images[train_index], x[train_index], y[train_index], batch,
                                        config.seed + fold, settings, data.config.kind),
                pipeline._batches(x[val_index], y[val_index], batch), train_config, name=name,
                kind=data.config.kind,
                optimizer=settings.optimizer_spec(optimizer),
                n_train=int(len(train_index)), run=pipeline.manager, phase=f"baseline/fold{fold}/{name}",
                strategy_name="baseline", metrics=accuracy_metric(data.config.kind))
            pipeline._record(result, "baseline", "baseline", name, fold)
            out = predict(model, pipeline._norm(tests[name].images))
            outputs = pipeline.outputs.setdefault(name, {}).setdefault("baseline", MethodOutputs())
            outputs.folds.append(out)
            outputs.validation.append((val_index, predict(model, x[val_index])))
            if fold == 0:
                pipeline.saved_models[f"baseline/{name}"] = model
        pipeline._summarise(name, "baseline")


def baseline_model(pipeline: UrepPipeline, task: TaskConfig, fold: int):
    """A randomly initialised model per task: the baseline classifier, or the head's architecture."""
    from urep import models

    if task.kind == "classification":
        return models.set_batchnorm_momentum(models.baseline_classifier(
            input_shape=pipeline.shape, n_classes=len(task.classes), name=f"baseline_{task.name}_f{fold}",
            **pipeline.config.baseline.classifier), pipeline.config.batchnorm_momentum)
    fresh = pipeline.build_source_model(name=f"baseline_source_{task.name}_f{fold}")
    if pipeline.config.source.kind == "cdae":
        return models.segmentation_head_from_autoencoder(fresh, name=task.name, **task.head)
    encoder = models.truncate(fresh, "encoder_out")
    kwargs = {**task.head, **pipeline.config.baseline.segmenter}
    return models.segmentation_head_from_encoder(encoder, name=task.name, **kwargs)


def baseline_denoiser(pipeline: UrepPipeline) -> None:
    """The baseline's separate denoiser is the trained source CDAE itself (the same architecture, data and
    seed would train the same network again). Its training time counts once in each side's cost, as in
    journal Table 4, where the denoiser's time appears in both U-Rep's and the baseline's totals."""
    import keras

    source = next(m for m in pipeline.results["models"] if m["role"] == "source")
    pipeline.denoiser = keras.models.clone_model(pipeline.source_model)
    pipeline.denoiser.set_weights(pipeline.source_model.get_weights())
    pipeline.results["models"].append({**source, "id": "source/baseline_denoiser", "role": "denoiser",
                                       "method": "baseline", "reused_from": source["id"], "history": {}})
    pipeline.results["baseline_denoising"] = [{**row, "model": "baseline (the source's weights)"}
                                              for row in pipeline.results.get("denoising", [])]


def _denoised(pipeline: UrepPipeline, arrays: TaskArrays) -> TaskArrays:
    images = np.clip(predict(pipeline.denoiser, pipeline._norm(arrays.images)), 0.0, 1.0)
    return TaskArrays(images.astype(np.float32), arrays.masks, arrays.labels, arrays.patients)

