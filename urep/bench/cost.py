"""The papers' cost claims measured: shared representation + heads vs one separate model per task.

`run_cost` trains, for each phantom task set (`SETS`), the shared source and its heads (independent
strategy, encoder frozen) and the same task architectures from scratch (`urep.models.baseline_like`), all to
the same early-stopping rule, and reports per-model time, epochs, steps and parameters with totals in each
paper table's accounting (`ACCOUNTING`). `run_parameters` counts parameters per model and per approach at
the papers' widths. Both return a `urep.bench.common.section`; the choices are fields of `CostSettings`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from urep.bench.common import ratio, section, summarize, table

logger = logging.getLogger(__name__)

SETS = ("cxr_heterogeneous", "cxr_homogeneous", "doppler_heterogeneous")

#: Per set: the paper table, and whether its shared total includes the source and its separate total a
#: denoising model.
ACCOUNTING = {
    "cxr_heterogeneous": {"table": "journal_table4", "source_in_shared": True, "denoiser_in_separate": True},
    "cxr_homogeneous": {"table": "journal_table6", "source_in_shared": False, "denoiser_in_separate": False},
    "doppler_heterogeneous": {"table": "journal_table8", "source_in_shared": True,
                              "denoiser_in_separate": False},
}

PAPER_TABLE_LABELS = {"cxr_heterogeneous": "Table 4", "cxr_homogeneous": "Table 6",
                      "doppler_heterogeneous": "Table 8"}

CXR_FILTERS = (16, 32, 32, 64)
DOPPLER_FILTERS = (8, 16, 16, 32, 32, 32)
DOPPLER_DECODER = {"decoder_filters": (32, 16, 8), "dilation_rates": (2, 1, 1)}
HOMOGENEOUS_TASKS = {"bacterial_vs_normal": ("normal", "bacterial"), "viral_vs_normal": ("normal", "viral"),
                     "bacterial_vs_viral": ("viral", "bacterial")}


@dataclass(frozen=True)
class CostSettings:
    """Sizes and stopping rule of `run_cost`.

    Attributes:
        sizes: image sides; the first size runs `sets`, the others `large_sets`.
        sets: task sets at the first size.
        large_sets: task sets at the other sizes (fewer, to fit the time budget).
        n_source: source-model training images.
        n_task: training images per task.
        n_val: validation images (source and each task).
        batch_size: mini-batch size (the papers: 16).
        max_epochs: epoch budget when early stopping does not fire first.
        patience: early-stopping patience; the plateau rule uses `patience - 1` (at least 1).
        repeats: repetitions (seeds 0..repeats-1).
        jit_compile: XLA for every training loop.
        xla_check: also train the CXR source with XLA on, at the first size, to show the compile cost.
    """

    sizes: tuple[int, ...] = (64, 128)
    sets: tuple[str, ...] = SETS
    large_sets: tuple[str, ...] = ("cxr_homogeneous",)
    n_source: int = 48
    n_task: int = 32
    n_val: int = 16
    batch_size: int = 16
    max_epochs: int = 10
    patience: int = 3
    repeats: int = 2
    jit_compile: bool = False
    xla_check: bool = True


FULL = CostSettings()
QUICK = CostSettings(sizes=(32,), sets=("cxr_heterogeneous",), large_sets=(), n_source=32, n_task=32, n_val=16,
                     max_epochs=3, patience=1, repeats=1, xla_check=False)


# -- data --------------------------------------------------------------------------------------------------
def cxr_arrays(n: int, size: int, labels: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` CXR phantoms rendered in memory, labels assigned in turn.

    Args:
        n: number of images.
        size: image side (32-512).
        labels: labels from `urep.data.phantoms.CXR_LABELS`, used round-robin.
        seed: image i is drawn from `default_rng([seed, i])`.

    Returns:
        `(images (n, size, size, 1) float32 in [0, 1], lung masks (n, size, size, 1) float32 in {0, 1},
        labels (n,) str)`.
    """
    from urep.data.phantoms import render_cxr

    images, masks, names = [], [], []
    for i in range(n):
        label = labels[i % len(labels)]
        image, mask = render_cxr(np.random.default_rng([seed, i]), size, label)
        images.append(image)
        masks.append(mask)
        names.append(label)
    return (np.stack(images)[..., None].astype("float32"), np.stack(masks)[..., None].astype("float32"),
            np.asarray(names))


def doppler_arrays(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`n` spectral Doppler phantoms, every (flow, quality) pair in turn.

    Returns:
        `(images (n, size, size, 1) float32, envelope masks (n, size, size, 1) float32, flow (n,) int in
        0..2 (MV, MA, TR), quality (n,) int (0 good, 1 low))`.
    """
    from urep.data.phantoms import DOPPLER_FLOWS, DOPPLER_QUALITIES, render_doppler

    pairs = [(f, q) for f in range(len(DOPPLER_FLOWS)) for q in range(len(DOPPLER_QUALITIES))]
    images, masks, flows, qualities = [], [], [], []
    for i in range(n):
        flow, quality = pairs[i % len(pairs)]
        image, mask = render_doppler(np.random.default_rng([seed, i]), size, DOPPLER_FLOWS[flow],
                                     DOPPLER_QUALITIES[quality])
        images.append(image)
        masks.append(mask)
        flows.append(flow)
        qualities.append(quality)
    return (np.stack(images)[..., None].astype("float32"), np.stack(masks)[..., None].astype("float32"),
            np.asarray(flows), np.asarray(qualities))


def _split(arrays: Sequence[np.ndarray], n_train: int) -> tuple[list, list]:
    return [a[:n_train] for a in arrays], [a[n_train:] for a in arrays]


def _data(settings: CostSettings, size: int, sets: Sequence[str]) -> dict:
    """Every array the sets need at `size` (the same for every repeat)."""
    n, n_val = settings.n_task, settings.n_val
    data = {}
    if "cxr_heterogeneous" in sets or "cxr_homogeneous" in sets:
        images, _, _ = cxr_arrays(settings.n_source + n_val, size, ("normal", "abnormal"), seed=1)
        data["cxr_source"] = _split([images], settings.n_source)
    if "cxr_heterogeneous" in sets:
        images, masks, labels = cxr_arrays(n + n_val, size, ("normal", "abnormal"), seed=2)
        data["cxr_heterogeneous"] = _split([images, masks, (labels == "abnormal").astype(int)], n)
    if "cxr_homogeneous" in sets:
        images, _, labels = cxr_arrays(2 * (n + n_val), size, ("normal", "bacterial", "viral"), seed=4)
        data["cxr_homogeneous"] = {}
        for task, (negative, positive) in HOMOGENEOUS_TASKS.items():
            keep = np.isin(labels, (negative, positive))
            x, y = images[keep][: n + n_val], (labels[keep][: n + n_val] == positive).astype(int)
            data["cxr_homogeneous"][task] = _split([x, y], min(n, len(x) - n_val))
    if "doppler_heterogeneous" in sets:
        data["doppler_heterogeneous"] = _split(list(doppler_arrays(max(settings.n_source, n) + n_val, size,
                                                                   seed=11)), max(settings.n_source, n))
    return data


def _dataset(x: np.ndarray, y: np.ndarray, settings: CostSettings, seed: int, train: bool, classes: int | None):
    """In-memory batches as `urep run` makes them (`ArrayBatches`: shuffled per epoch when `train`), so the
    independent heads train on precomputed encoder features as they do in a run."""
    from urep.data.batches import ArrayBatches

    y = np.eye(classes, dtype=np.float32)[y] if classes is not None else y
    return ArrayBatches(x, y, settings.batch_size, seed if train else None)


# -- training ------------------------------------------------------------------------------------------------
def train_config(settings: CostSettings, seed: int, optimizer: str = "rmsprop", learning_rate: float = 1e-3,
                 jit_compile: bool | None = None):
    """The stopping rule every model of the comparison is trained with."""
    from urep.training import TrainConfig

    return TrainConfig(epochs=settings.max_epochs, batch_size=settings.batch_size, optimizer=optimizer,
                       learning_rate=learning_rate, early_stopping_patience=settings.patience,
                       reduce_lr_patience=max(settings.patience - 1, 1), monitor="val_loss",
                       jit_compile=settings.jit_compile if jit_compile is None else jit_compile,
                       seed=seed, progress_bar=False, tensorboard=False, checkpoint_every_epoch=False)


def _record(result) -> dict:
    first = result.history.get("seconds", [None])[0]
    return {"seconds": result.seconds, "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "steps": result.steps_run, "stop_reason": result.stop_reason,
            "trainable_params": result.trainable_params, "total_params": result.total_params,
            "first_epoch_seconds": first}


@dataclass
class _Head:
    name: str
    kind: str
    loss: str
    optimizer: str
    learning_rate: float
    train: tuple
    val: tuple
    classes: int | None


def _heads_vs_separate(assembly, heads: Sequence[_Head], settings: CostSettings, seed: int) -> dict:
    """Fine-tune the heads (independent strategy) and train each task's architecture from scratch."""
    import keras

    from urep.models import baseline_like
    from urep.training import OptimizerConfig, Task, finetune, train_model

    keras.utils.set_random_seed(seed + 100)
    separate_models = {h.name: baseline_like(assembly.task_model(h.name)) for h in heads}
    tasks = []
    for h in heads:
        tasks.append(Task(h.name, h.kind, None, h.loss,
                          _dataset(*h.train, settings, seed, True, h.classes),
                          _dataset(*h.val, settings, seed, False, h.classes), n_train=len(h.train[0]),
                          optimizer=OptimizerConfig(h.optimizer, h.learning_rate)))
    config = train_config(settings, seed)
    shared = {name: _record(r) for name, r in finetune(assembly, tasks, "independent", config).items()}
    separate = {}
    for h, task in zip(heads, tasks, strict=True):
        result = train_model(separate_models[h.name], h.loss, task.train, task.val, config, name=h.name,
                             kind=h.kind, optimizer=task.optimizer, n_train=task.n_train)
        separate[h.name] = _record(result)
    return {"shared": shared, "separate": separate}


def _cxr_source(settings: CostSettings, size: int, data: dict, seed: int, jit_compile: bool | None = None):
    import keras

    from urep.models import cdae
    from urep.training.source import train_denoiser

    keras.utils.set_random_seed(seed)
    model = cdae((size, size, 1), filters=CXR_FILTERS)
    (train,), (val,) = data["cxr_source"]
    result = train_denoiser(model, train, val, "gaussian:0.03",
                            train_config(settings, seed, "rmsprop", 1e-3, jit_compile))
    return model, _record(result)


def _cxr_heterogeneous(source, settings: CostSettings, data: dict, seed: int) -> dict:
    from urep.models import MultiTaskModel, truncate

    assembly = MultiTaskModel(truncate(source, name=f"cxr_het_encoder_{seed}"), name="cxr_heterogeneous")
    assembly.add_segmentation_head("lung_segmentation", autoencoder=source)
    assembly.add_classification_head("abnormality_classification", 2, dense_units=64, dropout=0.3)
    (x, masks, labels), (vx, vmasks, vlabels) = data["cxr_heterogeneous"]
    heads = [_Head("lung_segmentation", "segmentation", "bce_dice", "rmsprop", 1e-3, (x, masks), (vx, vmasks),
                   None),
             _Head("abnormality_classification", "classification", "categorical_crossentropy", "sgd", 1e-2,
                   (x, labels), (vx, vlabels), 2)]
    return _heads_vs_separate(assembly, heads, settings, seed)


def _cxr_homogeneous(source, settings: CostSettings, data: dict, seed: int) -> dict:
    from urep.models import MultiTaskModel, truncate

    assembly = MultiTaskModel(truncate(source, name=f"cxr_hom_encoder_{seed}"), name="cxr_homogeneous")
    heads = []
    for task, ((x, y), (vx, vy)) in data["cxr_homogeneous"].items():
        assembly.add_classification_head(task, 2, dense_units=64, dropout=0.3)
        heads.append(_Head(task, "classification", "categorical_crossentropy", "sgd", 1e-2, (x, y), (vx, vy), 2))
    return _heads_vs_separate(assembly, heads, settings, seed)


def _doppler_heterogeneous(settings: CostSettings, size: int, data: dict, seed: int) -> dict:
    import keras

    from urep.models import MultiTaskModel, dilated_cnn, truncate
    from urep.training.source import train_supervised_source

    (x, masks, flow, quality), (vx, vmasks, vflow, vquality) = data["doppler_heterogeneous"]
    keras.utils.set_random_seed(seed)
    source = dilated_cnn((size, size, 1), filters=DOPPLER_FILTERS, dense_units=64, n_classes=3)
    config = train_config(settings, seed, "adam", 1e-3)
    result = train_supervised_source(source, _dataset(x, flow, settings, seed, True, 3),
                                     _dataset(vx, vflow, settings, seed, False, 3), config, n_train=len(x))
    assembly = MultiTaskModel(truncate(source, name=f"doppler_encoder_{seed}"), name="doppler_heterogeneous")
    assembly.add_segmentation_head("envelope_segmentation", **DOPPLER_DECODER)
    assembly.add_classification_head("quality_assessment", 2, dense_units=64, dropout=0.5)
    assembly.add_classification_head("flow_classification", 3, dense_units=64, dropout=0.5)
    heads = [_Head("envelope_segmentation", "segmentation", "bce_dice", "adam", 1e-3, (x, masks), (vx, vmasks),
                   None),
             _Head("quality_assessment", "classification", "categorical_crossentropy", "sgd", 1e-2,
                   (x, quality), (vx, vquality), 2),
             _Head("flow_classification", "classification", "categorical_crossentropy", "sgd", 1e-2,
                   (x, flow), (vx, vflow), 3)]
    return {"source": _record(result), **_heads_vs_separate(assembly, heads, settings, seed)}


def _one_repeat(settings: CostSettings, size: int, sets: Sequence[str], data: dict, seed: int) -> dict:
    out = {}
    if "cxr_heterogeneous" in sets or "cxr_homogeneous" in sets:
        source, source_record = _cxr_source(settings, size, data, seed)
        for name, fn in (("cxr_heterogeneous", _cxr_heterogeneous), ("cxr_homogeneous", _cxr_homogeneous)):
            if name in sets:
                out[name] = {"source": source_record, **fn(source, settings, data, seed)}
    if "doppler_heterogeneous" in sets:
        out["doppler_heterogeneous"] = _doppler_heterogeneous(settings, size, data, seed)
    return out


# -- totals, ratios, tables ------------------------------------------------------------------------------------
def _paper_ratios(set_name: str, heads: Sequence[str]) -> dict:
    from urep.experiments.paper_numbers import paper_value

    key = ACCOUNTING[set_name]["table"]

    def value(method: str, task: str, metric: str) -> float | None:
        return paper_value(key, method, task, metric)

    head_minutes = [value("proposed", h, "minutes") for h in heads]
    separate_minutes = [value("baseline", h, "minutes") for h in heads]
    heads_ratio = None
    if None not in head_minutes and None not in separate_minutes:
        heads_ratio = sum(head_minutes) / sum(separate_minutes)
    return {"table": key,
            "time_ratio_heads": heads_ratio,
            "time_ratio_total": ratio(value("proposed", "total", "minutes"), value("baseline", "total", "minutes")),
            "params_ratio_total": ratio(value("proposed", "total", "params"), value("baseline", "total", "params"))}


def totals(set_name: str, record: dict) -> dict:
    """Shared and separate totals of one repeat of one set, in the paper table's accounting.

    Args:
        set_name: one of `SETS`.
        record: `{"source", "shared": {head: rec}, "separate": {head: rec}}` as `run_cost` records.

    Returns:
        `{"shared_seconds", "separate_seconds", "heads_seconds", "separate_models_seconds",
        "time_ratio_heads", "time_ratio_total", "shared_params", "separate_params", "params_ratio_total",
        "epochs_ratio_heads"}`; shared parameters count the trainable parameters each head trained (plus the
        source's when the source is in the total), separate ones every parameter of each model (plus the
        denoiser's).
    """
    rule = ACCOUNTING[set_name]
    source = record["source"]
    heads = sum(r["seconds"] for r in record["shared"].values())
    separate = sum(r["seconds"] for r in record["separate"].values())
    shared_total = heads + (source["seconds"] if rule["source_in_shared"] else 0.0)
    separate_total = separate + (source["seconds"] if rule["denoiser_in_separate"] else 0.0)
    shared_params = sum(r["trainable_params"] for r in record["shared"].values()) + (
        source["total_params"] if rule["source_in_shared"] else 0)
    separate_params = sum(r["total_params"] for r in record["separate"].values()) + (
        source["total_params"] if rule["denoiser_in_separate"] else 0)
    return {"shared_seconds": shared_total, "separate_seconds": separate_total, "heads_seconds": heads,
            "separate_models_seconds": separate, "time_ratio_heads": ratio(heads, separate),
            "time_ratio_total": ratio(shared_total, separate_total), "shared_params": shared_params,
            "separate_params": separate_params, "params_ratio_total": ratio(shared_params, separate_params),
            "epochs_ratio_heads": ratio(sum(r["epochs"] for r in record["shared"].values()),
                                        sum(r["epochs"] for r in record["separate"].values()))}


def _stat(records: Sequence[dict], key: str) -> dict | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return summarize(values) if values else None


def _tables(runs: dict) -> list[dict]:
    per_model, summary = [], []
    for size, by_set in runs.items():
        for set_name, repeats in by_set.items():
            first = repeats[0]
            heads = list(first["shared"])
            rows = [("source", "shared (source)", [r["source"] for r in repeats])]
            for head in heads:
                rows.append((head, "shared head", [r["shared"][head] for r in repeats]))
                rows.append((head, "separate model", [r["separate"][head] for r in repeats]))
            for model, approach, records in rows:
                per_model.append([size, set_name, model, approach, _stat(records, "seconds"),
                                  _stat(records, "epochs"), _stat(records, "best_epoch"), _stat(records, "steps"),
                                  records[0]["trainable_params"], records[0]["total_params"]])
            sums = [totals(set_name, r) for r in repeats]
            paper = _paper_ratios(set_name, heads)
            summary.append([size, set_name, _stat(sums, "shared_seconds"), _stat(sums, "separate_seconds"),
                            _stat(sums, "time_ratio_heads"), paper["time_ratio_heads"],
                            _stat(sums, "time_ratio_total"), paper["time_ratio_total"],
                            _stat(sums, "params_ratio_total"), paper["params_ratio_total"]])
    return [
        table("Time to early stopping per model (shared heads: independent strategy, encoder frozen)",
              ["size", "set", "model", "approach", "seconds", "epochs", "best epoch", "steps", "trainable",
               "total params"], per_model,
              note="Separate model = the head's architecture (encoder + head), fresh random weights, all "
                   "trainable. Seconds include tracing and validation, not checkpoint I/O."),
        table("Shared vs separate: totals and ratios next to the papers'",
              ["size", "set", "shared s", "separate s", "time ratio, heads", "paper", "time ratio, total",
               "paper", "params ratio", "paper"], summary,
              note="Ratio = shared / separate (paper: -86% time = 0.14). Totals follow each paper table's "
                   "accounting: Table 4 source vs denoiser + models; Table 6 heads vs models; Table 8 source "
                   "+ heads vs models. Our heads count the parameters they train; the papers count 295,715 "
                   "per classification head and the whole 786,497-parameter model per segmentation head."),
    ]


def _xla_check(settings: CostSettings, size: int, data: dict) -> dict:
    """The CXR source trained to early stopping with XLA off and on (seed 0)."""
    rows = {}
    for jit in (False, True):
        _, record = _cxr_source(settings, size, data, 0, jit_compile=jit)
        rows["xla" if jit else "no_xla"] = record
    return rows


def run_cost(out_dir, quick: bool = False, repeats: int | None = None,
             settings: CostSettings | None = None) -> dict:
    """Shared vs separate, to the same stopping rule, for every task set and size.

    Args:
        out_dir: output folder (unused: everything goes into the returned section).
        quick: the tiny `QUICK` settings (one set at 32x32, 3 epochs at most, one repeat).
        repeats: overrides the settings' repeats.
        settings: overrides `FULL`/`QUICK`.

    Returns:
        A section (`urep.bench.common.section`) with `data = {"runs": {size: {set: [repeat records]}},
        "totals": ..., "xla_check": ...}`.
    """
    settings = settings or (QUICK if quick else FULL)
    if repeats is not None:
        settings = dataclasses.replace(settings, repeats=repeats)
    runs: dict = {}
    xla: dict = {}
    for index, size in enumerate(settings.sizes):
        sets = settings.sets if index == 0 else settings.large_sets
        if not sets:
            continue
        started = time.perf_counter()
        data = _data(settings, size, sets)
        logger.info("cost %dx%d: phantoms rendered in %.1f s", size, size, time.perf_counter() - started)
        runs[size] = {name: [] for name in SETS if name in sets}
        for seed in range(settings.repeats):
            for name, record in _one_repeat(settings, size, sets, data, seed).items():
                runs[size][name].append(record)
            logger.info("cost %dx%d repeat %d done", size, size, seed + 1)
        if index == 0 and settings.xla_check and "cxr_heterogeneous" in sets:
            xla = _xla_check(settings, size, data)
    tables = _tables(runs)
    if xla:
        tables.append(table(
            f"XLA and time to early stopping (CXR source, {settings.sizes[0]}x{settings.sizes[0]}, seed 0)",
            ["jit_compile", "seconds", "first epoch s", "epochs", "steps"],
            [[key == "xla", r["seconds"], r["first_epoch_seconds"], r["epochs"], r["steps"]]
             for key, r in xla.items()],
            note="The first epoch includes tracing (and XLA compilation when on)."))
    totals_data = {size: {name: [totals(name, r) for r in repeats] for name, repeats in by_set.items()}
                   for size, by_set in runs.items()}
    headlines = []
    for size, by_set in totals_data.items():
        for name, sums in by_set.items():
            paper = _paper_ratios(name, list(runs[size][name][0]["shared"]))
            headlines.append([f"training time shared / separate, {name} {size}x{size} "
                              f"({PAPER_TABLE_LABELS[name]} accounting)", _stat(sums, "time_ratio_total"),
                              paper["time_ratio_total"]])
    return section("cost", "Shared vs separate to the same stopping rule", settings=dataclasses.asdict(settings),
                   tables=tables, data={"runs": runs, "totals": totals_data, "xla_check": xla},
                   headlines=headlines,
                   notes=["Sample sizes: per set and size, n_source training images for the source, n_task "
                          "per task, n_val validation images; see settings."])


# -- parameters ---------------------------------------------------------------------------------------------------
def _head_only(model, encoder) -> int:
    shared = {id(v) for v in encoder.weights}
    return int(sum(np.prod(v.shape) for v in model.weights if id(v) not in shared))


def run_parameters(out_dir, quick: bool = False, repeats: int | None = None, size: int = 64) -> dict:
    """Trainable and total parameters of the papers' models (papers' widths), per model and per approach.

    Parameter counts do not depend on the image size (every model ends in global pooling or is fully
    convolutional), so the models are built at `size` x `size`.

    Args:
        out_dir: unused.
        quick: unused (the benchmark takes seconds).
        repeats: unused (counts are exact).
        size: image side the models are built at.

    Returns:
        A section with one row per model and one per approach total.
    """
    from urep.experiments.paper_numbers import paper_value
    from urep.models import (
        MultiTaskModel,
        baseline_classifier,
        baseline_denoiser,
        baseline_like,
        cdae,
        dilated_cnn,
        parameter_counts,
        truncate,
    )

    rows, totals_rows, data = [], [], {}
    cxr = cdae((size, size, 1))
    cxr_set = MultiTaskModel(truncate(cxr, name="p_cxr_encoder"), name="p_cxr")
    seg = cxr_set.add_segmentation_head("lung_segmentation", autoencoder=cxr)
    cls = cxr_set.add_classification_head("abnormality_classification", 2)
    doppler = dilated_cnn((size, size, 1))
    dop_set = MultiTaskModel(truncate(doppler, name="p_dop_encoder"), name="p_dop")
    dseg = dop_set.add_segmentation_head("envelope_segmentation")
    dq = dop_set.add_classification_head("quality_assessment", 2)
    dflow = dop_set.add_classification_head("flow_classification", 3)
    separate_cls = baseline_classifier((size, size, 1))
    plans = {
        "cxr_heterogeneous": (cxr, cxr_set, [("lung_segmentation", seg, baseline_like(seg)),
                                            ("abnormality_classification", cls, separate_cls)]),
        "cxr_homogeneous": (None, cxr_set, [(t, cls, separate_cls) for t in HOMOGENEOUS_TASKS]),
        "doppler_heterogeneous": (doppler, dop_set, [("envelope_segmentation", dseg, baseline_like(dseg)),
                                                    ("quality_assessment", dq, separate_cls),
                                                    ("flow_classification", dflow, separate_cls)]),
    }
    denoiser = baseline_denoiser(input_shape=(size, size, 1))
    for set_name, (source, assembly, heads) in plans.items():
        key = ACCOUNTING[set_name]["table"]
        shared_sum, separate_sum = 0, 0
        if source is not None:
            trainable, total = parameter_counts(source)
            paper = paper_value(key, "proposed", "source", "params")
            rows.append([set_name, "source", "shared", trainable, total, None, paper])
            shared_sum += total if ACCOUNTING[set_name]["source_in_shared"] else 0
        if ACCOUNTING[set_name]["denoiser_in_separate"]:
            trainable, total = parameter_counts(denoiser)
            rows.append([set_name, "denoiser", "separate", trainable, total, None,
                         paper_value(key, "baseline", "denoiser", "params")])
            separate_sum += total
        for task, head_model, separate_model in heads:
            trainable, total = parameter_counts(head_model)
            head = _head_only(head_model, assembly.encoder)
            rows.append([set_name, task, "shared head", trainable, total, head,
                         paper_value(key, "proposed", task, "params")])
            shared_sum += head
            trainable, total = parameter_counts(separate_model)
            rows.append([set_name, task, f"separate ({separate_model.name})", trainable, total, None,
                         paper_value(key, "baseline", task, "params")])
            separate_sum += total
        paper_ratio = ratio(paper_value(key, "proposed", "total", "params"),
                            paper_value(key, "baseline", "total", "params"))
        totals_rows.append([set_name, shared_sum, separate_sum, ratio(shared_sum, separate_sum),
                            paper_value(key, "proposed", "total", "params"),
                            paper_value(key, "baseline", "total", "params"), paper_ratio])
        data[set_name] = {"shared_params": shared_sum, "separate_params": separate_sum,
                          "ratio": ratio(shared_sum, separate_sum), "paper_ratio": paper_ratio}
    data["rows"] = rows
    return section(
        "params", "Parameters per model and per approach (papers' widths)", settings={"size": size},
        tables=[table("Parameters per model", ["set", "model", "approach", "trainable", "total", "head only",
                                               "paper"], rows,
                      note="Shared heads: the task model (encoder + head) and the head's own parameters. "
                           "Separate classifiers are the papers' baseline classifier (1,573,506); separate "
                           "segmentation models the same architecture as the head's model."),
                table("Parameters per approach", ["set", "shared", "separate", "ratio", "paper shared",
                                                  "paper separate", "paper ratio"], totals_rows,
                      note="Shared = source (where the paper's total counts it) + each head's own parameters; "
                           "the papers count each head's full 295,715 / 786,497, so their ratio is higher.")],
        data=data,
        headlines=[[f"parameters shared / separate, {name} ({PAPER_TABLE_LABELS[name]} accounting, ours: "
                    "head-only)", data[name]["ratio"], data[name]["paper_ratio"]] for name in plans])
