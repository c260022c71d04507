"""The splitters `urep run` uses (`urep.experiments.sources`): patient-level train/val/test and k folds."""

from __future__ import annotations

import numpy as np
import pytest

from urep.experiments.sources import patient_folds, patient_split


def patients_with_images(n_patients: int, per_patient=(1, 2, 3)) -> np.ndarray:
    counts = [per_patient[i % len(per_patient)] for i in range(n_patients)]
    return np.repeat([f"p{i:03d}" for i in range(n_patients)], counts)


def test_split_parts_are_disjoint_by_patient_and_cover_every_row():
    patients = patients_with_images(60)
    train, val, test = patient_split(patients, (0.7, 0.2, 0.1), seed=0)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(patients)))
    groups = [set(patients[part]) for part in (train, val, test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    # cut by cumulative image count: within one patient (at most 3 images) of 70/20/10 of 120 images
    assert abs(len(train) - 84) <= 3 and abs(len(val) - 24) <= 3 and abs(len(test) - 12) <= 3


def test_split_is_reproducible_and_depends_on_the_seed():
    patients = patients_with_images(40)
    first = patient_split(patients, (0.7, 0.2, 0.1), seed=5)
    again = patient_split(patients, (0.7, 0.2, 0.1), seed=5)
    other = patient_split(patients, (0.7, 0.2, 0.1), seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_every_part_gets_a_patient_when_there_are_three():
    patients = np.array(["a", "a", "b", "c", "c", "c"])
    train, val, test = patient_split(patients, (0.7, 0.2, 0.1), seed=0)
    assert [len(set(patients[p])) for p in (train, val, test)] == [1, 1, 1]


def test_no_test_fraction_gives_an_empty_test_part():
    patients = patients_with_images(20)
    train, val, test = patient_split(patients, (0.8, 0.2, 0.0), seed=1)
    assert len(test) == 0 and len(train) + len(val) == len(patients)
    assert not set(patients[train]) & set(patients[val])


def test_split_ignores_labels_by_design():
    """The train/val/test split is not stratified (the journal's 70/20/10 is by patient only)."""
    patients = patients_with_images(30)
    labels = np.arange(len(patients)) % 2
    with_labels = patient_split(patients, (0.7, 0.2, 0.1), seed=2, labels=labels)
    without = patient_split(patients, (0.7, 0.2, 0.1), seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(with_labels, without, strict=True))


def test_folds_validate_every_patient_exactly_once_and_never_mix_patients():
    patients = patients_with_images(25)
    folds = patient_folds(patients, 5, seed=0)
    assert len(folds) == 5
    validated = np.concatenate([val for _, val in folds])
    assert sorted(validated.tolist()) == list(range(len(patients)))
    for train, val in folds:
        assert not set(patients[train]) & set(patients[val])
        assert len(train) + len(val) == len(patients)


def test_folds_are_stratified_on_labels():
    """90 patients, one image each, labels 2:1: every validation fold keeps the 2:1 ratio (10 vs 5 of 15)."""
    patients = np.array([f"p{i}" for i in range(90)])
    labels = np.array([0, 0, 1] * 30)
    for _, val in patient_folds(patients, 6, seed=3, labels=labels):
        counts = np.bincount(labels[val], minlength=2)
        assert counts.tolist() == [10, 5]


def test_unstratified_folds_are_reproducible_and_seeded():
    patients = patients_with_images(20)
    first = [val.tolist() for _, val in patient_folds(patients, 4, seed=1)]
    assert first == [val.tolist() for _, val in patient_folds(patients, 4, seed=1)]
    assert first != [val.tolist() for _, val in patient_folds(patients, 4, seed=2)]


def test_more_folds_than_patients_is_an_error():
    with pytest.raises(ValueError, match="5-fold cross-validation needs at least 5 patients, got 3"):
        patient_folds(np.array(["a", "b", "c", "c"]), 5, seed=0)
