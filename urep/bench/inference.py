"""Inference: the fused multi-head model (one encoder pass) vs each task's model run separately.

`run(out_dir, quick, repeats)` times, for 2, 3 and 5 heads on one CDAE encoder at the papers' width,
`MultiTaskModel.fused_model()` against the task models called in turn (both through `tf.function`, warm-up
call left out), for classification heads and for a segmentation head among them, and returns a
`urep.bench.common.section` with the measured and ideal speed-up; sizes and counts are `InferenceSettings`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from urep.bench.common import ratio, section, summarize, table, time_calls

logger = logging.getLogger(__name__)

VARIANTS = ("classification", "segmentation+classification")


@dataclass(frozen=True)
class InferenceSettings:
    """What `run` measures.

    Attributes:
        sizes: image sides (the classification variant runs at all, the mixed one at the first).
        heads: head counts compared (each <= max(heads), the size of the one assembly built).
        filters: CDAE encoder widths (papers' width: 112 x 4).
        dense_units: classification heads' Dense width (papers: 256).
        batch_size: images per call.
        iterations: calls per repetition.
        repeats: repetitions.
        jit_compile: XLA for every call; `xla_rows` adds fused and separate with XLA for the most heads.
        xla_rows: sizes at which the XLA comparison rows are measured.
    """

    sizes: tuple[int, ...] = (64, 128, 256)
    heads: tuple[int, ...] = (2, 3, 5)
    filters: tuple[int, ...] = (112, 112, 112, 112)
    dense_units: int = 256
    batch_size: int = 16
    iterations: int = 2
    repeats: int = 3
    jit_compile: bool = False
    xla_rows: tuple[int, ...] = (64,)


FULL = InferenceSettings()
QUICK = InferenceSettings(sizes=(32,), heads=(2,), filters=(8, 8, 8, 8), dense_units=16, batch_size=8,
                          iterations=1, repeats=2, xla_rows=())


def _assembly(size: int, n_heads: int, variant: str, settings: InferenceSettings):
    import keras

    from urep.models import MultiTaskModel, cdae, truncate

    keras.utils.set_random_seed(0)
    source = cdae((size, size, 1), filters=settings.filters, name=f"inf_cdae_{size}_{variant[:3]}")
    assembly = MultiTaskModel(truncate(source, name=f"inf_encoder_{size}_{variant[:3]}"), name="inference")
    for i in range(n_heads):
        if variant == "segmentation+classification" and i == 0:
            assembly.add_segmentation_head("head0", autoencoder=source)
        else:
            assembly.add_classification_head(f"head{i}", 2 + i % 2, dense_units=settings.dense_units)
    return assembly


def _fused(assembly, n: int):
    import keras

    if n == len(assembly.task_names):
        return assembly.fused_model()
    names = assembly.task_names[:n]
    return keras.Model(assembly.encoder.input, {t: assembly.task_model(t).outputs[0] for t in names},
                       name=f"fused_{n}")


def _caller(model, x, jit_compile: bool):
    import tensorflow as tf

    function = tf.function(lambda batch: model(batch, training=False), jit_compile=jit_compile)

    def call():
        outputs = function(x)
        for tensor in tf.nest.flatten(outputs):
            np.asarray(tensor)

    return call


def _measure(size: int, variant: str, settings: InferenceSettings, jit_compile: bool,
             counts: tuple[int, ...]) -> dict:
    """Seconds per batch, one list per repetition: encoder alone, each task model, fused per head count.

    Every callable is warmed up (traced) first; each repetition then times every callable in turn, so a
    change of machine load during the run affects all of them alike.
    """
    import tensorflow as tf

    assembly = _assembly(size, max(counts), variant, settings)
    x = tf.random.uniform((settings.batch_size, size, size, 1), seed=1)
    callers = {"encoder": _caller(assembly.encoder, x, jit_compile)}
    callers.update({("task", i): _caller(assembly.task_model(t), x, jit_compile)
                    for i, t in enumerate(assembly.task_names)})
    callers.update({("fused", n): _caller(_fused(assembly, n), x, jit_compile) for n in counts})
    for call in callers.values():
        call()
    seconds: dict = {key: [] for key in callers}
    for _ in range(settings.repeats):
        for key, call in callers.items():

            def batches(call=call):
                for _ in range(settings.iterations):
                    call()

            seconds[key].append(time_calls(batches, 1, warmup=0)[0] / settings.iterations)
    return {"encoder": seconds["encoder"],
            "tasks": [seconds[("task", i)] for i in range(len(assembly.task_names))],
            "fused": {n: seconds[("fused", n)] for n in counts}}


def _rows(size: int, variant: str, jit_compile: bool, measured: dict, batch: int) -> tuple[list, dict]:
    rows, data = [], {}
    repeats = len(measured["encoder"])
    for n, fused in measured["fused"].items():
        separate = [sum(task[r] for task in measured["tasks"][:n]) for r in range(repeats)]
        factors = [s / f for s, f in zip(separate, fused, strict=True)]
        ideal = [ratio(s, s - (n - 1) * e) for s, e in zip(separate, measured["encoder"], strict=True)]
        ideal = [v for v in ideal if v is not None and v > 0]
        entry = {"fused_images_per_s": summarize([batch / f for f in fused]),
                 "separate_images_per_s": summarize([batch / s for s in separate]),
                 "factor": summarize(factors), "ideal_factor": summarize(ideal) if ideal else None}
        data[n] = entry
        rows.append([size, variant, n, jit_compile, entry["fused_images_per_s"], entry["separate_images_per_s"],
                     entry["factor"], entry["ideal_factor"]])
    return rows, data


def run(out_dir, quick: bool = False, repeats: int | None = None,
        settings: InferenceSettings | None = None) -> dict:
    """Images/s of the fused model vs the separate task models for each head count, size and variant.

    Args:
        out_dir: unused (everything is in the returned section).
        quick: `QUICK` settings (32x32, narrow, 2 heads).
        repeats: overrides the settings' repeats.
        settings: overrides `FULL`/`QUICK`.

    Returns:
        A section; `data[size][variant][xla?][n]` holds fused and separate images/s, the measured factor
        and the ideal one (stats over repetitions).
    """
    settings = settings or (QUICK if quick else FULL)
    if repeats is not None:
        settings = dataclasses.replace(settings, repeats=repeats)
    rows, data = [], {}
    for index, size in enumerate(settings.sizes):
        variants = VARIANTS if index == 0 else VARIANTS[:1]
        for variant in variants:
            measured = _measure(size, variant, settings, settings.jit_compile, settings.heads)
            new_rows, entry = _rows(size, variant, settings.jit_compile, measured, settings.batch_size)
            rows += new_rows
            data.setdefault(size, {}).setdefault(variant, {})["xla" if settings.jit_compile else "no_xla"] = entry
            logger.info("inference %dx%d %s done", size, size, variant)
        if size in settings.xla_rows and not settings.jit_compile:
            most = (max(settings.heads),)
            measured = _measure(size, VARIANTS[0], settings, True, most)
            new_rows, entry = _rows(size, VARIANTS[0], True, measured, settings.batch_size)
            rows += new_rows
            data[size][VARIANTS[0]]["xla"] = entry
    most = max(settings.heads)
    headline = {size: data[size][VARIANTS[0]]["no_xla" if not settings.jit_compile else "xla"][most]["factor"]
                for size in data}
    return section(
        "inference", "Inference: fused multi-head model vs separate task models",
        settings=dataclasses.asdict(settings),
        tables=[table("Inference images/s, fused (one encoder pass) vs separate task models",
                      ["size", "heads", "N", "XLA", "fused img/s", "separate img/s", "measured factor",
                       "ideal factor"], rows,
                      note="Factor = separate time / fused time for the same N outputs per image. Ideal = "
                           "the factor if only the N-1 saved encoder passes counted (encoder timed alone).")],
        data={"results": data, "headline_factor": headline},
        headlines=[[f"fused vs separate inference speed-up, {most} classification heads, {size}x{size}",
                    factor, f"up to {most} (encoder passes saved)"] for size, factor in headline.items()])
