"""Tests for urep.data.readers: every format, DICOM pixel pipeline, masks, resizing and every error path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicom_files import write_dicom
from pydicom.dataset import Dataset

from urep.data import ImageReadError, read_image, read_mask
from urep.data.readers import RawFormat, combine_masks, image_shape, resize_image, resize_mask

RNG = np.random.default_rng(0)


def _write(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


# --- ordinary image files ----------------------------------------------------------------------------------


def test_png_8bit_is_scaled_by_255(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    image = read_image(_write(tmp_path / "a.png", pixels))
    assert image.dtype == np.float32 and image.shape == (20, 30)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_16bit_png_and_tiff_are_scaled_by_65535(tmp_path, suffix):
    pixels = RNG.integers(0, 65536, (16, 24), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    image = read_image(_write(tmp_path / f"a{suffix}", pixels))
    np.testing.assert_allclose(image, pixels / 65535.0, atol=1e-6)
    assert image.min() == 0.0 and image.max() == 1.0


def test_8bit_tiff_and_bmp_exact(tmp_path):
    pixels = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    for name in ("a.tif", "a.bmp"):
        np.testing.assert_allclose(read_image(_write(tmp_path / name, pixels)), pixels / 255.0, atol=1e-6)


def test_jpeg_close_to_source(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    image = read_image(_write(tmp_path / "a.jpg", pixels))
    assert image.shape == (32, 32)
    assert np.abs(image - pixels / 255.0).max() < 0.05


def test_float_tiff_in_unit_range_kept_and_other_range_minmax_scaled(tmp_path):
    inside = RNG.random((8, 8)).astype(np.float32)
    np.testing.assert_allclose(read_image(_write(tmp_path / "in.tif", inside)), inside, atol=1e-6)
    outside = (inside * 100 - 20).astype(np.float32)
    scaled = read_image(_write(tmp_path / "out.tif", outside))
    np.testing.assert_allclose(scaled, (outside - outside.min()) / (outside.max() - outside.min()), atol=1e-5)


def test_colour_png_converted_with_bt601_weights_and_alpha_dropped(tmp_path):
    bgr = np.zeros((4, 3, 3), dtype=np.uint8)
    bgr[:, 0] = (255, 0, 0)  # blue
    bgr[:, 1] = (0, 255, 0)  # green
    bgr[:, 2] = (0, 0, 255)  # red
    image = read_image(_write(tmp_path / "c.png", bgr))
    np.testing.assert_allclose(image[0], [0.114, 0.587, 0.299], atol=2e-3)
    bgra = np.concatenate([bgr, np.full((4, 3, 1), 7, np.uint8)], axis=2)
    np.testing.assert_allclose(read_image(_write(tmp_path / "c4.png", bgra)), image, atol=1e-6)


def test_resize_int_and_pair_bicubic_clipped(tmp_path):
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)
    path = _write(tmp_path / "checker.png", checker)
    square = read_image(path, size=40)
    assert square.shape == (40, 40) and square.dtype == np.float32
    assert square.min() >= 0.0 and square.max() <= 1.0
    raw = cv2.resize((checker / 255.0).astype(np.float32), (40, 40), interpolation=cv2.INTER_CUBIC)
    assert raw.max() > 1.0 and raw.min() < 0.0  # bicubic overshoots, so the clip matters
    np.testing.assert_allclose(square, np.clip(raw, 0, 1), atol=1e-6)
    assert read_image(path, size=(8, 24)).shape == (8, 24)


@pytest.mark.parametrize("size", [0, -3, (4,), (4, 5, 6), "64", 2.5])
def test_bad_size_raises(tmp_path, size):
    path = _write(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="size must be"):
        read_image(path, size=size)


def test_resize_helpers_keep_types():
    image = resize_image(np.full((5, 5), 0.5), (10, 7))
    assert image.shape == (10, 7) and image.dtype == np.float32
    np.testing.assert_allclose(image, 0.5, atol=1e-6)
    mask = resize_mask(np.eye(4, dtype=np.uint8), 8)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask[::2, ::2], np.eye(4))


def test_multipage_tiff_needs_frame(tmp_path):
    pages = [np.full((6, 6), value, np.uint8) for value in (10, 200)]
    path = tmp_path / "pages.tif"
    assert cv2.imwritemulti(str(path), pages)
    with pytest.raises(ImageReadError, match=r"pages\.tif: multi-page file with 2 pages; pass frame=0\.\.1"):
        read_image(path)
    np.testing.assert_allclose(read_image(path, frame=1), 200 / 255.0, atol=1e-6)
    with pytest.raises(ImageReadError, match="frame=2 is out of range; the file has 2 page"):
        read_image(path, frame=2)


def test_frame_on_single_image_file_raises(tmp_path):
    path = _write(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    assert read_image(path, frame=0).shape == (4, 4)
    with pytest.raises(ImageReadError, match="frame=1 was asked for, but this file holds a single image"):
        read_image(path, frame=1)


# --- error paths -------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"cannot read image .*nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_empty_file_and_directory(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: the file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageReadError, match=r"folder\.png: it is a directory"):
        read_image(tmp_path / "folder.png")


def test_isa_value_error():
    assert issubclass(ImageReadError, ValueError)


@pytest.mark.parametrize(("name", "reason"), [("a.png", "truncated PNG"), ("a.jpg", "truncated JPEG")])
def test_truncated_png_and_jpeg(tmp_path, name, reason):
    good = _write(tmp_path / f"good_{name}", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    data = good.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=rf"{name}: {reason}"):
        read_image(tmp_path / name)


def test_truncated_tiff_and_bmp(tmp_path):
    for name in ("a.tif", "a.bmp"):
        good = _write(tmp_path / f"good_{name}", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
        data = good.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match=rf"{name}: OpenCV could not decode it"):
            read_image(tmp_path / name)


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: OpenCV could not decode it"):
        read_image(tmp_path / "notes.png")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.txt: unsupported file type '\.txt'"):
        read_image(tmp_path / "notes.txt")


# --- DICOM -------------------------------------------------------------------------------------------------


def test_dicom_monochrome2_12bit_scaled_by_bit_depth(tmp_path):
    pixels = RNG.integers(0, 4096, (8, 10), dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    np.testing.assert_allclose(image, pixels / 4095.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = RNG.integers(0, 4096, (8, 10), dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_allclose(image, 1.0 - pixels / 4095.0, atol=1e-6)


def test_dicom_without_suffix_detected_by_preamble(tmp_path):
    pixels = RNG.integers(0, 4096, (4, 4), dtype=np.uint16)
    path = write_dicom(tmp_path / "IM0001", pixels)
    np.testing.assert_allclose(read_image(path), pixels / 4095.0, atol=1e-6)


def test_dicom_rescale_then_window(tmp_path):
    # stored 250/500/750 -> rescaled -500/0/500 (slope 2, intercept -1000); window 0 +- 500 maps them to 0/.5/1
    pixels = np.array([[250, 500, 750, 0]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "ct.dcm", pixels, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000,
        WindowCenter=0, WindowWidth=1000,
    )
    image = read_image(path)
    np.testing.assert_allclose(image[0], [0.0, 0.5, 1.0, 0.0], atol=2e-3)


def test_dicom_rescale_without_window_uses_rescaled_bit_range(tmp_path):
    pixels = np.array([[0, 4095, 1000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "r.dcm", pixels, RescaleSlope=0.5, RescaleIntercept=-100)
    np.testing.assert_allclose(read_image(path)[0], [0.0, 1.0, 1000 / 4095], atol=1e-6)


def test_dicom_window_15bit_monochrome1(tmp_path):
    pixels = np.array([[0, 1000, 1100, 1200, 30000]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "w.dcm", pixels, photometric="MONOCHROME1", bits_stored=15, WindowCenter=1100, WindowWidth=201
    )
    # LINEAR window (PS3.3 C.11.2.1.2): (x - (c - 0.5)) / (w - 1) + 0.5 clipped to [0, 1]; then inverted
    expected = 1.0 - np.clip((pixels[0] - 1099.5) / 200.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(expected, [1.0, 0.9975, 0.4975, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(read_image(path)[0], expected, atol=1e-6)


def test_dicom_voi_lut_sequence(tmp_path):
    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.add_new(0x00283006, "US", [255, 100, 50, 0])  # LUT Data
    path = write_dicom(tmp_path / "lut.dcm", pixels, bits_stored=12, VOILUTSequence=[item])
    np.testing.assert_allclose(read_image(path)[0], np.array([255, 100, 50, 0]) / 255.0, atol=1e-6)


def test_dicom_multiframe_rejected_unless_frame_given(tmp_path):
    frames = np.stack([np.full((4, 5), value, np.uint16) for value in (0, 2000, 4095)])
    path = write_dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(ImageReadError, match=r"cine\.dcm: multi-frame DICOM with 3 frames; pass frame=0\.\.2"):
        read_image(path)
    np.testing.assert_allclose(read_image(path, frame=1), 2000 / 4095, atol=1e-6)
    assert read_image(path, frame=2, size=8).shape == (8, 8)
    with pytest.raises(ImageReadError, match="frame=3 is out of range; the file has 3 frame"):
        read_image(path, frame=3)


def test_dicom_rgb_to_gray(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[:, 0, 0] = 255
    rgb[:, 1, 1] = 255
    rgb[:, 2, 2] = 255
    image = read_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", bits_stored=8))
    np.testing.assert_allclose(image[0], [0.299, 0.587, 0.114], atol=2e-3)


def test_dicom_ybr_matches_rgb_version():
    from pydicom.data import get_testdata_file

    rgb_path = get_testdata_file("SC_rgb.dcm")
    ybr_path = get_testdata_file("SC_ybr_full_uncompressed.dcm")
    if rgb_path is None or ybr_path is None:
        pytest.skip("pydicom test files SC_rgb.dcm / SC_ybr_full_uncompressed.dcm not available")
    assert pydicom.dcmread(ybr_path).PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_allclose(read_image(ybr_path), read_image(rgb_path), atol=0.02)


def test_not_a_dicom_file(tmp_path):
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 300)
    with pytest.raises(ImageReadError, match=r"fake\.dcm: not a DICOM file"):
        read_image(tmp_path / "fake.dcm")


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"nopix\.dcm: DICOM file has no pixel data"):
        read_image(path)


def test_truncated_dicom(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", RNG.integers(0, 4096, (64, 64), dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    with pytest.raises(ImageReadError, match=r"cut\.dcm: "):
        read_image(path)


def test_real_dicom_rg1_uncr_inverted_and_resized():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed (pip install pydicom-data): RG1_UNCR.dcm unavailable")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and int(ds.BitsStored) == 15
    raw = ds.pixel_array.astype(np.float64)
    image = read_image(path)
    assert image.shape == (1955, 1841) and image.dtype == np.float32
    # window 15000/30000 (LINEAR), output range 0..2**15-1 -> [0, 1], then MONOCHROME1 inverted
    expected = 1.0 - np.clip((raw - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    assert np.corrcoef(image.ravel(), raw.ravel())[0, 1] < -0.99
    small = read_image(path, size=256)
    assert small.shape == (256, 256) and 0.0 <= small.min() and small.max() <= 1.0
    reference = cv2.resize(expected.astype(np.float32), (256, 256), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(small, np.clip(reference, 0, 1), atol=1e-4)
    assert image_shape(path) == (1955, 1841)


# --- raw JSRT ----------------------------------------------------------------------------------------------


def test_raw_jsrt_layout_big_endian_inverted(tmp_path):
    values = RNG.integers(0, 4096, (2048, 2048), dtype=np.uint16)
    path = tmp_path / "JPCLN001.IMG"
    path.write_bytes(values.astype(">u2").tobytes())
    image = read_image(path, size=64)
    assert image.shape == (64, 64)
    full = read_image(path)
    np.testing.assert_allclose(full[:4, :4], 1.0 - values[:4, :4] / 4095.0, atol=1e-6)
    assert image_shape(path) == (2048, 2048)


def test_raw_custom_format_and_errors(tmp_path):
    fmt = RawFormat(shape=(4, 6), dtype="<u2", bits=10, invert=False)
    values = RNG.integers(0, 1024, (4, 6), dtype=np.uint16)
    path = tmp_path / "small.raw"
    path.write_bytes(values.astype("<u2").tobytes())
    np.testing.assert_allclose(read_image(path, raw=fmt), values / 1023.0, atol=1e-6)
    with pytest.raises(ImageReadError, match=r"small\.raw: raw file has 48 bytes but 2048x2048 values"):
        read_image(path)
    (tmp_path / "hot.raw").write_bytes(np.full((4, 6), 2000, "<u2").tobytes())
    with pytest.raises(ImageReadError, match="above the 10-bit maximum 1023"):
        read_image(tmp_path / "hot.raw", raw=fmt)


# --- masks -------------------------------------------------------------------------------------------------


def test_mask_binarized_at_half_maximum(tmp_path):
    values = np.array([[0, 100, 127, 128, 255]], dtype=np.uint8)
    mask = read_mask(_write(tmp_path / "m.png", values))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 0, 0, 1, 1]])
    ones = read_mask(_write(tmp_path / "ones.png", np.array([[0, 1, 1]], np.uint8)))
    np.testing.assert_array_equal(ones, [[0, 1, 1]])


def test_all_zero_mask_stays_zero(tmp_path):
    mask = read_mask(_write(tmp_path / "z.png", np.zeros((5, 5), np.uint8)), size=9)
    assert mask.shape == (9, 9) and mask.max() == 0


def test_colour_and_16bit_masks(tmp_path):
    colour = np.zeros((3, 3, 3), np.uint8)
    colour[1, 1] = (0, 0, 255)  # pure red in BGR: gray would be 76, the channel maximum is 255
    np.testing.assert_array_equal(read_mask(_write(tmp_path / "c.png", colour)), np.eye(3)[1:2].T @ np.eye(3)[1:2])
    wide = np.array([[0, 40000, 65535]], np.uint16)
    np.testing.assert_array_equal(read_mask(_write(tmp_path / "w.png", wide)), [[0, 1, 1]])


def test_mask_resize_nearest_stays_binary(tmp_path):
    values = (RNG.random((16, 16)) > 0.5).astype(np.uint8) * 255
    mask = read_mask(_write(tmp_path / "m.png", values), size=(40, 24))
    assert mask.shape == (40, 24) and set(np.unique(mask)) <= {0, 1}


def test_mask_union_from_string_and_list(tmp_path):
    left = np.zeros((6, 6), np.uint8)
    left[:, :2] = 255
    right = np.zeros((6, 6), np.uint8)
    right[:, 4:] = 255
    a, b = _write(tmp_path / "l.png", left), _write(tmp_path / "r.png", right)
    expected = ((left > 0) | (right > 0)).astype(np.uint8)
    np.testing.assert_array_equal(read_mask(f"{a};{b}"), expected)
    np.testing.assert_array_equal(read_mask([a, b]), expected)
    np.testing.assert_array_equal(combine_masks([a, b]), expected)
    assert read_mask(f"{a};{b}", size=3).shape == (3, 3)


def test_mask_union_size_mismatch_names_both(tmp_path):
    a = _write(tmp_path / "l.png", np.zeros((6, 6), np.uint8))
    b = _write(tmp_path / "r.png", np.zeros((6, 7), np.uint8))
    with pytest.raises(ImageReadError, match=r"l\.png is 6x6 but .*r\.png is 6x7"):
        read_mask([a, b])


def test_mask_errors(tmp_path):
    with pytest.raises(ImageReadError, match="no mask file was given"):
        read_mask([])
    with pytest.raises(ImageReadError, match=r"gone\.png: file not found"):
        read_mask(tmp_path / "gone.png")


def test_gif_mask_as_in_scr(tmp_path):
    values = np.zeros((8, 8), np.uint8)
    values[2:5, 3:6] = 255
    path = tmp_path / "left.gif"
    from PIL import Image

    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(read_mask(path), values // 255)


def test_image_shape_from_headers(tmp_path):
    assert image_shape(_write(tmp_path / "a.png", np.zeros((7, 9), np.uint8))) == (7, 9)
    assert image_shape(_write(tmp_path / "a.jpg", np.zeros((7, 9), np.uint8))) == (7, 9)
    assert image_shape(write_dicom(tmp_path / "a.dcm", np.zeros((5, 3), np.uint16))) == (5, 3)
    with pytest.raises(ImageReadError, match="file not found"):
        image_shape(tmp_path / "none.png")


def test_shared_data_png_reads(shared_data):
    image_path = next(iter(sorted((shared_data / "montgomery" / "images").glob("*.png"))))
    image = read_image(image_path, size=64)
    assert image.shape == (64, 64) and 0.0 <= image.min() < image.max() <= 1.0
    mask = read_mask(shared_data / "montgomery" / "masks" / image_path.name, size=64)
    assert set(np.unique(mask)) == {0, 1} and 0.1 < mask.mean() < 0.6


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_image_shape_checks_truncation_and_raw_size(tmp_path):
    good = _write(tmp_path / "a.jpg", RNG.integers(0, 256, (40, 50), dtype=np.uint8))
    progressive = tmp_path / "p.jpg"
    assert cv2.imwrite(str(progressive), np.zeros((40, 50), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_shape(progressive) == (40, 50)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 10])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated JPEG"):
        image_shape(tmp_path / "cut.jpg")
    (tmp_path / "short.IMG").write_bytes(b"\x00" * 100)
    with pytest.raises(ImageReadError, match=r"short\.IMG: raw file has 100 bytes"):
        image_shape(tmp_path / "short.IMG")
    (tmp_path / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 20)
    with pytest.raises(ImageReadError, match=r"bad\.dcm: cannot read DICOM header"):
        image_shape(tmp_path / "bad.dcm")
    bmp = _write(tmp_path / "a.bmp", np.zeros((3, 4), np.uint8))
    assert image_shape(bmp) == (3, 4)
    assert image_shape(f"{bmp};{good}") == (3, 4)
