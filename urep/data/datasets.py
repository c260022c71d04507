"""Dataset adapters: turn a public dataset's folder layout into one standard table.

Every adapter returns a `pandas.DataFrame`, one row per image, with the columns `image` (absolute path),
`mask` (`""` when none; several files joined with `";"` are read as their union), `label`, `patient` (the
unit of every split), `dataset`, `has_mask`, then task-specific columns; `df.attrs` holds `root`, `skipped`
and `ignored`. Bad input raises `urep.data.DatasetError` listing every problem (`on_error="raise"`), or the
rows are left out, listed and logged (`on_error="skip"`); nothing is dropped silently (docs/design.md, "Module
notes").
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from urep.data.errors import DatasetError, ImageReadError
from urep.data.readers import MASK_SEPARATOR, image_shape, split_mask_parts

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
STANDARD_COLUMNS = ("image", "mask", "label", "patient", "dataset", "has_mask")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".dcm", ".img")
#: How many problems a DatasetError message lists before "... and N more".
MESSAGE_PROBLEMS = 10

MONTGOMERY_LABELS = ("normal", "abnormal")
SHENZHEN_LABELS = ("normal", "abnormal")
PEDIATRIC_LABELS = ("normal", "bacterial", "viral")
JSRT_LABELS = ("nodule", "non_nodule")
RSNA_LABELS = ("lung_opacity", "no_lung_opacity")
DOPPLER_FLOWS = ("MV", "MA", "TR")
DOPPLER_QUALITIES = ("low", "good", "empty")


@dataclass
class Checks:
    """Validation settings shared by every adapter.

    Attributes:
        require_masks: an image without a mask is a problem (default: allowed, `has_mask=False`).
        check_sizes: compare each image's size with its mask's, from headers.
        check_files: read each file's header (PNG/JPEG/DICOM) so that unreadable or truncated files are
            found now rather than in the middle of training; off: only existence is checked.
        on_error: `"raise"` or `"skip"` for row problems (see the module docstring).
        mask_scale_ok: accept a mask that is the image scaled by a whole factor (same aspect ratio), as the
            SCR masks (1024x1024) of the JSRT radiographs (2048x2048).
    """

    require_masks: bool = False
    check_sizes: bool = True
    check_files: bool = True
    on_error: str = "raise"
    mask_scale_ok: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")


# --- shared helpers ----------------------------------------------------------------------------------------


def _dir(root: PathLike, dataset: str, expected: str) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{dataset}: root folder {root} does not exist; expected {expected}")
    if not root.is_dir():
        raise DatasetError(f"{dataset}: root {root} is a file, not a folder; expected {expected}")
    return root.resolve()


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "an empty folder"
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} entries)" if len(names) > limit else shown


def _image_files(folder: Path, dataset: str, pattern: re.Pattern | None = None) -> tuple[list[Path], list[str]]:
    """Image files of a folder matching `pattern` (on the stem), and the other files (reported as ignored).

    Hidden files (`.DS_Store`, `._*` resource forks) and sub-folders are not listed at all.
    """
    if not folder.is_dir():
        raise DatasetError(f"{dataset}: expected the folder {folder}; it does not exist")
    files, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and (pattern is None or pattern.fullmatch(path.stem)):
            files.append(path)
        else:
            ignored.append(str(path))
    if not files:
        what = f"image files named like {pattern.pattern!r}" if pattern is not None else "image files"
        raise DatasetError(f"{dataset}: expected {what} in {folder}; found {_listing(folder)}")
    return files, ignored


def _check_labels(labels: Iterable[str], known: Sequence[str], dataset: str, where: str) -> None:
    counts = Counter(labels)
    unknown = sorted(label for label in counts if label not in known)
    if unknown:
        found = ", ".join(f"{label!r} ({counts[label]})" for label in unknown)
        raise DatasetError(f"{dataset}: labels outside the known set {list(known)} in {where}: {found}")


def _summarize(problems: Sequence[tuple[str, str]]) -> str:
    lines = [f"  {path}: {reason}" for path, reason in problems[:MESSAGE_PROBLEMS]]
    if len(problems) > MESSAGE_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MESSAGE_PROBLEMS} more")
    return "\n".join(lines)


def _row_problems(row: dict[str, Any], checks: Checks) -> list[tuple[str, str]]:
    image = row["image"]
    problems: list[tuple[str, str]] = []
    image_hw = None
    if not Path(image).is_file():
        return [(image, "image file not found")]
    if checks.check_files or checks.check_sizes:
        try:
            image_hw = image_shape(image)
        except ImageReadError as err:
            return [(image, f"unreadable image ({err})")]
    mask = row.get("mask", "")
    if not mask:
        if checks.require_masks:
            expected = row.get("_expected_mask") or "a mask"
            problems.append((image, f"no mask for this image (expected {expected})"))
        return problems
    for part in split_mask_parts(mask):
        if not part.is_file():
            problems.append((str(part), f"mask file not found (mask of {image})"))
            continue
        if not (checks.check_files or checks.check_sizes):
            continue
        try:
            mask_hw = image_shape(part)
        except ImageReadError as err:
            problems.append((str(part), f"unreadable mask ({err})"))
            continue
        if checks.check_sizes and image_hw is not None and not _sizes_agree(image_hw, mask_hw, checks):
            problems.append(
                (image, f"image is {image_hw[0]}x{image_hw[1]} but its mask {part} is {mask_hw[0]}x{mask_hw[1]}")
            )
    return problems


def _sizes_agree(image_hw: tuple[int, int], mask_hw: tuple[int, int], checks: Checks) -> bool:
    if image_hw == mask_hw:
        return True
    if not checks.mask_scale_ok:
        return False
    big, small = (image_hw, mask_hw) if image_hw[0] >= mask_hw[0] else (mask_hw, image_hw)
    factor = big[0] / small[0]
    return factor.is_integer() and big[1] == small[1] * factor


def _finish(
    rows: list[dict[str, Any]],
    dataset: str,
    root: Path,
    checks: Checks,
    ignored: Sequence[str] = (),
) -> pd.DataFrame:
    """Validate the rows, apply `on_error`, and build the standard DataFrame."""
    if not rows and not checks.skipped:
        raise DatasetError(f"{dataset}: no images found under {root}")
    kept, problems = [], list(checks.skipped)
    for row in rows:
        found = _row_problems(row, checks)
        if found:
            problems.extend(found)
        else:
            kept.append(row)
    if problems and checks.on_error == "raise":
        raise DatasetError(
            f"{dataset}: {len(problems)} problem(s) under {root} (pass on_error='skip' to leave those rows "
            f"out):\n{_summarize(problems)}",
            problems,
        )
    if problems:
        logger.warning("%s: skipped %d row(s) with problems:\n%s", dataset, len(problems), _summarize(problems))
    if ignored:
        logger.warning(
            "%s: ignored %d file(s) that do not follow the layout's naming, e.g. %s",
            dataset, len(ignored), ", ".join(ignored[:3]),
        )
    if not kept:
        raise DatasetError(f"{dataset}: every row under {root} had a problem:\n{_summarize(problems)}", problems)
    for row in kept:
        row.pop("_expected_mask", None)
        row["dataset"] = dataset
        row["has_mask"] = bool(row.get("mask"))
        row.setdefault("mask", "")
    frame = pd.DataFrame(kept)
    extras = [column for column in frame.columns if column not in STANDARD_COLUMNS]
    frame = frame[list(STANDARD_COLUMNS) + extras].reset_index(drop=True)
    frame.attrs.update(root=str(root), skipped=problems, ignored=list(ignored))
    return frame


def _escapes(base: Path, name: str) -> bool:
    """Whether the manifest entry `name` names a path outside the folder `base` (absolute, or `..` that climbs
    out). Checked on the path's text, so symbolic links inside a dataset folder stay allowed."""
    if not name:
        return False
    if os.path.isabs(name) or Path(name).is_absolute():
        return True
    joined = os.path.normpath(os.path.join(str(base), name))
    return os.path.commonpath([joined, os.path.normpath(str(base))]) != os.path.normpath(str(base))


def _escape_problem(manifest: Path, line: int, column: str, names: Sequence[str], base: Path) -> tuple[str, str] | None:
    """A row problem when any of `names` (one manifest cell) points outside `base`, naming the row."""
    bad = [name for name in names if _escapes(base, name)]
    if not bad:
        return None
    return (f"{manifest} line {line}",
            f"{column} {bad[0]!r} points outside {base} (absolute paths and '..' leaving the folder are refused)")


def _join_mask(parts: Sequence[Path]) -> str:
    return MASK_SEPARATOR.join(str(part) for part in parts)


def _read_csv(path: Path, dataset: str, required: Sequence[str], unique: str | None = None) -> pd.DataFrame:
    """Read a CSV as strings (empty cells stay `""`) and check its columns, rows and unique key."""
    if not path.is_file():
        raise DatasetError(f"{dataset}: expected the CSV {path}; it does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetError(f"{dataset}: cannot parse the CSV {path}: {err}") from err
    # Stray spaces around names and labels ("normal ", " a.png") are never meaningful: strip them.
    table.columns = [str(column).strip() for column in table.columns]
    table = table.apply(lambda column: column.str.strip())
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise DatasetError(
            f"{dataset}: CSV {path} lacks column(s) {missing}; expected at least {list(required)}, found "
            f"{list(table.columns)}"
        )
    if table.empty:
        raise DatasetError(f"{dataset}: CSV {path} has a header but no rows")
    if unique is not None:
        repeated = table.loc[table.duplicated(subset=[unique], keep=False), unique].unique().tolist()
        if repeated:
            raise DatasetError(f"{dataset}: CSV {path} lists these {unique} values more than once: {repeated[:10]}")
    return table


def _stem_patient(file: str) -> str:
    return Path(file).stem


def _is_flat(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "manifest.csv").is_file()


# --- folder ------------------------------------------------------------------------------------------------


def folder(
    root: PathLike,
    manifest_csv: PathLike | None = None,
    labels: Sequence[str] | None = None,
    patient_from: Callable[[str], str] | None = None,
    dataset: str = "folder",
    *,
    require_masks: bool = False,
    check_sizes: bool = True,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """The flat layout of the project's real-image subsets and of the phantoms: `images/`, `masks/`, `manifest.csv`.

    Manifest columns: `file` (name inside `images/`) and `label` are required. Optional: `patient` (else
    `patient_from(file)`, by default the file's stem: one patient per image), `mask` (name(s) inside `masks/`,
    `";"`-joined for several parts; empty for none). Without a `mask` column, `masks/<file>` is used when it
    exists. Every other column is passed through unchanged (strings).

    Args:
        root: the folder holding `images/` and `manifest.csv` (and `masks/`).
        manifest_csv: manifest path (default `root/manifest.csv`; relative paths are taken from `root`).
        labels: the known label set; labels outside it raise. `None` accepts any label.
        patient_from: function from the file name to the patient id, used when there is no `patient` column.
        dataset: value of the `dataset` column.
        require_masks: every image must have a mask.
        check_sizes: image and mask sizes must agree (from headers).
        check_files: read headers to find unreadable files now.
        on_error: `"raise"` or `"skip"` (see the module docstring).

    Returns:
        DataFrame with the standard columns plus the manifest's other columns.

    Raises:
        DatasetError: wrong root, missing manifest or columns, duplicated files, labels outside `labels`,
            row problems with `on_error="raise"`.
    """
    checks = Checks(require_masks, check_sizes, check_files, on_error)
    root = _dir(root, dataset, "a folder with images/, masks/ and manifest.csv")
    manifest = Path(manifest_csv) if manifest_csv is not None else root / "manifest.csv"
    if not manifest.is_absolute():
        manifest = root / manifest
    if not (root / "images").is_dir():
        raise DatasetError(f"{dataset}: expected {root / 'images'} (flat layout); found {_listing(root)}")
    table = _read_csv(manifest, dataset, ("file", "label"), unique="file")
    if labels is not None:
        _check_labels(table["label"], labels, dataset, str(manifest))
    patient_from = patient_from or _stem_patient
    masks_dir = root / "masks"
    rows = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        file = record.pop("file")
        escape = (_escape_problem(manifest, line, "file", [file], root / "images")
                  or _escape_problem(manifest, line, "mask", [str(p) for p in split_mask_parts(record.get("mask") or "")],
                                     masks_dir))
        if escape:
            checks.skipped.append(escape)
            continue
        row: dict[str, Any] = {"image": str(root / "images" / file), "label": record.pop("label")}
        row["patient"] = record.pop("patient", "") or patient_from(file)
        mask_names = record.pop("mask", None)
        if mask_names is None:
            candidate = masks_dir / file
            row["mask"] = str(candidate) if candidate.is_file() else ""
        else:
            row["mask"] = _join_mask([masks_dir / name for name in split_mask_parts(mask_names)])
        row["_expected_mask"] = str(masks_dir / file)
        row["file"] = file
        row.update(record)
        rows.append(row)
    return _finish(rows, dataset, root, checks)


# --- Montgomery --------------------------------------------------------------------------------------------

_MONTGOMERY = re.compile(r"MCUCXR_(?P<id>\d{4})_(?P<label>[01])")
_SHENZHEN = re.compile(r"CHNCXR_(?P<id>\d{4})_(?P<label>[01])")
_TB_LABELS = {"0": "normal", "1": "abnormal"}


def _descend(root: Path, names: Sequence[str], marker: str) -> Path:
    """Accept the dataset folder or its parent (e.g. `.../MontgomerySet` or `...`)."""
    if (root / marker).exists():
        return root
    for name in names:
        if (root / name / marker).exists():
            return root / name
    return root


def montgomery(
    root: PathLike,
    *,
    require_masks: bool = False,
    check_sizes: bool = True,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Montgomery County TB set (NLM): `CXR_png/MCUCXR_####_L.png` with `ManualMask/{leftMask,rightMask}/`.

    `L` is 0 (normal) or 1 (abnormal, TB). The mask is the union of the left and right lung files, stored as
    `"left;right"`; an image with only one of the two is a problem. Each image is one patient
    (`MCUCXR_####`). `root` may be `MontgomerySet/` or its parent. The flat layout (`images/`, `masks/`,
    `manifest.csv` with `file,label`, as in the Montgomery subset) is read with `folder` and the same
    label set.

    Args:
        root: dataset folder.
        require_masks, check_sizes, check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns plus `file`.

    Raises:
        DatasetError: see the module docstring.
    """
    checks = Checks(require_masks, check_sizes, check_files, on_error)
    root = _dir(root, "montgomery", "MontgomerySet/ with CXR_png/ and ManualMask/, or images/ + manifest.csv")
    root = _descend(root, ("MontgomerySet",), "CXR_png")
    if not (root / "CXR_png").is_dir() and _is_flat(root):
        return folder(root, labels=MONTGOMERY_LABELS, patient_from=_tb_patient, dataset="montgomery",
                      require_masks=require_masks, check_sizes=check_sizes, check_files=check_files,
                      on_error=on_error)
    if not (root / "CXR_png").is_dir():
        raise DatasetError(
            f"montgomery: expected CXR_png/ and ManualMask/ (or images/ + manifest.csv) in {root}; found "
            f"{_listing(root)}"
        )
    files, ignored = _image_files(root / "CXR_png", "montgomery", _MONTGOMERY)
    rows = []
    for path in files:
        match = _MONTGOMERY.fullmatch(path.stem)
        left = root / "ManualMask" / "leftMask" / path.name
        right = root / "ManualMask" / "rightMask" / path.name
        row = {"image": str(path), "label": _TB_LABELS[match["label"]], "patient": f"MCUCXR_{match['id']}",
               "file": path.name, "_expected_mask": f"{left} and {right}"}
        if left.is_file() and right.is_file():
            row["mask"] = _join_mask([left, right])
        elif left.is_file() or right.is_file():
            missing = right if left.is_file() else left
            checks.skipped.append((str(path), f"only one lung mask: {missing} is missing"))
            continue
        rows.append(row)
    return _finish(rows, "montgomery", root, checks, ignored)


def _tb_patient(file: str) -> str:
    stem = Path(file).stem
    match = _MONTGOMERY.fullmatch(stem) or _SHENZHEN.fullmatch(stem)
    return stem.rsplit("_", 1)[0] if match else stem


# --- Shenzhen ----------------------------------------------------------------------------------------------


def shenzhen(
    root: PathLike,
    masks_dir: PathLike | None = None,
    *,
    require_masks: bool = False,
    check_sizes: bool = True,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Shenzhen TB set: `CXR_png/CHNCXR_####_L.png` and lung masks `mask/CHNCXR_####_L_mask.png`.

    The public lung masks (Stirenko et al. 2018) cover 566 of the 662 images; images without a mask are kept
    for classification with `has_mask=False` unless `require_masks=True`. Masks are looked up in `masks_dir`
    (default: `mask/` or `masks/` under the root) as `<stem>_mask.png` or `<stem>.png`. `L` is 0 (normal) or
    1 (abnormal, TB); each image is one patient (`CHNCXR_####`). `root` may be `ChinaSet_AllFiles/` or its
    parent. The flat layout (`images/`, `masks/`, `manifest.csv`) is read with `folder`.

    Args:
        root: dataset folder.
        masks_dir: folder of the lung masks, if not under `root`.
        require_masks, check_sizes, check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns plus `file`.

    Raises:
        DatasetError: see the module docstring.
    """
    checks = Checks(require_masks, check_sizes, check_files, on_error)
    root = _dir(root, "shenzhen", "ChinaSet_AllFiles/ with CXR_png/ (and mask/), or images/ + manifest.csv")
    root = _descend(root, ("ChinaSet_AllFiles",), "CXR_png")
    if not (root / "CXR_png").is_dir() and _is_flat(root):
        return folder(root, labels=SHENZHEN_LABELS, patient_from=_tb_patient, dataset="shenzhen",
                      require_masks=require_masks, check_sizes=check_sizes, check_files=check_files,
                      on_error=on_error)
    if not (root / "CXR_png").is_dir():
        raise DatasetError(
            f"shenzhen: expected CXR_png/ (and mask/) or images/ + manifest.csv in {root}; found {_listing(root)}"
        )
    if masks_dir is not None:
        mask_folder = Path(masks_dir)
        if not mask_folder.is_dir():
            raise DatasetError(f"shenzhen: masks_dir {mask_folder} does not exist")
    else:
        mask_folder = next((root / name for name in ("mask", "masks") if (root / name).is_dir()), None)
    if mask_folder is None and require_masks:
        raise DatasetError(f"shenzhen: require_masks=True but there is no mask/ folder in {root}")
    files, ignored = _image_files(root / "CXR_png", "shenzhen", _SHENZHEN)
    rows = []
    for path in files:
        match = _SHENZHEN.fullmatch(path.stem)
        mask = ""
        if mask_folder is not None:
            candidates = (mask_folder / f"{path.stem}_mask.png", mask_folder / path.name)
            mask = next((str(c) for c in candidates if c.is_file()), "")
        rows.append({"image": str(path), "mask": mask, "label": _TB_LABELS[match["label"]],
                     "patient": f"CHNCXR_{match['id']}", "file": path.name,
                     "_expected_mask": str((mask_folder or root / "mask") / f"{path.stem}_mask.png")})
    frame = _finish(rows, "shenzhen", root, checks, ignored)
    logger.info("shenzhen: %d of %d images have a lung mask", int(frame["has_mask"].sum()), len(frame))
    return frame


# --- pediatric pneumonia (Kermany) -------------------------------------------------------------------------

_PERSON = re.compile(r"(?P<patient>person\d+)_(?P<kind>bacteria|virus)_\d+")
_NORMAL_IM = re.compile(r"(?P<patient>(?:NORMAL\d+-)?IM-\d+)-\d+(?:-\d+)*")
_KERMANY_CLASSES = {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}
_KERMANY_SPLITS = ("train", "test", "val")


def kermany_patient(file: str) -> str:
    """Patient id from a Kermany file name.

    `person1_bacteria_1.jpeg` -> `person1`; `IM-0115-0001.jpeg` -> `IM-0115`; `NORMAL2-IM-0381-0001.jpeg`
    -> `NORMAL2-IM-0381`. Any other name is its own patient (its stem).
    """
    stem = Path(file).stem
    match = _PERSON.fullmatch(stem) or _NORMAL_IM.fullmatch(stem)
    return match["patient"] if match else stem


def _kermany_label(stem: str, folder_class: str) -> str | None:
    if folder_class == "normal":
        return "normal"
    match = _PERSON.fullmatch(stem)
    if match is None:
        return None
    return "bacterial" if match["kind"] == "bacteria" else "viral"


def pediatric_pneumonia(
    root: PathLike,
    *,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Kermany pediatric pneumonia: `chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg`.

    Labels `normal`, `bacterial`, `viral` (bacterial vs viral from `personN_bacteria_M` / `personN_virus_M`;
    a PNEUMONIA file named otherwise is a problem) and `binary_label` `normal`/`pneumonia`; the official
    part is in `split`. Patient ids come from the file names (`kermany_patient`). `root` may be `chest_xray/`
    or any parent of it (the Kaggle archive nests `chest_xray/chest_xray/`). The flat layout of
    the Kermany subset (`images/` + `manifest.csv` with `file,label,...`) is read with
    `folder`, patients from the file names.

    Args:
        root: dataset folder.
        check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns plus `binary_label`, `split`, `file`.

    Raises:
        DatasetError: see the module docstring; also class folders other than NORMAL/PNEUMONIA (listed).
    """
    checks = Checks(False, False, check_files, on_error)
    root = _dir(root, "pediatric_pneumonia", "chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/ or images/ + manifest.csv")
    base = _find_kermany(root)
    if base is None and _is_flat(root):
        frame = folder(root, labels=PEDIATRIC_LABELS, patient_from=kermany_patient, dataset="pediatric_pneumonia",
                       check_sizes=False, check_files=check_files, on_error=on_error)
        if "binary_label" not in frame.columns:
            frame["binary_label"] = frame["label"].map(lambda label: "normal" if label == "normal" else "pneumonia")
        return frame
    if base is None:
        raise DatasetError(
            f"pediatric_pneumonia: expected chest_xray/{{train,test,val}}/{{NORMAL,PNEUMONIA}}/ (or images/ + "
            f"manifest.csv) under {root}; found {_listing(root)}"
        )
    rows, ignored, unknown = [], [], Counter()
    for split in _KERMANY_SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if class_dir.name not in _KERMANY_CLASSES:
                unknown[f"{split}/{class_dir.name}"] += 1
                continue
            folder_class = _KERMANY_CLASSES[class_dir.name]
            files, skipped_names = _image_files(class_dir, "pediatric_pneumonia")
            ignored.extend(skipped_names)
            for path in files:
                label = _kermany_label(path.stem, folder_class)
                if label is None:
                    checks.skipped.append((str(path), "PNEUMONIA file not named personN_bacteria_M or personN_virus_M"))
                    continue
                rows.append({"image": str(path), "mask": "", "label": label, "patient": kermany_patient(path.name),
                             "binary_label": folder_class, "split": split, "file": path.name})
    if unknown:
        raise DatasetError(
            f"pediatric_pneumonia: class folders outside the known set ['NORMAL', 'PNEUMONIA'] under {base}: "
            f"{sorted(unknown)}"
        )
    return _finish(rows, "pediatric_pneumonia", base, checks, ignored)


def _find_kermany(root: Path) -> Path | None:
    """The folder holding train/ (and test/) with NORMAL/ or PNEUMONIA/ inside, searched a few levels down."""
    queue = [root]
    for _ in range(4):
        next_queue = []
        for folder_ in queue:
            if any((folder_ / split / cls).is_dir() for split in _KERMANY_SPLITS for cls in _KERMANY_CLASSES):
                return folder_
            next_queue.extend(p for p in sorted(folder_.iterdir()) if p.is_dir() and not p.name.startswith(("_", ".")))
        queue = next_queue
    return None


# --- JSRT --------------------------------------------------------------------------------------------------

_JSRT = re.compile(r"JPC(?P<kind>LN|NN)\d{3}")
_JSRT_LABELS = {"LN": "nodule", "NN": "non_nodule"}


def _scr_masks(masks_root: Path) -> dict[str, dict[str, Path]]:
    """Index SCR lung masks: `{stem: {"left": path, "right": path, "fold": "fold1"}}`.

    SCR ships `fold1/masks/left lung/JPCLN001.gif` and `.../right lung/...` (and fold2); any depth is
    accepted, as are PNG copies with the same names.
    """
    index: dict[str, dict[str, Any]] = {}
    for side in ("left", "right"):
        for lung_dir in masks_root.rglob(f"{side} lung"):
            if not lung_dir.is_dir():
                continue
            fold = next((part for part in lung_dir.parts if re.fullmatch(r"fold\d+", part)), "")
            for path in lung_dir.iterdir():
                if path.suffix.lower() in (".gif", ".png", ".bmp", ".tif") and _JSRT.fullmatch(path.stem):
                    entry = index.setdefault(path.stem, {})
                    entry[side] = path
                    if fold:
                        entry["fold"] = fold
    return index


def jsrt(
    root: PathLike,
    masks_root: PathLike | None = None,
    prefer: str = "img",
    *,
    require_masks: bool = False,
    check_sizes: bool = True,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """JSRT radiographs (`JPCLN###` nodule, `JPCNN###` non-nodule) with SCR left/right lung masks.

    Images are the raw `.IMG` files (2048x2048, 12-bit big-endian, see `readers.RawFormat`) and/or PNG
    copies with the same stems, anywhere under `root` (e.g. `All247images/`); with both present `prefer`
    picks `"img"` or `"png"`. Masks come from the SCR database under `masks_root` (`fold*/masks/left lung/`
    and `right lung/`, GIF or PNG) and are stored as `"left;right"`; SCR masks are 1024x1024, half the raw
    size, which the size check accepts (same aspect ratio, whole factor). Each image is one patient. Extra
    column `fold` (SCR fold) when known. The flat layout of the JSRT subset (`images/`, `masks/`,
    `manifest.csv` with `file,label,split`) is read with `folder`.

    Args:
        root: folder of the JSRT images.
        masks_root: SCR folder (may be inside `root`; default: `root` is searched too).
        prefer: `"img"` or `"png"` when both exist for a stem.
        require_masks, check_sizes, check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns plus `file` (and `fold`).

    Raises:
        DatasetError: see the module docstring.
    """
    if prefer not in ("img", "png"):
        raise ValueError(f"prefer must be 'img' or 'png', got {prefer!r}")
    checks = Checks(require_masks, check_sizes, check_files, on_error, mask_scale_ok=True)
    root = _dir(root, "jsrt", "JSRT .IMG (or PNG) files named JPCLN###/JPCNN###, or images/ + manifest.csv")
    if _is_flat(root) and masks_root is None:
        return folder(root, labels=JSRT_LABELS, dataset="jsrt", require_masks=require_masks,
                      check_sizes=check_sizes, check_files=check_files, on_error=on_error)
    images: dict[str, Path] = {}
    for path in sorted(root.rglob("JPC*")):
        suffix = path.suffix.lower()
        if suffix not in (".img", ".png") or not _JSRT.fullmatch(path.stem) or _in_mask_tree(path):
            continue
        if path.stem not in images or suffix == f".{prefer}":
            images[path.stem] = path
    if not images:
        raise DatasetError(f"jsrt: expected JPCLN###/JPCNN### .IMG or .png files under {root}; found {_listing(root)}")
    if masks_root is not None:
        masks_root = _dir(masks_root, "jsrt", "the SCR folder with fold*/masks/left lung/ and right lung/")
    masks = _scr_masks(masks_root or root)
    if masks_root is not None and not masks:
        raise DatasetError(f"jsrt: no 'left lung'/'right lung' mask folders with JPC*.gif files under {masks_root}")
    rows = []
    for stem, path in sorted(images.items()):
        entry = masks.get(stem, {})
        row = {"image": str(path), "mask": "", "label": _JSRT_LABELS[_JSRT.fullmatch(stem)["kind"]],
               "patient": stem, "file": path.name, "fold": entry.get("fold", ""),
               "_expected_mask": f"'left lung/{stem}.gif' and 'right lung/{stem}.gif' under {masks_root or root}"}
        if "left" in entry and "right" in entry:
            row["mask"] = _join_mask([entry["left"], entry["right"]])
        elif entry:
            checks.skipped.append((str(path), f"only the {'left' if 'left' in entry else 'right'} lung mask was found"))
            continue
        rows.append(row)
    return _finish(rows, "jsrt", root, checks)


def _in_mask_tree(path: Path) -> bool:
    return any(part.endswith(" lung") or part in ("masks", "mask") for part in path.parts[:-1])


# --- RSNA --------------------------------------------------------------------------------------------------

_RSNA_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")


def rsna(
    root: PathLike,
    stage: int = 2,
    include_unlabeled: bool = False,
    *,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Kaggle RSNA Pneumonia Detection: `stage_2_train_images/*.dcm` + `stage_2_train_labels.csv`.

    The CSV has one row per box (`patientId,x,y,width,height,Target`; several rows for a patient with
    several opacities, one row with empty box for `Target=0`). One DataFrame row per image: `label`
    `lung_opacity` (Target 1) or `no_lung_opacity`, `target` (int), `boxes` (list of `(x, y, width, height)`
    in pixels of the 1024x1024 image), `n_boxes`, and `class_detail` from `stage_2_detailed_class_info.csv`
    when present. Each image is one patient. DICOM files with no row in the CSV are kept with label
    `unlabeled` when `include_unlabeled`, otherwise reported in `df.attrs["ignored"]` and the log.

    Args:
        root: the competition folder.
        stage: 2 (default) or 1, the file-name prefix.
        include_unlabeled: keep DICOM files the CSV does not list (useful for unsupervised source training).
        check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns plus `target`, `boxes`, `n_boxes`, `file` (and `class_detail`).

    Raises:
        DatasetError: missing folder or CSV, missing CSV columns, Target outside {0, 1}, a patient with both
            Target values, boxes with missing coordinates, row problems with `on_error="raise"`.
    """
    checks = Checks(False, False, check_files, on_error)
    prefix = f"stage_{stage}_train"
    root = _dir(root, "rsna", f"{prefix}_images/ and {prefix}_labels.csv")
    image_dir, labels_csv = root / f"{prefix}_images", root / f"{prefix}_labels.csv"
    if not image_dir.is_dir() or not labels_csv.is_file():
        raise DatasetError(f"rsna: expected {prefix}_images/ and {prefix}_labels.csv in {root}; found {_listing(root)}")
    table = _read_csv(labels_csv, "rsna", _RSNA_COLUMNS)
    bad_target = sorted(set(table["Target"]) - {"0", "1"})
    if bad_target:
        raise DatasetError(f"rsna: Target values outside the known set ['0', '1'] in {labels_csv}: {bad_target}")
    per_patient = table.groupby("patientId", sort=True)
    mixed = [pid for pid, group in per_patient if group["Target"].nunique() > 1]
    if mixed:
        raise DatasetError(f"rsna: patients with both Target 0 and 1 in {labels_csv}: {mixed[:10]}")
    details = _rsna_details(root / f"stage_{stage}_detailed_class_info.csv")
    rows = []
    for pid, group in per_patient:
        if _escapes(image_dir, f"{pid}.dcm") or "/" in pid or "\\" in pid:
            line = int(group.index[0]) + 2
            checks.skipped.append((f"{labels_csv} line {line}",
                                   f"patientId {pid!r} is not a plain file name inside {image_dir}"))
            continue
        target = int(group["Target"].iloc[0])
        boxes = []
        if target == 1:
            coords = group[["x", "y", "width", "height"]]
            if (coords == "").any(axis=None):
                raise DatasetError(f"rsna: patient {pid} has Target 1 with an empty box in {labels_csv}")
            boxes = [tuple(float(v) for v in box) for box in coords.itertuples(index=False)]
        row = {"image": str(image_dir / f"{pid}.dcm"), "mask": "", "label": RSNA_LABELS[0 if target else 1],
               "patient": pid, "target": target, "boxes": boxes, "n_boxes": len(boxes), "file": f"{pid}.dcm"}
        if details is not None:
            row["class_detail"] = details.get(pid, "")
        rows.append(row)
    listed = set(per_patient.groups)
    unlisted = sorted(str(p) for p in image_dir.glob("*.dcm") if p.stem not in listed)
    if include_unlabeled:
        rows.extend({"image": path, "mask": "", "label": "unlabeled", "patient": Path(path).stem, "target": -1,
                     "boxes": [], "n_boxes": 0, "file": Path(path).name} for path in unlisted)
        unlisted = []
    return _finish(rows, "rsna", root, checks, unlisted)


def _rsna_details(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    table = _read_csv(path, "rsna", ("patientId", "class"))
    return dict(zip(table["patientId"], table["class"], strict=True))


# --- Doppler -----------------------------------------------------------------------------------------------

DOPPLER_COLUMNS = {"image": "image", "mask": "mask", "flow": "flow", "quality": "quality", "patient": "patient"}


def doppler(
    root: PathLike,
    manifest_csv: PathLike | None = None,
    columns: dict[str, str] | None = None,
    flows: Sequence[str] = DOPPLER_FLOWS,
    qualities: Sequence[str] = DOPPLER_QUALITIES,
    *,
    require_masks: bool = False,
    check_sizes: bool = True,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Spectral Doppler frames listed in a CSV (the private-style layout of the UMS-Rep Doppler data).

    CSV columns (rename with `columns={"image": "your_name", ...}`):

    - `image`: image path, relative to `root` (or absolute);
    - `mask`: envelope mask path, relative to `root` (empty: none; `";"` joins parts);
    - `flow`: flow type, one of `flows` (MV inflow, MA tissue Doppler, TR jet) -> the `label` column;
    - `quality`: one of `qualities` (`low`, `good`, `empty` for a frame without a usable spectrum) or
      empty when the frame has no quality label (the papers have quality for 814 of 2,444 images);
    - `patient`: patient id.

    Every other CSV column is passed through. A CSV in the flat layout (`file,label`, images in `images/`,
    masks in `masks/`, as the Doppler subset `doppler_tte47`) is accepted too: `file` and `label` stand for
    `image` and `flow`, and `patient` defaults to the file stem.

    Args:
        root: folder the CSV paths are relative to.
        manifest_csv: the CSV (default `root/manifest.csv`; relative paths are taken from `root`).
        columns: map from the standard names above to the CSV's names.
        flows: known flow types.
        qualities: known quality labels (empty is always allowed).
        require_masks, check_sizes, check_files, on_error: see `folder`.

    Returns:
        DataFrame with the standard columns (`label` = flow) plus `flow`, `quality`, and the CSV's others.

    Raises:
        DatasetError: see the module docstring; flows or qualities outside the known sets are listed.
    """
    checks = Checks(require_masks, check_sizes, check_files, on_error)
    root = _dir(root, "doppler", "a folder with the Doppler images and a manifest CSV")
    manifest = Path(manifest_csv) if manifest_csv is not None else root / "manifest.csv"
    if not manifest.is_absolute():
        manifest = root / manifest
    names = {**DOPPLER_COLUMNS, **(columns or {})}
    unknown_keys = sorted(set(names) - set(DOPPLER_COLUMNS))
    if unknown_keys:
        raise ValueError(f"columns has unknown key(s) {unknown_keys}; expected some of {list(DOPPLER_COLUMNS)}")
    table = _read_csv(manifest, "doppler", ())
    flat = names["image"] not in table.columns and {"file", "label"} <= set(table.columns)
    if flat:
        names.update(image="file", flow="label")
    table = _read_csv(manifest, "doppler", (names["image"], names["flow"]), unique=names["image"])
    _check_labels(table[names["flow"]], flows, "doppler", f"column {names['flow']!r} of {manifest}")
    if names["quality"] in table.columns:
        _check_labels((q for q in table[names["quality"]] if q), qualities, "doppler",
                      f"column {names['quality']!r} of {manifest}")
    image_base = root / "images" if flat else root
    mask_base = root / "masks" if flat else root
    rows = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        image = record.pop(names["image"])
        flow = record.pop(names["flow"])
        escape = (_escape_problem(manifest, line, names["image"], [image], image_base)
                  or _escape_problem(manifest, line, names["mask"],
                                     [str(p) for p in split_mask_parts(record.get(names["mask"]) or "")], mask_base))
        if escape:
            checks.skipped.append(escape)
            continue
        row: dict[str, Any] = {"image": str(image_base / image), "label": flow}
        row["patient"] = record.pop(names["patient"], "") or Path(image).stem
        mask = record.pop(names["mask"], "")
        if not mask and flat and (mask_base / image).is_file():
            mask = image
        row["mask"] = _join_mask([mask_base / part for part in split_mask_parts(mask)]) if mask else ""
        row["flow"] = flow
        row["quality"] = record.pop(names["quality"], "")
        row["_expected_mask"] = f"a {names['mask']!r} entry in {manifest}"
        row.update(record)
        rows.append(row)
    return _finish(rows, "doppler", root, checks)


# --- registry ----------------------------------------------------------------------------------------------

ADAPTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "rsna": rsna,
    "montgomery": montgomery,
    "shenzhen": shenzhen,
    "pediatric_pneumonia": pediatric_pneumonia,
    "kermany": pediatric_pneumonia,
    "jsrt": jsrt,
    "doppler": doppler,
    "folder": folder,
}


def load(name: str, root: PathLike, **kwargs: Any) -> pd.DataFrame:
    """Run the adapter registered as `name` (see `ADAPTERS`) on `root`.

    Raises:
        DatasetError: unknown adapter name (the known ones are listed), or whatever the adapter raises.
    """
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[name](root, **kwargs)
