"""Hostile or damaged data: `urep data check` decodes every pixel, manifests cannot point outside their
dataset folder, a decompression bomb is refused before decoding, pixels are never copied to float64."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_files import write_dicom

from urep.cli import main
from urep.data import DatasetError, ImageReadError, datasets, read_image
from urep.data.readers import MAX_PIXELS_ENV, image_shape, max_pixels

RNG = np.random.default_rng(0)


def png_damaged_in_the_middle(path: Path) -> Path:
    """A noise PNG whose compressed data is overwritten in the middle; the IEND chunk stays intact."""
    assert cv2.imwrite(str(path), RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = b"\x00" * 200
    path.write_bytes(bytes(data))
    return path


def make_damaged_folder(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "good.png"), np.full((64, 64), 90, np.uint8))
    png_damaged_in_the_middle(images / "midcut.png")
    cut = write_dicom(images / "cut.dcm", RNG.integers(0, 4096, (64, 64), dtype=np.uint16))
    cut.write_bytes(cut.read_bytes()[:-3000])
    nopix = write_dicom(images / "nopix.dcm", np.zeros((64, 64), np.uint16))
    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    pd.DataFrame({"file": ["good.png", "midcut.png", "cut.dcm", "nopix.dcm"], "label": ["a"] * 4}).to_csv(
        root / "manifest.csv", index=False)
    return root


def test_data_check_decodes_every_pixel(tmp_path, capsys):
    root = make_damaged_folder(tmp_path / "f")
    for name in ("midcut.png", "cut.dcm", "nopix.dcm"):  # the headers look fine
        assert image_shape(root / "images" / name) == (64, 64)
    assert main(["data", "check", "folder", str(root)]) == 1
    out = capsys.readouterr().out
    assert "pixels: decoded all 4 images and 0 masks, 3 failed" in out
    assert "problems: 3" in out
    assert f"{root / 'images' / 'midcut.png'}: cannot decode the pixels (cannot read image" in out
    assert f"{root / 'images' / 'cut.dcm'}: cannot decode the pixels (cannot read image" in out
    assert "nopix.dcm: DICOM file has no pixel data (PixelData element missing))" in out
    assert "good.png: cannot decode" not in out


def test_data_check_headers_only_skips_decoding(tmp_path, capsys):
    root = make_damaged_folder(tmp_path / "f")
    assert main(["data", "check", "folder", str(root), "--headers-only"]) == 0
    out = capsys.readouterr().out
    assert "pixels: not decoded (--headers-only)" in out and "problems: 0" in out


def test_dicom_without_rows_is_named_by_the_header_check(tmp_path):
    path = write_dicom(tmp_path / "norows.dcm", np.zeros((4, 4), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.Rows
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"norows\.dcm: cannot read DICOM header: it has no Rows/Columns"):
        image_shape(path)
    with pytest.raises(ImageReadError, match=r"norows\.dcm: DICOM file lacks Rows/Columns"):
        read_image(path)


# --- decompression bombs and memory ---------------------------------------------------------------------------


def _png_claiming(path: Path, height: int, width: int) -> Path:
    """A tiny PNG whose header claims `height x width` (the CRC is fixed, the data is not)."""
    assert cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path):
    bomb = _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match=r"bomb\.png: the image is 20000x20000 = 400,000,000 pixels, above "
                                                 r"the limit of 100,000,000 \(set \$UREP_MAX_PIXELS"):
            read_image(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_pixel_cap_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((40, 50), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "1999")
    assert max_pixels() == 1999
    with pytest.raises(ImageReadError, match=r"a\.png: the image is 40x50 = 2,000 pixels, above the limit of 1,999"):
        read_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000")
    assert read_image(path).shape == (40, 50)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=r"\$UREP_MAX_PIXELS must be a positive integer number of pixels, got 'lots'"):
        read_image(path)


def test_dicom_bigger_than_the_cap_is_refused(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "big.dcm", np.zeros((30, 30), np.uint16))
    monkeypatch.setenv(MAX_PIXELS_ENV, "800")
    with pytest.raises(ImageReadError, match=r"big\.dcm: the image is 30x30 = 900 pixels"):
        read_image(path)


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_pixels_are_read_without_a_float64_copy(tmp_path, dtype, top):
    side = 1500
    pixels = RNG.integers(0, top + 1, (side, side), dtype=dtype)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    tracemalloc.start()
    try:
        image = read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pixels / top, atol=1e-6)
    file_bytes, native, float32 = path.stat().st_size, pixels.nbytes, side * side * 4
    # the file's bytes, the decoded native array and one float32 array, with slack; a float64 copy (8 bytes a
    # pixel) would not fit
    assert peak < file_bytes + native + float32 + side * side * 2
    assert peak < file_bytes + native + side * side * 8


# --- manifests cannot escape their dataset folder --------------------------------------------------------------


def make_folder(root: Path, files: list[str], masks: list[str] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), np.full((16, 16), 40 * i, np.uint8))
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), np.full((16, 16), 255, np.uint8))
    table = {"file": files, "label": ["a"] * len(files)}
    if masks is not None:
        table["mask"] = masks
    pd.DataFrame(table).to_csv(root / "manifest.csv", index=False)
    return root


def test_folder_file_climbing_out_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((16, 16), np.uint8))
    root = make_folder(tmp_path / "ds", ["im0.png", "../../x.png", "im2.png"])
    with pytest.raises(DatasetError) as err:
        datasets.folder(root)
    assert (f"{root / 'manifest.csv'} line 3: file '../../x.png' points outside {root / 'images'} (absolute paths "
            "and '..' leaving the folder are refused)") in str(err.value)
    skipped = datasets.folder(root, on_error="skip")
    assert list(skipped["file"]) == ["im0.png", "im2.png"]
    assert skipped.attrs["skipped"][0][0] == f"{root / 'manifest.csv'} line 3"


def test_folder_absolute_path_is_refused(tmp_path):
    outside = tmp_path / "abs.png"
    cv2.imwrite(str(outside), np.zeros((16, 16), np.uint8))
    root = make_folder(tmp_path / "ds", ["im0.png", str(outside)])
    with pytest.raises(DatasetError, match=rf"line 3: file '{outside}' points outside"):
        datasets.folder(root)


def test_folder_mask_pointing_at_the_image_is_refused(tmp_path):
    """`masks/../images/im1.png` stays inside the root but would make the image its own lung mask."""
    root = make_folder(tmp_path / "ds", ["im0.png", "im1.png"], masks=["im0.png", "../images/im1.png"])
    with pytest.raises(DatasetError, match=r"line 3: mask '../images/im1.png' points outside .*masks"):
        datasets.folder(root)


def test_doppler_manifest_climbing_out_is_refused(tmp_path):
    root = tmp_path / "dop"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.full((16, 16), 30, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((16, 16), 30, np.uint8))
    pd.DataFrame({"image": ["a.png", "../b.png"], "flow": ["MV", "TR"]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=r"manifest\.csv line 3: image '../b.png' points outside"):
        datasets.doppler(root)


def test_rsna_patient_id_with_a_path_is_refused(tmp_path):
    root = tmp_path / "rsna"
    (root / "stage_2_train_images").mkdir(parents=True)
    write_dicom(root / "stage_2_train_images" / "p1.dcm", np.zeros((8, 8), np.uint16))
    pd.DataFrame({"patientId": ["p1", "../../etc/p2"], "x": ["", ""], "y": ["", ""], "width": ["", ""],
                  "height": ["", ""], "Target": ["0", "0"]}).to_csv(root / "stage_2_train_labels.csv", index=False)
    with pytest.raises(DatasetError, match=r"stage_2_train_labels\.csv line 3: patientId '../../etc/p2' is not a "
                                           r"plain file name"):
        datasets.rsna(root)


def test_symlinked_files_inside_the_folder_stay_allowed(tmp_path):
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "real.png"), np.full((16, 16), 9, np.uint8))
    root = make_folder(tmp_path / "ds", ["im0.png", "link.png"])
    (root / "images" / "link.png").symlink_to(elsewhere / "real.png")
    assert list(datasets.folder(root)["file"]) == ["im0.png", "link.png"]
