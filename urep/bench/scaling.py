"""Scaling with tasks: total training cost of 1 to 5 heads, shared representation vs separate models.

`run(out_dir, quick, repeats)` trains, on CXR phantoms and for a fixed number of epochs, the shared source
and N binary classification heads (independent strategy) against a denoiser plus N models trained from
scratch, and returns a `urep.bench.common.section` with the cumulative `TrainResult.seconds` for N = 1..5
and the plot `scaling.png`; the settings are `ScalingSettings`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from urep.bench.common import ratio, section, summarize, table
from urep.bench.cost import CXR_FILTERS, CostSettings, cxr_arrays, train_config

logger = logging.getLogger(__name__)

#: (negative, positive) label pair of each task, in the order heads are added.
TASKS = (("normal", "abnormal"), ("normal", "bacterial"), ("normal", "viral"), ("bacterial", "viral"),
         ("abnormal", "bacterial"))


@dataclass(frozen=True)
class ScalingSettings:
    """Attributes:
        size: image side.
        max_tasks: the largest number of tasks (1..max_tasks are reported; at most 5).
        n_train: training images per task (and for the source).
        n_val: validation images.
        batch_size: mini-batch size.
        epochs: fixed epochs for every model.
        repeats: repetitions (seeds).
        jit_compile: XLA for the training loops.
    """

    size: int = 64
    max_tasks: int = 5
    n_train: int = 32
    n_val: int = 16
    batch_size: int = 16
    epochs: int = 3
    repeats: int = 3
    jit_compile: bool = False


FULL = ScalingSettings()
QUICK = ScalingSettings(size=32, max_tasks=2, n_train=16, n_val=16, epochs=1, repeats=1)


def _task_data(settings: ScalingSettings) -> tuple[np.ndarray, list]:
    """Source images, and per task `((x, y), (val_x, val_y))` with y in {0, 1}."""
    per_label = settings.n_train + settings.n_val
    images, _, labels = cxr_arrays(4 * per_label, settings.size, ("normal", "abnormal", "bacterial", "viral"),
                                   seed=21)
    tasks = []
    for negative, positive in TASKS[: settings.max_tasks]:
        keep = np.isin(labels, (negative, positive))
        x, y = images[keep][:per_label], (labels[keep][:per_label] == positive).astype(int)
        tasks.append(((x[: settings.n_train], y[: settings.n_train]), (x[settings.n_train:], y[settings.n_train:])))
    return images[: settings.n_train + settings.n_val], tasks


def _one_repeat(settings: ScalingSettings, source_images: np.ndarray, tasks: list, seed: int) -> dict:
    import keras

    from urep.data.pipeline import make_dataset
    from urep.models import MultiTaskModel, baseline_like, cdae, truncate
    from urep.training import OptimizerConfig, Task, finetune, train_model
    from urep.training.source import train_denoiser

    cost_settings = CostSettings(max_epochs=settings.epochs, patience=settings.epochs,
                                 batch_size=settings.batch_size, jit_compile=settings.jit_compile)
    config = dataclasses.replace(train_config(cost_settings, seed), early_stopping_patience=None,
                                 reduce_lr_factor=1.0)
    keras.utils.set_random_seed(seed)
    size = settings.size
    source = cdae((size, size, 1), filters=CXR_FILTERS, name=f"scaling_cdae_{seed}")
    source_result = train_denoiser(source, source_images[: settings.n_train], source_images[settings.n_train:],
                                   "gaussian:0.03", config)
    assembly = MultiTaskModel(truncate(source, name=f"scaling_encoder_{seed}"), name="scaling")
    task_list, separate_models = [], []
    for index, ((x, y), (vx, vy)) in enumerate(tasks):
        name = f"task{index + 1}"
        model = assembly.add_classification_head(name, 2, dense_units=64, dropout=0.3)
        separate_models.append(baseline_like(model))
        task_list.append(Task(name, "classification", None, "categorical_crossentropy",
                              make_dataset(x, y, batch_size=settings.batch_size, seed=seed, num_classes=2),
                              make_dataset(vx, vy, batch_size=settings.batch_size, shuffle=False, num_classes=2),
                              n_train=len(x), optimizer=OptimizerConfig("sgd", 1e-2)))
    heads = finetune(assembly, task_list, "independent", config)
    separate = []
    for task, model in zip(task_list, separate_models, strict=True):
        result = train_model(model, task.loss, task.train, task.val, config, name=task.name,
                             optimizer=task.optimizer, n_train=task.n_train)
        separate.append(result.seconds)
    return {"source_seconds": source_result.seconds,
            "head_seconds": [heads[t.name].seconds for t in task_list], "separate_seconds": separate}


def _plot(path: Path, counts: list[int], shared: list[dict], separate: list[dict], title: str) -> Path:
    from urep.io import atomic_save
    from urep.plotting import new_figure

    fig = new_figure(figsize=(5.5, 3.8), dpi=120)
    ax = fig.subplots()
    for label, stats, color in (("shared representation + heads", shared, "tab:blue"),
                                ("separate models (+ denoiser)", separate, "tab:red")):
        medians = [s["median"] for s in stats]
        ax.plot(counts, medians, "o-", color=color, label=label)
        ax.fill_between(counts, [s["min"] for s in stats], [s["max"] for s in stats], color=color, alpha=0.2)
    ax.set_xlabel("number of tasks")
    ax.set_ylabel("total training seconds")
    ax.set_xticks(counts)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save(path, fig.savefig)
    return path


def _slope(counts: list[int], values: list[float]) -> float | None:
    if len(counts) < 2:
        return None
    return float(np.polyfit(counts, values, 1)[0])


def run(out_dir, quick: bool = False, repeats: int | None = None,
        settings: ScalingSettings | None = None) -> dict:
    """Total training seconds for 1..max_tasks tasks, shared vs separate; writes `out_dir/scaling.png`.

    Args:
        out_dir: where the plot goes.
        quick: `QUICK` settings (32x32, 2 tasks, 1 epoch).
        repeats: overrides the settings' repeats.
        settings: overrides `FULL`/`QUICK`.

    Returns:
        A section; `data` has the per-repeat seconds and, per N, the shared and separate totals.
    """
    settings = settings or (QUICK if quick else FULL)
    if repeats is not None:
        settings = dataclasses.replace(settings, repeats=repeats)
    if not 1 <= settings.max_tasks <= len(TASKS):
        raise ValueError(f"max_tasks must be 1..{len(TASKS)}, got {settings.max_tasks}")
    source_images, tasks = _task_data(settings)
    records = []
    for seed in range(settings.repeats):
        records.append(_one_repeat(settings, source_images, tasks, seed))
        logger.info("scaling repeat %d done", seed + 1)
    counts = list(range(1, settings.max_tasks + 1))
    shared, separate, rows = [], [], []
    for n in counts:
        shared_n = summarize([r["source_seconds"] + sum(r["head_seconds"][:n]) for r in records])
        separate_n = summarize([r["source_seconds"] + sum(r["separate_seconds"][:n]) for r in records])
        ratios = summarize([ratio(r["source_seconds"] + sum(r["head_seconds"][:n]),
                                  r["source_seconds"] + sum(r["separate_seconds"][:n])) for r in records])
        shared.append(shared_n)
        separate.append(separate_n)
        rows.append([n, shared_n, separate_n, ratios])
    head = summarize([s for r in records for s in r["head_seconds"]])
    model = summarize([s for r in records for s in r["separate_seconds"]])
    source = summarize([r["source_seconds"] for r in records])
    slopes = {"shared": _slope(counts, [s["median"] for s in shared]),
              "separate": _slope(counts, [s["median"] for s in separate])}
    figure = _plot(Path(out_dir) / "scaling.png", counts, shared, separate,
                   f"CXR phantoms {settings.size}x{settings.size}, {settings.epochs} epochs per model, "
                   f"median of {settings.repeats}")
    return section(
        "scaling", "Scaling with tasks: total training cost, shared vs separate",
        settings=dataclasses.asdict(settings),
        tables=[table("Total training seconds for N tasks (source/denoiser included)",
                      ["tasks", "shared s", "separate s", "ratio"], rows,
                      note=f"Per task: a head costs {head['median']:.3g} s, a separate model "
                           f"{model['median']:.3g} s, the source/denoiser {source['median']:.3g} s "
                           f"(medians). Fitted slope per task: shared {slopes['shared'] or 0:.3g} s, separate "
                           f"{slopes['separate'] or 0:.3g} s.")],
        data={"records": records, "counts": counts, "shared": shared, "separate": separate, "slopes": slopes,
              "head_seconds": head, "separate_model_seconds": model, "source_seconds": source},
        figures=[figure.name],
        headlines=[[f"training cost added per task, shared / separate ({settings.size}x{settings.size}, "
                    f"{settings.epochs} epochs)", ratio(slopes["shared"], slopes["separate"]),
                    "a head's cost / a whole model's"]])
