"""Tests for urep.data.datasets: each public layout mimicked in tmp dirs, every validation error, real data."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from dicom_files import write_dicom
from PIL import Image

from urep.data import DatasetError, read_image, read_mask
from urep.data import datasets as D


def png(path: Path, shape=(16, 16), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


def lung(path: Path, shape=(16, 16), side: str = "left") -> Path:
    values = np.zeros(shape, np.uint8)
    half = shape[1] // 2
    if side == "left":
        values[2:-2, 1:half - 1] = 255
    else:
        values[2:-2, half + 1 : -1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        Image.fromarray(values).save(path)
    else:
        assert cv2.imwrite(str(path), values)
    return path


def dicom(path: Path, shape=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_dicom(path, np.full(shape, 100, np.uint8), bits_stored=8)


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# --- Montgomery --------------------------------------------------------------------------------------------


@pytest.fixture
def montgomery_root(tmp_path) -> Path:
    """NLM layout: NLM-MontgomeryCXRSet/MontgomerySet/{CXR_png, ManualMask/{left,right}Mask, ClinicalReadings}."""
    root = tmp_path / "NLM-MontgomeryCXRSet" / "MontgomerySet"
    for name in ("MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0104_1"):
        png(root / "CXR_png" / f"{name}.png")
        lung(root / "ManualMask" / "leftMask" / f"{name}.png", side="left")
        lung(root / "ManualMask" / "rightMask" / f"{name}.png", side="right")
        (root / "ClinicalReadings").mkdir(exist_ok=True)
        (root / "ClinicalReadings" / f"{name}.txt").write_text("Patient's Sex: F\nPatient's Age: 040Y\n")
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"\x00" * 10)
    (root / "NLM-ChinaCXRSet-ReadMe.docx").write_bytes(b"doc")
    return root


def test_montgomery_nlm_layout(montgomery_root, caplog):
    with caplog.at_level(logging.WARNING):
        df = D.montgomery(montgomery_root.parent)  # the parent of MontgomerySet works too
    assert list(df.columns[:6]) == list(D.STANDARD_COLUMNS)
    assert df["label"].tolist() == ["normal", "normal", "abnormal"]
    assert df["patient"].tolist() == ["MCUCXR_0001", "MCUCXR_0002", "MCUCXR_0104"]
    assert (df["dataset"] == "montgomery").all() and df["has_mask"].all()
    left, right = df["mask"][0].split(";")
    assert Path(left).parent.name == "leftMask" and Path(right).parent.name == "rightMask"
    mask = read_mask(df["mask"][0])
    assert mask[8, 3] == 1 and mask[8, 12] == 1 and mask[0, 0] == 0  # union of both lungs
    assert df.attrs["skipped"] == [] and df.attrs["ignored"] == [str(montgomery_root / "CXR_png" / "Thumbs.db")]
    assert "ignored 1 file(s)" in caplog.text
    assert D.load("montgomery", montgomery_root).equals(df)


def test_montgomery_one_lung_missing_and_skip(montgomery_root, caplog):
    (montgomery_root / "ManualMask" / "rightMask" / "MCUCXR_0002_0.png").unlink()
    with pytest.raises(DatasetError, match=r"(?s)1 problem\(s\).*MCUCXR_0002_0\.png: only one lung mask: .*rightMask"):
        D.montgomery(montgomery_root)
    with caplog.at_level(logging.WARNING):
        df = D.montgomery(montgomery_root, on_error="skip")
    assert len(df) == 2 and "MCUCXR_0002" not in set(df["patient"])
    assert len(df.attrs["skipped"]) == 1 and "only one lung mask" in df.attrs["skipped"][0][1]
    assert "skipped 1 row(s)" in caplog.text


def test_montgomery_require_masks(montgomery_root):
    for side in ("leftMask", "rightMask"):
        (montgomery_root / "ManualMask" / side / "MCUCXR_0104_1.png").unlink()
    df = D.montgomery(montgomery_root)
    assert df["has_mask"].tolist() == [True, True, False] and df["mask"][2] == ""
    with pytest.raises(DatasetError, match=r"MCUCXR_0104_1\.png: no mask for this image \(expected .*leftMask"):
        D.montgomery(montgomery_root, require_masks=True)


def test_montgomery_size_mismatch_names_both(montgomery_root):
    png(montgomery_root / "CXR_png" / "MCUCXR_0002_0.png", shape=(20, 16))
    with pytest.raises(DatasetError, match=r"MCUCXR_0002_0\.png: image is 20x16 but its mask .*leftMask.*is 16x16"):
        D.montgomery(montgomery_root)
    assert len(D.montgomery(montgomery_root, check_sizes=False)) == 3


def test_montgomery_unreadable_image_skip_counts(montgomery_root):
    path = montgomery_root / "CXR_png" / "MCUCXR_0001_0.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"unreadable image .*truncated PNG"):
        D.montgomery(montgomery_root)
    df = D.montgomery(montgomery_root, on_error="skip")
    assert len(df) == 2 and df.attrs["skipped"][0][0] == str(path)


def test_wrong_root_and_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"montgomery: root folder .*nowhere does not exist; expected MontgomerySet/"):
        D.montgomery(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"expected CXR_png/ and ManualMask/ .* found readme\.txt"):
        D.montgomery(tmp_path / "other")
    (tmp_path / "empty" / "CXR_png").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"expected image files named like .*MCUCXR.* found an empty folder"):
        D.montgomery(tmp_path / "empty")
    file_root = tmp_path / "file.txt"
    file_root.write_text("x")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        D.shenzhen(file_root)


def test_on_error_value_checked(montgomery_root):
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        D.montgomery(montgomery_root, on_error="ignore")


# --- flat layout / folder ----------------------------------------------------------------------------------


@pytest.fixture
def flat_root(tmp_path) -> Path:
    root = tmp_path / "flat"
    rows = []
    for i, (label, patient) in enumerate([("normal", "p1"), ("normal", "p1"), ("abnormal", "p2")]):
        name = f"img_{i}.png"
        png(root / "images" / name)
        lung(root / "masks" / name)
        rows.append({"file": name, "label": label, "patient": patient, "mask": name, "view": f"v{i}"})
    write_csv(root / "manifest.csv", rows)
    return root


def test_folder_phantom_layout_passes_extra_columns(flat_root):
    df = D.folder(flat_root, labels=("normal", "abnormal"))
    assert df["patient"].tolist() == ["p1", "p1", "p2"]
    assert df["view"].tolist() == ["v0", "v1", "v2"] and df["file"][0] == "img_0.png"
    assert df["mask"][0] == str(flat_root / "masks" / "img_0.png") and df["has_mask"].all()
    assert read_image(df["image"][0]).shape == (16, 16)


def test_folder_masks_by_name_and_patient_from_stem(tmp_path):
    root = tmp_path / "f"
    png(root / "images" / "a.png")
    png(root / "images" / "b.png")
    lung(root / "masks" / "a.png")
    write_csv(root / "manifest.csv", [{"file": "a.png", "label": "x"}, {"file": "b.png", "label": "y"}])
    df = D.folder(root)
    assert df["has_mask"].tolist() == [True, False] and df["patient"].tolist() == ["a", "b"]
    with pytest.raises(DatasetError, match=r"b\.png: no mask for this image \(expected .*masks/b\.png\)"):
        D.folder(root, require_masks=True)


def test_folder_labels_outside_known_set_listed(flat_root):
    with pytest.raises(DatasetError, match=r"labels outside the known set \['normal'\] in .*manifest\.csv: 'abnormal' \(1\)"):
        D.folder(flat_root, labels=("normal",))


def test_folder_manifest_errors(tmp_path, flat_root):
    with pytest.raises(DatasetError, match=r"expected .*images \(flat layout\)"):
        D.folder(tmp_path)
    (flat_root / "manifest.csv").unlink()
    with pytest.raises(DatasetError, match=r"expected the CSV .*manifest\.csv; it does not exist"):
        D.folder(flat_root)
    write_csv(flat_root / "manifest.csv", [{"name": "img_0.png", "label": "a"}])
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['file'\]; expected at least \['file', 'label'\]"):
        D.folder(flat_root)
    write_csv(flat_root / "manifest.csv", [{"file": "img_0.png", "label": "a"}, {"file": "img_0.png", "label": "b"}])
    with pytest.raises(DatasetError, match=r"lists these file values more than once: \['img_0\.png'\]"):
        D.folder(flat_root)
    (flat_root / "manifest.csv").write_text("file,label\n")
    with pytest.raises(DatasetError, match="has a header but no rows"):
        D.folder(flat_root)


def test_folder_missing_image_and_mask_files(flat_root):
    (flat_root / "images" / "img_1.png").unlink()
    (flat_root / "masks" / "img_2.png").unlink()
    with pytest.raises(DatasetError, match=r"2 problem\(s\)") as info:
        D.folder(flat_root)
    reasons = dict(info.value.problems)
    assert reasons[str(flat_root / "images" / "img_1.png")] == "image file not found"
    assert reasons[str(flat_root / "masks" / "img_2.png")].startswith("mask file not found")
    df = D.folder(flat_root, on_error="skip")
    assert df["file"].tolist() == ["img_0.png"] and len(df.attrs["skipped"]) == 2


def test_every_row_bad_raises_even_when_skipping(flat_root):
    for path in (flat_root / "images").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="every row under .* had a problem"):
        D.folder(flat_root, on_error="skip")


def test_load_registry(flat_root):
    assert len(D.load("folder", flat_root)) == 3
    with pytest.raises(DatasetError, match=r"unknown dataset 'chexpert'; expected one of \["):
        D.load("chexpert", flat_root)


# --- Shenzhen ----------------------------------------------------------------------------------------------


@pytest.fixture
def shenzhen_root(tmp_path) -> Path:
    """ChinaSet_AllFiles/CXR_png + the public masks folder `mask/` with `_mask` names (not all images)."""
    root = tmp_path / "ChinaSet_AllFiles"
    for name in ("CHNCXR_0001_0", "CHNCXR_0002_0", "CHNCXR_0327_1", "CHNCXR_0328_1"):
        png(root / "CXR_png" / f"{name}.png")
    for name in ("CHNCXR_0001_0", "CHNCXR_0327_1"):
        lung(tmp_path / "mask" / f"{name}_mask.png")
    (root / "ClinicalReadings").mkdir()
    return root


def test_shenzhen_masks_partial_and_flagged(shenzhen_root):
    with pytest.raises(DatasetError, match="no mask/ folder"):
        D.shenzhen(shenzhen_root, require_masks=True)
    df = D.shenzhen(shenzhen_root, masks_dir=shenzhen_root.parent / "mask")
    assert df["label"].tolist() == ["normal", "normal", "abnormal", "abnormal"]
    assert df["has_mask"].tolist() == [True, False, True, False]
    assert df["mask"][0].endswith("CHNCXR_0001_0_mask.png") and df["patient"][2] == "CHNCXR_0327"
    with pytest.raises(DatasetError, match=r"(?s)2 problem\(s\).*CHNCXR_0002_0\.png: no mask for this image"):
        D.shenzhen(shenzhen_root, masks_dir=shenzhen_root.parent / "mask", require_masks=True)


def test_shenzhen_mask_folder_inside_root_and_parent_root(shenzhen_root):
    (shenzhen_root.parent / "mask").rename(shenzhen_root / "mask")
    df = D.shenzhen(shenzhen_root.parent)
    assert df["has_mask"].sum() == 2
    with pytest.raises(DatasetError, match="masks_dir .* does not exist"):
        D.shenzhen(shenzhen_root, masks_dir=shenzhen_root / "nope")


def test_shenzhen_flat_layout(tmp_path):
    root = tmp_path / "sz"
    png(root / "images" / "CHNCXR_0001_0.png")
    lung(root / "masks" / "CHNCXR_0001_0.png")
    write_csv(root / "manifest.csv", [{"file": "CHNCXR_0001_0.png", "label": "normal"}])
    df = D.shenzhen(root)
    assert df["patient"].tolist() == ["CHNCXR_0001"] and df["has_mask"].all() and df["dataset"][0] == "shenzhen"


# --- pediatric pneumonia -----------------------------------------------------------------------------------


def jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((12, 14), 90, np.uint8))
    return path


@pytest.fixture
def kermany_root(tmp_path) -> Path:
    """Kaggle archive: chest_xray/chest_xray/{train,test,val}/{NORMAL,PNEUMONIA} (+ __MACOSX junk)."""
    base = tmp_path / "archive" / "chest_xray" / "chest_xray"
    files = {
        "train/NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-0381-0001.jpeg", "IM-0117-0001.jpeg"],
        "train/PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person1000_virus_1681.jpeg"],
        "test/NORMAL": ["IM-0001-0001.jpeg"],
        "test/PNEUMONIA": ["person100_bacteria_475.jpeg"],
        "val/PNEUMONIA": ["person1946_bacteria_4874.jpeg"],
    }
    for folder_name, names in files.items():
        for name in names:
            jpeg(base / folder_name / name)
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"x")  # hidden files are not even reported
    (base / "train" / "NORMAL" / "notes.txt").write_text("x")
    (tmp_path / "archive" / "__MACOSX" / "chest_xray").mkdir(parents=True)
    return tmp_path / "archive"


def test_kermany_patient_ids():
    assert D.kermany_patient("person1_bacteria_1.jpeg") == "person1"
    assert D.kermany_patient("person1000_virus_1681.jpeg") == "person1000"
    assert D.kermany_patient("IM-0115-0001.jpeg") == "IM-0115"
    assert D.kermany_patient("NORMAL2-IM-0381-0001.jpeg") == "NORMAL2-IM-0381"
    assert D.kermany_patient("IM-0033-0001-0001.png") == "IM-0033"
    assert D.kermany_patient("weird.jpeg") == "weird"


def test_kermany_layout(kermany_root):
    df = D.pediatric_pneumonia(kermany_root)
    assert len(df) == 9
    counts = df.groupby(["split", "label"]).size().to_dict()
    assert counts == {("test", "bacterial"): 1, ("test", "normal"): 1, ("train", "bacterial"): 2,
                      ("train", "normal"): 3, ("train", "viral"): 1, ("val", "bacterial"): 1}
    assert set(df.loc[df["label"] == "normal", "binary_label"]) == {"normal"}
    assert set(df.loc[df["label"] != "normal", "binary_label"]) == {"pneumonia"}
    assert df.loc[df["file"] == "person1_bacteria_2.jpeg", "patient"].item() == "person1"
    assert (df["patient"] == "person1").sum() == 2 and not df["has_mask"].any()
    assert len(df.attrs["ignored"]) == 1 and df.attrs["ignored"][0].endswith("notes.txt")
    assert len(D.load("kermany", kermany_root / "chest_xray" / "chest_xray")) == 9


def test_kermany_unknown_class_folder_and_bad_name(kermany_root):
    base = kermany_root / "chest_xray" / "chest_xray"
    jpeg(base / "train" / "PNEUMONIA" / "scan_17.jpeg")
    with pytest.raises(DatasetError, match=r"scan_17\.jpeg: PNEUMONIA file not named personN_bacteria_M"):
        D.pediatric_pneumonia(kermany_root)
    assert len(D.pediatric_pneumonia(kermany_root, on_error="skip")) == 9
    jpeg(base / "test" / "COVID19" / "x.jpeg")
    with pytest.raises(DatasetError, match=r"class folders outside the known set .*\['test/COVID19'\]"):
        D.pediatric_pneumonia(kermany_root)


def test_kermany_wrong_root(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match=r"expected chest_xray/\{train,test,val\}/\{NORMAL,PNEUMONIA\}/"):
        D.pediatric_pneumonia(tmp_path)


# --- JSRT --------------------------------------------------------------------------------------------------


@pytest.fixture
def jsrt_root(tmp_path) -> Path:
    """All247images/ with PNG copies (and one raw .IMG), SCR masks in scr/fold{1,2}/masks/{left,right} lung."""
    images = tmp_path / "All247images"
    for stem in ("JPCLN001", "JPCLN002", "JPCNN001"):
        png(images / f"{stem}.png", shape=(32, 32))
    for stem, fold in (("JPCLN001", "fold1"), ("JPCLN002", "fold2"), ("JPCNN001", "fold1")):
        lung(tmp_path / "scr" / fold / "masks" / "left lung" / f"{stem}.gif", shape=(16, 16), side="left")
        lung(tmp_path / "scr" / fold / "masks" / "right lung" / f"{stem}.gif", shape=(16, 16), side="right")
        lung(tmp_path / "scr" / fold / "masks" / "heart" / f"{stem}.gif", shape=(16, 16))
    return tmp_path


def test_jsrt_png_copies_with_scr_masks(jsrt_root):
    df = D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr")
    assert df["label"].tolist() == ["nodule", "nodule", "non_nodule"]
    assert df["fold"].tolist() == ["fold1", "fold2", "fold1"] and df["patient"][0] == "JPCLN001"
    assert "left lung" in df["mask"][0] and "right lung" in df["mask"][0]
    mask = read_mask(df["mask"][0], size=32)
    assert mask.shape == (32, 32) and mask[16, 6] == 1 and mask[16, 25] == 1


def test_jsrt_raw_img_preferred_and_half_size_masks_accepted(jsrt_root):
    raw = np.zeros((2048, 2048), ">u2")
    (jsrt_root / "All247images" / "JPCLN001.IMG").write_bytes(raw.tobytes())
    for side in ("left", "right"):
        lung(jsrt_root / "scr" / "fold1" / "masks" / f"{side} lung" / "JPCLN001.gif", shape=(1024, 1024), side=side)
    df = D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr")
    assert df["file"][0] == "JPCLN001.IMG"
    assert D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr", prefer="png")["file"][0] == "JPCLN001.png"


def test_jsrt_mask_size_not_a_whole_factor(jsrt_root):
    png(jsrt_root / "All247images" / "JPCLN002.png", shape=(30, 30))
    with pytest.raises(DatasetError, match=r"JPCLN002\.png: image is 30x30 but its mask .*left lung.*is 16x16"):
        D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr")


def test_jsrt_errors(jsrt_root, tmp_path):
    with pytest.raises(DatasetError, match=r"no 'left lung'/'right lung' mask folders"):
        D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "All247images")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"expected JPCLN###/JPCNN### \.IMG or \.png files"):
        D.jsrt(tmp_path / "empty")
    with pytest.raises(ValueError, match="prefer must be 'img' or 'png'"):
        D.jsrt(jsrt_root, prefer="jpg")
    (jsrt_root / "scr" / "fold2" / "masks" / "right lung" / "JPCLN002.gif").unlink()
    with pytest.raises(DatasetError, match=r"JPCLN002\.png: only the left lung mask was found"):
        D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr")


def test_jsrt_truncated_raw_is_a_problem(jsrt_root):
    (jsrt_root / "All247images" / "JPCNN001.IMG").write_bytes(b"\x00" * 1000)
    with pytest.raises(DatasetError, match=r"JPCNN001\.IMG: unreadable image .*raw file has 1000 bytes"):
        D.jsrt(jsrt_root / "All247images", masks_root=jsrt_root / "scr")


# --- RSNA --------------------------------------------------------------------------------------------------


@pytest.fixture
def rsna_root(tmp_path) -> Path:
    root = tmp_path / "rsna-pneumonia-detection-challenge"
    for pid in ("0004cfab-14fd", "00436515-870c", "00313ee0-9eaa", "ffff-unlisted"):
        dicom(root / "stage_2_train_images" / f"{pid}.dcm")
    write_csv(root / "stage_2_train_labels.csv", [
        {"patientId": "0004cfab-14fd", "x": "", "y": "", "width": "", "height": "", "Target": 0},
        {"patientId": "00436515-870c", "x": 264.0, "y": 152.0, "width": 213.0, "height": 379.0, "Target": 1},
        {"patientId": "00436515-870c", "x": 562.0, "y": 152.0, "width": 256.0, "height": 453.0, "Target": 1},
        {"patientId": "00313ee0-9eaa", "x": "", "y": "", "width": "", "height": "", "Target": 0},
    ])
    write_csv(root / "stage_2_detailed_class_info.csv", [
        {"patientId": "0004cfab-14fd", "class": "No Lung Opacity / Not Normal"},
        {"patientId": "00436515-870c", "class": "Lung Opacity"},
        {"patientId": "00436515-870c", "class": "Lung Opacity"},
        {"patientId": "00313ee0-9eaa", "class": "Normal"},
    ])
    return root


def test_rsna_layout_boxes_and_details(rsna_root):
    df = D.rsna(rsna_root)
    assert df["patient"].tolist() == ["0004cfab-14fd", "00313ee0-9eaa", "00436515-870c"]
    row = df.set_index("patient").loc["00436515-870c"]
    assert row["label"] == "lung_opacity" and row["target"] == 1 and row["n_boxes"] == 2
    assert row["boxes"] == [(264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)]
    assert row["class_detail"] == "Lung Opacity"
    assert df.set_index("patient").loc["00313ee0-9eaa", "label"] == "no_lung_opacity"
    assert len(df.attrs["ignored"]) == 1 and df.attrs["ignored"][0].endswith("ffff-unlisted.dcm")
    assert read_image(df["image"][0]).shape == (8, 8)
    with_unlabeled = D.rsna(rsna_root, include_unlabeled=True)
    assert len(with_unlabeled) == 4 and with_unlabeled["label"].iloc[-1] == "unlabeled"


def test_rsna_errors(rsna_root):
    labels = rsna_root / "stage_2_train_labels.csv"
    table = pd.read_csv(labels, dtype=str, keep_default_na=False)
    table.loc[0, "Target"] = "2"
    table.to_csv(labels, index=False)
    with pytest.raises(DatasetError, match=r"Target values outside the known set \['0', '1'\] .*\['2'\]"):
        D.rsna(rsna_root)
    table.loc[0, "Target"] = "0"
    table.loc[1, "Target"] = "0"
    table.to_csv(labels, index=False)
    with pytest.raises(DatasetError, match=r"patients with both Target 0 and 1 .*\['00436515-870c'\]"):
        D.rsna(rsna_root)
    table.drop(columns=["width"]).to_csv(labels, index=False)
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['width'\]"):
        D.rsna(rsna_root)
    labels.unlink()
    with pytest.raises(DatasetError, match=r"expected stage_2_train_images/ and stage_2_train_labels\.csv"):
        D.rsna(rsna_root)


def test_rsna_listed_image_missing(rsna_root):
    (rsna_root / "stage_2_train_images" / "00313ee0-9eaa.dcm").unlink()
    with pytest.raises(DatasetError, match=r"00313ee0-9eaa\.dcm: image file not found"):
        D.rsna(rsna_root)
    assert len(D.rsna(rsna_root, on_error="skip")) == 2


# --- Doppler -----------------------------------------------------------------------------------------------


@pytest.fixture
def doppler_root(tmp_path) -> Path:
    root = tmp_path / "doppler"
    rows = []
    for i, (flow, quality, patient) in enumerate([("MV", "good", "P01"), ("MA", "", "P01"), ("TR", "low", "P02"),
                                                   ("MV", "empty", "P03")]):
        png(root / "frames" / f"f{i}.png", shape=(24, 32))
        lung(root / "envelopes" / f"f{i}.png", shape=(24, 32))
        rows.append({"image": f"frames/f{i}.png", "mask": f"envelopes/f{i}.png", "flow": flow,
                     "quality": quality, "patient": patient, "machine": "GE"})
    write_csv(root / "doppler.csv", rows)
    return root


def test_doppler_manifest(doppler_root):
    df = D.doppler(doppler_root, "doppler.csv")
    assert df["label"].tolist() == ["MV", "MA", "TR", "MV"] and df["flow"].equals(df["label"])
    assert df["quality"].tolist() == ["good", "", "low", "empty"]
    assert df["patient"].tolist() == ["P01", "P01", "P02", "P03"] and df["machine"][0] == "GE"
    assert df["mask"][0] == str(doppler_root / "envelopes" / "f0.png") and df["has_mask"].all()


def test_doppler_unknown_flow_and_quality(doppler_root):
    table = pd.read_csv(doppler_root / "doppler.csv", dtype=str, keep_default_na=False)
    table.loc[1, "quality"] = "great"
    table.to_csv(doppler_root / "doppler.csv", index=False)
    with pytest.raises(DatasetError, match=r"labels outside the known set \['low', 'good', 'empty'\] .*'great' \(1\)"):
        D.doppler(doppler_root, "doppler.csv")
    table.loc[1, "quality"] = ""
    table.loc[2, "flow"] = "AV"
    table.loc[3, "flow"] = "PV"
    table.to_csv(doppler_root / "doppler.csv", index=False)
    with pytest.raises(DatasetError, match=r"\['MV', 'MA', 'TR'\] in column 'flow' .*'AV' \(1\), 'PV' \(1\)"):
        D.doppler(doppler_root, "doppler.csv")
    assert len(D.doppler(doppler_root, "doppler.csv", flows=("MV", "MA", "TR", "AV", "PV"))) == 4


def test_doppler_renamed_columns(doppler_root):
    table = pd.read_csv(doppler_root / "doppler.csv", dtype=str, keep_default_na=False)
    table.rename(columns={"image": "frame_path", "flow": "flow_type"}).to_csv(doppler_root / "d2.csv", index=False)
    df = D.doppler(doppler_root, doppler_root / "d2.csv", columns={"image": "frame_path", "flow": "flow_type"})
    assert df["label"].tolist() == ["MV", "MA", "TR", "MV"]
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['image', 'flow'\]"):
        D.doppler(doppler_root, "d2.csv")
    with pytest.raises(ValueError, match=r"columns has unknown key\(s\) \['label'\]"):
        D.doppler(doppler_root, "d2.csv", columns={"label": "flow_type"})


def test_doppler_envelope_size_mismatch(doppler_root):
    lung(doppler_root / "envelopes" / "f2.png", shape=(24, 30))
    with pytest.raises(DatasetError, match=r"f2\.png: image is 24x32 but its mask .*envelopes/f2\.png is 24x30"):
        D.doppler(doppler_root, "doppler.csv")


# --- real data ($UREP_TEST_DATA) ----------------------------------------------------------------------------


def test_real_montgomery_and_shenzhen(shared_data):
    mont = D.montgomery(shared_data / "montgomery", require_masks=True)
    assert mont["label"].value_counts().to_dict() == {"normal": 23, "abnormal": 17}
    assert mont["patient"].str.fullmatch(r"MCUCXR_\d{4}").all()
    shen = D.shenzhen(shared_data / "shenzhen", require_masks=True)
    assert shen["label"].value_counts().to_dict() == {"normal": 75, "abnormal": 75}
    assert read_mask(shen["mask"][0], size=64).mean() > 0.05


def test_real_jsrt_and_kermany(shared_data):
    jsrt_df = D.jsrt(shared_data / "jsrt", require_masks=True)
    assert jsrt_df["label"].value_counts().to_dict() == {"nodule": 75, "non_nodule": 75}
    assert set(jsrt_df["split"]) <= {"train", "val", "test"}
    kermany = D.pediatric_pneumonia(shared_data / "kermany_pediatric")
    assert kermany["label"].value_counts().to_dict() == {"normal": 50, "bacterial": 50, "viral": 50}
    pneumonia = kermany[kermany["label"] != "normal"]
    assert pneumonia["patient"].str.fullmatch(r"person\d+").all()
    assert kermany["patient"].nunique() < len(kermany)  # several images of one patient are grouped


def test_real_doppler_frames(shared_data):
    with pytest.raises(DatasetError, match=r"'other' \(4\)"):
        D.doppler(shared_data / "doppler_tte47")
    df = D.doppler(shared_data / "doppler_tte47", flows=("MV", "MA", "TR", "other"))
    assert len(df) == 8 and not df["has_mask"].any()
    assert read_image(df["image"][0], size=64).shape == (64, 64)
