"""Site-shift probes: the AUCs answer the questions they name, on data built to have a known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urep.cli import main
from urep.experiments.site_shift import SiteImages, cross_validated_probabilities, site_shift_table
from urep.metrics import classification_scores


def make_site(name: str, n: int, seed: int, offset: float, signal: str, masks: bool = True) -> SiteImages:
    """`n` 16x16 images of one site: the site adds `offset` everywhere; the label is a bright square inside the
    "lungs" (`signal="lungs"`, the mask's left half) or outside them (`signal="outside"`)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(0.4 + offset, 0.05, size=(n, 16, 16, 1)).astype(np.float32)
    mask = np.zeros((16, 16, 1), np.float32)
    mask[:, :8] = 1.0
    rows = slice(4, 10)
    cols = slice(2, 6) if signal == "lungs" else slice(10, 14)
    images[labels == 1, rows, cols] += 0.3
    patients = np.array([f"p{i}" for i in range(n)])
    return SiteImages(name, images, labels, patients, np.repeat(mask[None], n, axis=0) if masks else None)


def auc(table, question, view="whole"):
    row = table[(table["question"] == question) & (table["images"] == view)]
    assert len(row) == 1, (question, view, table)
    return float(row["auc"].iloc[0])


def test_questions_have_their_known_answers():
    # The label lives in the lungs on both sites; the sites differ by a global offset.
    source = make_site("a", 60, 0, 0.0, "lungs")
    target = make_site("b", 40, 1, 0.2, "lungs")
    table = site_shift_table(source, target, folds=4, components=5, size=16)
    assert auc(table, "site: a vs b") > 0.95
    assert auc(table, "in-site a") > 0.95
    assert auc(table, "in-site b") > 0.95
    assert auc(table, "across sites: a -> b", "lungs only") > 0.9
    assert set(table["images"]) == {"whole", "lungs only"}
    assert table.loc[table["question"] == "across sites: a -> b", "n_test"].tolist() == [40, 40]
    assert table.loc[table["question"] == "across sites: a -> b", "n_train"].tolist() == [60, 60]


def test_a_cue_outside_the_lungs_vanishes_in_the_lungs_only_rows():
    source = make_site("a", 60, 0, 0.0, "outside")
    target = make_site("b", 40, 1, 0.0, "outside")
    table = site_shift_table(source, target, folds=4, components=5, size=16)
    assert auc(table, "in-site a") > 0.95
    assert auc(table, "in-site a", "lungs only") < 0.75
    # Same intensity distribution on both sites: the probe cannot tell them apart.
    assert auc(table, "site: a vs b") < 0.75


def test_without_masks_only_whole_image_rows():
    table = site_shift_table(make_site("a", 40, 0, 0.0, "lungs", masks=False), make_site("b", 20, 1, 0.1, "lungs"),
                             folds=4, components=5, size=16)
    assert set(table["images"]) == {"whole"}
    assert len(table) == 4


def test_cross_validation_scores_every_image_out_of_fold():
    site = make_site("a", 40, 0, 0.0, "lungs")
    probs = cross_validated_probabilities(site.images, site.labels, site.patients, 2, folds=4, components=5,
                                          size=16)
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert classification_scores(site.labels, probs)["auc"] > 0.95


def test_bad_input_raises_with_the_offending_value():
    site = make_site("a", 6, 0, 0.0, "lungs")
    with pytest.raises(ValueError, match=r"needs >= 4 images of every class, got class counts \[3, 3\]"):
        cross_validated_probabilities(site.images, site.labels, site.patients, 2, folds=4)
    with pytest.raises(ValueError, match="folds >= 2, got 1"):
        cross_validated_probabilities(site.images, site.labels, site.patients, 2, folds=1)
    with pytest.raises(ValueError, match="site 'x': 6 images but 5 labels"):
        SiteImages("x", site.images, site.labels[:5], site.patients)
    with pytest.raises(ValueError, match="site 'x': no masks"):
        SiteImages("x", site.images, site.labels, site.patients).lungs_only()


def test_cli_on_phantom_sites(tmp_path, capsys):
    out = tmp_path / "shift.json"
    code = main(["site-shift", "cxr_heterogeneous_phantom", "--task", "abnormality_classification",
                 "--data-root", str(tmp_path), "--set", "image_size=[32,32]", "--folds", "3", "--size", "16",
                 "--components", "5", "--output", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["table"]
    questions = [row["question"] for row in rows]
    assert "across sites: shenzhen_phantoms -> montgomery_phantoms" in questions
    assert all(0.0 <= row["auc"] <= 1.0 for row in rows)
    assert "in-site montgomery_phantoms" in capsys.readouterr().out


def test_cli_refuses_a_segmentation_task(tmp_path):
    with pytest.raises(SystemExit, match="urep site-shift: task 'lung_segmentation': site shift needs a "
                                         "classification task"):
        main(["site-shift", "cxr_heterogeneous_phantom", "--task", "lung_segmentation", "--data-root",
              str(tmp_path), "--set", "image_size=[32,32]"])


def test_cli_checks_the_output_file_before_reading_any_image(tmp_path):
    with pytest.raises(SystemExit, match=r"--output must end in .csv or .json, got '.*shift.txt'"):
        main(["site-shift", "cxr_heterogeneous_phantom", "--task", "abnormality_classification",
              "--output", str(tmp_path / "shift.txt")])
    existing = tmp_path / "shift.csv"
    existing.write_text("keep me", encoding="utf-8")
    with pytest.raises(SystemExit, match="shift.csv exists; pass --overwrite to replace it"):
        main(["site-shift", "cxr_heterogeneous_phantom", "--task", "abnormality_classification",
              "--output", str(existing)])
    assert existing.read_text(encoding="utf-8") == "keep me"
