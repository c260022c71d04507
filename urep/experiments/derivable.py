"""The derivable-task stages of `UrepPipeline`: Grad-CAM on a trained classification head and the Doppler
use/exclude recommendation, both on the first configured strategy's fold-0 models and the test images.

Each function reads the pipeline's data, models and normalizer (after the fine-tuning stages) and writes
`pipeline.results["explain"]` / `pipeline.results["recommendation"]`; overlays go to `figures/gradcam/`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from urep.experiments.evaluation import predict
from urep.experiments.sources import TaskArrays, read_arrays, task_frame
from urep.run_dir import RunDir

if TYPE_CHECKING:
    from urep.experiments.pipeline import UrepPipeline

logger = logging.getLogger(__name__)

__all__ = ["run_explain", "run_recommendation"]


def run_explain(pipeline: UrepPipeline) -> None:
    """Grad-CAM overlays on the explained classification head, and energy inside the task's masks.

    Writes `pipeline.results["explain"]` (nothing when `explain.gradcam` is off or there is no
    classification task) and appends the overlays to `pipeline.figures`."""
    from urep.explain import energy_by_class, gradcam

    config = pipeline.config
    task_name = config.explain.task or next((t.name for t in config.tasks if t.kind == "classification"), None)
    if not config.explain.gradcam or task_name is None:
        return
    task = config.task(task_name)
    model = pipeline.saved_models[f"{pipeline.primary_strategy()}/{task_name}"]
    df = task_frame(pipeline.frames[task.test_data or task.data], task, task.test_data or task.data)
    with_masks = None
    if config.explain.mask_task is not None:
        has_mask = df["has_mask"].astype(bool) if "has_mask" in df.columns else df["mask"].notna()
        df = df[has_mask].reset_index(drop=True)
        with_masks = True
    arrays = read_arrays(df, config.image_size, config.channels, task.label, task.classes,
                         masks=bool(with_masks), standardize=config.preprocessing.options())
    if task.test_data is None:
        test_patients = set(pipeline.task_data[task_name].test.patients)
        keep = np.flatnonzero(np.isin(arrays.patients, list(test_patients)))
        arrays = arrays.subset(keep)
    if len(arrays) == 0:
        logger.warning("Grad-CAM: no test images for task %s", task_name)
        return
    x = pipeline._norm(arrays.images)
    heatmaps = gradcam(model, x, layer_name="encoder_out")
    explain: dict[str, Any] = {"task": task_name, "strategy": pipeline.primary_strategy(), "n": int(len(x))}
    if with_masks:
        energy = energy_by_class(heatmaps, arrays.masks[..., 0], arrays.labels, list(task.classes))
        explain["mask_task"] = config.explain.mask_task
        explain["energy_by_class"] = {k: {kk: vv for kk, vv in v.items() if kk != "values"}
                                      for k, v in energy.items()}
        _energy_references(explain["energy_by_class"], model, x, arrays, list(task.classes))
        explain["labels"] = "true"
    order = _overlay_order(arrays.labels, config.explain.n_images)
    from urep.experiments.figures import gradcam_figure
    from urep.explain import energy_inside

    for i in order:
        label = task.classes[arrays.labels[i]]
        path = RunDir(pipeline.run_dir).figures / "gradcam" / f"{task_name}_{i:03d}_{label}.png"
        mask = arrays.masks[i, ..., 0] if with_masks else None
        energy_text = "" if mask is None else f"; energy inside mask {energy_inside(heatmaps[i], mask):.2f}"
        gradcam_figure(arrays.images[i, ..., 0], heatmaps[i], mask,
                       f"Grad-CAM of {task_name} ({pipeline.primary_strategy()}), test image {i}, "
                       f"true class {label}{energy_text}", path)
        pipeline.figures.append(str(path.relative_to(pipeline.run_dir)))
    pipeline.results["explain"] = explain


def _energy_references(energy: dict, model, x: np.ndarray, arrays: TaskArrays, classes: list[str]) -> None:
    """Add what the energy is judged against, per class: `mask_area` (the mask's share of the image, the
    energy of a uniform map) and `untrained` (the energy of the same architecture freshly initialised)."""
    import keras

    from urep.explain import energy_by_class, gradcam

    masks = arrays.masks[..., 0] > 0
    for index, name in enumerate(classes):
        if name in energy:
            energy[name]["mask_area"] = float(masks[arrays.labels == index].mean())
    try:
        untrained = keras.models.clone_model(model)  # same layers, fresh random weights
        reference = energy_by_class(gradcam(untrained, x, layer_name="encoder_out"), masks, arrays.labels,
                                    classes)
    except (ValueError, TypeError) as error:
        logger.warning("Grad-CAM: no untrained-model reference (%s)", error)
        return
    for name, info in reference.items():
        if name in energy:
            energy[name]["untrained"] = info.get("mean")


def _overlay_order(labels: np.ndarray, n: int) -> list[int]:
    """Up to `n` image indices, alternating between classes."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    while len(order) < n and any(by_class):
        for indices in by_class:
            if indices and len(order) < n:
                order.append(int(indices.pop(0)))
    return order


def run_recommendation(pipeline: UrepPipeline) -> dict | None:
    """Merge the flow-type and quality heads into use/exclude decisions on the quality test images.

    Writes `pipeline.results["recommendation"]`; returns the rules as a dict (saved with the models), or
    None when `recommendation.enabled` is off."""
    from urep.explain import recommend
    from urep.explain.recommendation import RecommendationRules

    rec = pipeline.config.recommendation
    if not rec.enabled:
        return None
    rules = RecommendationRules.from_dict(rec.options) if rec.options else RecommendationRules.paper_default()
    flow_task, quality_task = pipeline.config.task(rec.flow_task), pipeline.config.task(rec.quality_task)
    strategy = pipeline.primary_strategy()
    quality_data = pipeline.task_data[quality_task.name]
    test_patients = quality_data.test.patients
    source_name = quality_task.test_data or quality_task.data
    df = task_frame(pipeline.frames[source_name], quality_task, source_name)
    df = df[df[flow_task.label].astype(str).isin(flow_task.classes)].reset_index(drop=True)
    arrays = read_arrays(df, pipeline.config.image_size, pipeline.config.channels, quality_task.label,
                         quality_task.classes, standardize=pipeline.config.preprocessing.options())
    if quality_task.test_data is None:
        arrays = arrays.subset(np.flatnonzero(np.isin(arrays.patients, list(set(test_patients)))))
        df = df[df["patient"].astype(str).isin(set(test_patients))].reset_index(drop=True)
    x = pipeline._norm(arrays.images)
    flow_probs = predict(pipeline.saved_models[f"{strategy}/{flow_task.name}"], x)
    quality_probs = predict(pipeline.saved_models[f"{strategy}/{quality_task.name}"], x)
    decisions = recommend(flow_probs, quality_probs, rules, flow_task.classes, quality_task.classes)
    flow_index = {c: i for i, c in enumerate(flow_task.classes)}
    true_flow = np.eye(len(flow_task.classes))[[flow_index[str(v)] for v in df[flow_task.label]]]
    true_quality = np.eye(len(quality_task.classes))[arrays.labels]
    truth = recommend(true_flow, true_quality, rules, flow_task.classes, quality_task.classes)
    counts: dict[tuple, int] = {}
    for d in decisions:
        key = (d["flow"], d["quality"], d["decision"])
        counts[key] = counts.get(key, 0) + 1
    agreement = float(np.mean([a["decision"] == b["decision"] for a, b in zip(decisions, truth, strict=True)]))
    pipeline.results["recommendation"] = {
        "strategy": strategy, "n": len(decisions), "agreement": agreement, "rules": rules.to_dict(),
        "counts": [{"flow": f, "quality": q, "recommendation": r, "count": c}
                   for (f, q, r), c in sorted(counts.items())],
        "usable": int(sum(d["decision"] == "usable" for d in decisions))}
    return rules.to_dict()

