"""`urep explain RUN_DIR IMAGE...`: Grad-CAM overlays of a run's classification head on image files.

Reads DICOM, PNG, JPEG, ... through `urep.data.read_image`, resizes to the task's `image_size`, applies the run's
normaliser, and writes one PNG overlay per image (heat map over the image, the ground-truth mask outline when
`--mask` is given) plus `explain.json` (prediction, explained class, energy inside the mask) into `--out`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++", "scorecam")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="Grad-CAM overlays of a trained classification head on image files",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run directory (models/manifest.json)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="image files (DICOM, PNG, ...)")
    parser.add_argument("--task", help="classification task to explain (default: the run's only one)")
    parser.add_argument("--method", choices=METHODS, default="gradcam", help="CAM method (default gradcam)")
    parser.add_argument(
        "--class", dest="class_name", help="class to explain for every image (default: each image's prediction)"
    )
    parser.add_argument(
        "--mask", nargs="+", type=Path, default=None,
        help="ground-truth masks, one per IMAGE in the same order: outlined, and energy inside reported",
    )
    parser.add_argument(
        "--resize-mask", action="store_true",
        help="accept a mask whose size differs from its image's (it is resized); by default that is an error",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/explain/TASK)")
    parser.add_argument("--alpha", type=float, default=0.4, help="heat map opacity in [0, 1] (default 0.4)")
    parser.set_defaults(func=_explain)


def _pick_task(run, requested: str | None) -> str:
    classification = run.tasks_of_kind("classification")
    if requested is not None:
        if requested not in run.tasks:
            raise ValueError(f"run {run.run_dir} has no task {requested!r}; tasks: {sorted(run.tasks)}")
        if requested not in classification:
            raise ValueError(f"task {requested!r} is a {run.tasks[requested].kind} task; Grad-CAM explains "
                             f"classification tasks: {classification}")
        return requested
    if len(classification) != 1:
        raise ValueError(f"run {run.run_dir} has classification tasks {classification}; choose one with --task")
    return classification[0]


def _overlay_names(images: list[Path], task: str, method: str) -> list[str]:
    stems = [image.stem for image in images]
    suffix = method.replace("+", "p")
    if len(set(stems)) == len(stems):
        return [f"{stem}_{task}_{suffix}.png" for stem in stems]
    return [f"{index:03d}_{stem}_{task}_{suffix}.png" for index, stem in enumerate(stems)]


def _check_mask_sizes(images: list[Path], masks: list[Path]) -> None:
    """Each mask must have its image's size (a mask of another image would be silently resized otherwise)."""
    from urep.data.readers import image_shape

    for image, mask in zip(images, masks, strict=True):
        image_hw, mask_hw = image_shape(image), image_shape(mask)
        if image_hw != mask_hw:
            raise ValueError(f"--mask {mask} is {mask_hw[0]}x{mask_hw[1]} but its image {image} is "
                             f"{image_hw[0]}x{image_hw[1]}; pass --resize-mask to resize it anyway")


def _explain(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise SystemExit(f"urep explain: {error}") from error


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from urep.data import read_mask
    from urep.explain import (
        energy_by_class,
        energy_inside,
        gradcam,
        load_run_models,
        predict_probabilities,
        save_overlay,
    )
    from urep.io import atomic_write_json
    from urep.run_dir import RunDir

    if args.mask is not None and len(args.mask) != len(args.images):
        raise ValueError(f"--mask gives {len(args.mask)} masks for {len(args.images)} images; give one per image")
    run = load_run_models(args.run_dir)
    task = _pick_task(run, args.task)
    entry = run.entry(task)
    classes = list(entry.classes)
    class_index = None
    if args.class_name is not None:
        if args.class_name not in classes:
            raise ValueError(f"--class {args.class_name!r} is not a class of task {task!r}: {classes}")
        class_index = classes.index(args.class_name)

    raw, batch = run.read_images(args.images, task)
    model = run.model(task)
    probs = predict_probabilities(model, batch)
    if probs.shape[1] != len(classes):
        raise ValueError(f"task {task!r} model outputs {probs.shape[1]} classes but the manifest lists {classes}")
    cams = gradcam(model, batch, class_index=class_index, layer_name=entry.gradcam_layer, method=args.method)
    masks = None
    if args.mask is not None:
        if not args.resize_mask:
            _check_mask_sizes(args.images, args.mask)
        masks = np.stack([read_mask(path, size=entry.image_size) for path in args.mask])

    out_dir = args.out if args.out is not None else RunDir(run.run_dir).explain / task
    records = []
    names = _overlay_names(list(args.images), task, args.method)
    for i, (image_path, name) in enumerate(zip(args.images, names, strict=True)):
        mask = masks[i] if masks is not None else None
        overlay_path = save_overlay(out_dir / name, raw[i], cams[i], mask=mask, alpha=args.alpha)
        predicted = int(probs[i].argmax())
        explained = predicted if class_index is None else class_index
        record = {
            "image": str(image_path),
            "overlay": str(overlay_path),
            "predicted": classes[predicted],
            "probabilities": {c: float(p) for c, p in zip(classes, probs[i], strict=True)},
            "explained_class": classes[explained],
        }
        line = f"{image_path}  predicted {classes[predicted]} ({probs[i, predicted]:.3f})  -> {overlay_path}"
        if mask is not None:
            record["energy_inside_mask"] = energy_inside(cams[i], mask)
            line += f"  energy inside mask {record['energy_inside_mask']:.3f}"
        records.append(record)
        print(line)

    summary = {"run_dir": str(run.run_dir), "task": task, "method": args.method, "layer": entry.gradcam_layer,
               "classes": classes, "images": records}
    if masks is not None:
        summary["energy_by_predicted_class"] = energy_by_class(cams, masks, probs.argmax(axis=1), classes)
    atomic_write_json(out_dir / "explain.json", summary)
    print(f"wrote {len(records)} overlays and {out_dir / 'explain.json'}")
    return 0
