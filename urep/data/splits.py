"""Splits: patient-level train/val/test and k-fold (no patient in two parts), and label budgets.

`patient_split` and `patient_kfold` follow the papers' protocol (UMS-Rep journal, Section 3.1: 70/20/10 and
10 folds), stratified by label where the patients allow; part sizes are counted in patients. `label_budget`
draws a budget's labelled items, the rest serving as unlabelled (MultiMix, Haque et al. section 3.1).
Details of the fallbacks: docs/design.md ("Losses, metrics and splits").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold, train_test_split

logger = logging.getLogger(__name__)

PARTS = ("train", "val", "test")


def _check_table(df: pd.DataFrame, patient_column: str, label_column: str | None) -> None:
    needed = [patient_column] + ([label_column] if label_column else [])
    missing = [column for column in needed if column not in df.columns]
    if missing:
        raise ValueError(f"cannot split: the table lacks column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise ValueError("cannot split an empty table")
    blank = df[patient_column].isna() | (df[patient_column].astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(f"cannot split: {int(blank.sum())} row(s) have no {patient_column!r} value")


def _patient_labels(df: pd.DataFrame, patient_column: str, label_column: str) -> pd.Series:
    """One label per patient: the most frequent of the patient's images, ties broken alphabetically."""
    counts = df.groupby([patient_column, label_column], sort=True).size().reset_index(name="n")
    counts = counts.sort_values([patient_column, "n", label_column], ascending=[True, False, True])
    return counts.drop_duplicates(patient_column).set_index(patient_column)[label_column]


def _split_off(
    patients: np.ndarray, labels: np.ndarray | None, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split `count` patients off `patients`; returns (rest, taken, stratified)."""
    if labels is not None:
        try:
            rest, taken = train_test_split(patients, test_size=count, stratify=labels, random_state=seed)
            return np.asarray(rest), np.asarray(taken), True
        except ValueError as err:
            logger.warning("cannot stratify a split of %d patients by label (%s); splitting unstratified",
                           count, err)
    splitter = GroupShuffleSplit(n_splits=1, test_size=count, random_state=seed)
    rest_idx, taken_idx = next(splitter.split(patients, groups=patients))
    return patients[rest_idx], patients[taken_idx], False


def patient_split(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    seed: int = 0,
    stratify: bool = True,
    patient_column: str = "patient",
    label_column: str = "label",
) -> dict[str, pd.DataFrame]:
    """Split a dataset table into train/val/test by patient.

    Args:
        df: one row per image with a patient column (and a label column when stratifying).
        fractions: `(train, val, test)` fractions of patients, summing to 1; val or test may be 0 (that
            part is then empty).
        seed: random seed (same seed, same table -> same split).
        stratify: balance labels across parts where possible (see the module docstring).
        patient_column: column holding patient ids.
        label_column: column holding labels.

    Returns:
        `{"train": df, "val": df, "test": df}`, each a subset of `df` rows in their original order (index
        kept), `attrs["stratified"]` telling whether stratification was achieved.

    Raises:
        ValueError: bad fractions, missing columns, blank patient ids, or fewer patients than non-empty parts.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6) or fractions[0] <= 0:
        raise ValueError(f"fractions must sum to 1 with a positive train part, got {fractions}")
    _check_table(df, patient_column, label_column if stratify else None)
    patients = np.array(sorted(df[patient_column].astype(str).unique()))
    parts_needed = sum(f > 0 for f in fractions)
    if len(patients) < parts_needed:
        raise ValueError(
            f"cannot split {len(patients)} patient(s) into {parts_needed} non-empty parts {PARTS} with "
            f"fractions {fractions}; every part needs at least one patient"
        )
    n_test = max(1, round(fractions[2] * len(patients))) if fractions[2] > 0 else 0
    n_val = max(1, round(fractions[1] * len(patients))) if fractions[1] > 0 else 0
    if len(patients) - n_test - n_val < 1:
        n_val = max(0, len(patients) - n_test - 1)
    per_patient = _patient_labels(df.assign(**{patient_column: df[patient_column].astype(str)}),
                                  patient_column, label_column) if stratify else None
    stratified = stratify
    rest, test = patients, np.array([], dtype=patients.dtype)
    if n_test:
        labels = per_patient.loc[rest].to_numpy() if per_patient is not None else None
        rest, test, ok = _split_off(rest, labels, n_test, seed)
        stratified &= ok
    val = np.array([], dtype=patients.dtype)
    if n_val:
        labels = per_patient.loc[rest].to_numpy() if per_patient is not None else None
        rest, val, ok = _split_off(rest, labels, n_val, seed + 1)
        stratified &= ok
    ids = df[patient_column].astype(str)
    result = {}
    for name, members in zip(PARTS, (rest, val, test), strict=True):
        part = df[ids.isin(set(members))].copy()
        part.attrs = {**df.attrs, "stratified": bool(stratified), "part": name}
        result[name] = part
    logger.info("patient split (seed %d): %s patients", seed,
                ", ".join(f"{name} {len(m)}" for name, m in zip(PARTS, (rest, val, test), strict=True)))
    return result


def patient_kfold(
    df: pd.DataFrame,
    k: int = 10,
    seed: int = 0,
    stratify: bool = True,
    patient_column: str = "patient",
    label_column: str = "label",
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """K-fold cross-validation by patient.

    Args:
        df: one row per image with a patient column (and a label column when stratifying).
        k: number of folds (the papers use 10).
        seed: shuffling seed.
        stratify: `StratifiedGroupKFold` (label balance across folds, as far as patients allow) instead of
            `GroupKFold`.
        patient_column: column holding patient ids.
        label_column: column holding labels.

    Returns:
        `k` pairs `(train_df, val_df)`; every patient is in exactly one `val_df`.

    Raises:
        ValueError: `k < 2`, missing columns, blank patient ids, or fewer patients than folds.
    """
    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    _check_table(df, patient_column, label_column if stratify else None)
    groups = df[patient_column].astype(str).to_numpy()
    n_patients = len(set(groups))
    if n_patients < k:
        raise ValueError(f"cannot make {k} folds from {n_patients} patient(s); each fold needs at least one")
    if stratify:
        splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
        labels = df[label_column].astype(str).to_numpy()
    else:
        splitter = GroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
        labels = None
    folds = []
    for fold, (train_idx, val_idx) in enumerate(splitter.split(np.zeros(len(df)), labels, groups)):
        if len(val_idx) == 0:
            raise ValueError(f"fold {fold} of {k} came out empty for {n_patients} patients; use fewer folds")
        train, val = df.iloc[train_idx].copy(), df.iloc[val_idx].copy()
        train.attrs = {**df.attrs, "fold": fold, "part": "train"}
        val.attrs = {**df.attrs, "fold": fold, "part": "val"}
        folds.append((train, val))
    return folds


def label_budget(data: Any, n: int | str | None, seed: int = 0, stratify: Any = None) -> tuple[Any, Any]:
    """Split a training set into ``n`` labelled items and the rest (used as unlabelled), reproducibly.

    Args:
        data: a pandas DataFrame, a NumPy array, or a tuple of arrays sharing their first dimension
            (e.g. ``(images, masks)``).
        n: labelled items to keep (the paper: segmentation 10 / 50 / "all", classification 100 / 1000 / "all");
            ``"all"`` or None keeps everything labelled (the unlabelled part is then empty).
        seed: random seed of the draw.
        stratify: class labels to keep the class proportions in the labelled part (an array of length N, or
            for a DataFrame the name of a column); None = a uniform random draw (as the public code's
            ``random_split``).

    Returns:
        ``(labelled, unlabelled)`` of the same type as ``data``.

    Raises:
        ValueError: ``n`` is not a positive integer <= N (nor "all"/None), or the arrays disagree in length.
    """
    is_frame = isinstance(data, pd.DataFrame)
    if is_frame:
        length = len(data)
    elif isinstance(data, tuple):
        if not data:
            raise ValueError("label_budget got an empty tuple")
        lengths = {len(a) for a in data}
        if len(lengths) != 1:
            raise ValueError(f"label_budget: arrays must share their first dimension, got {sorted(lengths)}")
        length = lengths.pop()
    else:
        data = np.asarray(data)
        length = len(data)
    index = np.arange(length)
    if n is None or n == "all":
        labelled_idx, unlabelled_idx = index, index[:0]
    else:
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= length):
            raise ValueError(f"label budget n must be 'all' or an integer in [1, {length}], got {n!r}")
        labels = data[stratify].to_numpy() if is_frame and isinstance(stratify, str) else stratify
        if n == length:
            labelled_idx, unlabelled_idx = index, index[:0]
        else:
            labelled_idx, unlabelled_idx = train_test_split(index, train_size=n, random_state=seed, stratify=labels)
            labelled_idx, unlabelled_idx = np.sort(labelled_idx), np.sort(unlabelled_idx)

    def take(idx: np.ndarray) -> Any:
        if is_frame:
            return data.iloc[idx]
        if isinstance(data, tuple):
            return tuple(np.asarray(a)[idx] for a in data)
        return data[idx]

    return take(labelled_idx), take(unlabelled_idx)
