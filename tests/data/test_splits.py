"""Tests for urep.data.splits: patient-level train/val/test and k-fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from urep.data.splits import label_budget, patient_kfold, patient_split


def table(n_patients: int = 40, seed: int = 0, labels=("normal", "abnormal")) -> pd.DataFrame:
    """Patients with 1-4 images each; each patient has one label (the first label for 60% of patients)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = labels[0] if rng.random() < 0.6 else labels[1]
        for view in range(int(rng.integers(1, 5))):
            rows.append({"image": f"p{p}_{view}.png", "patient": f"P{p:03d}", "label": label})
    return pd.DataFrame(rows)


def patients(df: pd.DataFrame) -> set[str]:
    return set(df["patient"])


def test_split_is_disjoint_complete_and_sized_by_patients():
    df = table(40)
    parts = patient_split(df)
    assert set(parts) == {"train", "val", "test"}
    train, val, test = (patients(parts[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == patients(df)
    assert (len(train), len(val), len(test)) == (28, 8, 4)
    assert sum(len(part) for part in parts.values()) == len(df)
    assert parts["train"].attrs["stratified"] is True


def test_split_is_stratified_and_reproducible():
    df = table(200, seed=3)
    parts = patient_split(df, seed=5)
    overall = df.drop_duplicates("patient")["label"].value_counts(normalize=True)["normal"]
    for part in parts.values():
        share = part.drop_duplicates("patient")["label"].value_counts(normalize=True)["normal"]
        assert abs(share - overall) < 0.05
    again = patient_split(df, seed=5)
    other = patient_split(df, seed=6)
    assert all(parts[k].index.equals(again[k].index) for k in parts)
    assert not parts["test"].index.equals(other["test"].index)


def test_split_custom_fractions_and_empty_test():
    parts = patient_split(table(20), fractions=(0.8, 0.2, 0.0))
    assert len(patients(parts["test"])) == 0 and len(patients(parts["val"])) == 4
    assert len(patients(parts["train"])) == 16


def test_split_falls_back_when_a_label_is_too_rare(caplog):
    df = table(30)
    df.loc[df["patient"] == "P000", "label"] = "rare"
    parts = patient_split(df)
    assert parts["train"].attrs["stratified"] is False
    assert "cannot stratify" in caplog.text
    assert not (patients(parts["train"]) & patients(parts["test"]))


def test_split_unstratified_needs_no_label():
    df = table(10).drop(columns="label")
    parts = patient_split(df, stratify=False)
    assert sum(len(patients(p)) for p in parts.values()) == 10


def test_split_errors():
    df = table(2)
    with pytest.raises(ValueError, match=r"cannot split 2 patient\(s\) into 3 non-empty parts"):
        patient_split(df)
    with pytest.raises(ValueError, match="fractions must sum to 1"):
        patient_split(table(10), fractions=(0.5, 0.2, 0.1))
    with pytest.raises(ValueError, match="three non-negative numbers"):
        patient_split(table(10), fractions=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['patient'\]"):
        patient_split(table(10).drop(columns="patient"))
    blank = table(10)
    blank.loc[0, "patient"] = ""
    with pytest.raises(ValueError, match=r"1 row\(s\) have no 'patient' value"):
        patient_split(blank)
    with pytest.raises(ValueError, match="empty table"):
        patient_split(table(10).iloc[:0])


def test_kfold_every_patient_validated_once():
    df = table(50)
    folds = patient_kfold(df, k=10)
    assert len(folds) == 10
    seen = []
    for train, val in folds:
        assert not (patients(train) & patients(val))
        assert patients(train) | patients(val) == patients(df)
        assert len(train) + len(val) == len(df)
        seen.extend(patients(val))
    assert sorted(seen) == sorted(patients(df))
    share = [val["label"].eq("normal").mean() for _, val in folds]
    assert np.std(share) < 0.25


def test_kfold_unstratified_and_reproducible():
    df = table(12)
    a = patient_kfold(df, k=4, stratify=False, seed=1)
    b = patient_kfold(df, k=4, stratify=False, seed=1)
    assert [v.index.tolist() for _, v in a] == [v.index.tolist() for _, v in b]
    assert sorted(p for _, v in a for p in patients(v)) == sorted(patients(df))


def test_kfold_errors():
    with pytest.raises(ValueError, match=r"cannot make 10 folds from 5 patient\(s\)"):
        patient_kfold(table(5), k=10)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        patient_kfold(table(5), k=1)


def test_real_shenzhen_split(shared_data):
    from urep.data.datasets import shenzhen

    df = shenzhen(shared_data / "shenzhen", check_files=False, check_sizes=False)
    parts = patient_split(df, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 105, "val": 30, "test": 15}
    for train, val in patient_kfold(df, k=10):
        assert not (patients(train) & patients(val))


def test_label_budget_splits_reproducibly_and_stratifies():
    images = np.arange(30)[:, None]
    labels = np.array([0] * 20 + [1] * 10)
    (li, ll), (ui, ul) = label_budget((images, labels), 9, seed=3, stratify=labels)
    assert len(li) == 9 and len(ui) == 21
    assert set(li[:, 0]) | set(ui[:, 0]) == set(range(30)) and not set(li[:, 0]) & set(ui[:, 0])
    assert np.bincount(ll).tolist() == [6, 3]
    again, _ = label_budget((images, labels), 9, seed=3, stratify=labels)
    np.testing.assert_array_equal(again[0], li)
    other, _ = label_budget((images, labels), 9, seed=4, stratify=labels)
    assert not np.array_equal(other[0], li)
    frame = pd.DataFrame({"image": [f"{i}.png" for i in range(30)], "label": labels})
    labelled, unlabelled = label_budget(frame, 10, seed=0, stratify="label")
    assert len(labelled) == 10 and len(unlabelled) == 20 and labelled["label"].sum() in (3, 4)
    everything, none = label_budget(images, "all")
    assert len(everything) == 30 and len(none) == 0
    with pytest.raises(ValueError, match="label budget n"):
        label_budget(images, 31)
    with pytest.raises(ValueError, match="share their first dimension"):
        label_budget((images, labels[:5]), 3)
