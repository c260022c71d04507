"""Read medical images and masks into the arrays every other layer expects.

`read_image` returns a `float32 (H, W)` array in `[0, 1]`, grayscale, from PNG, JPEG, BMP, GIF, TIFF,
DICOM (through pydicom) and headerless raw files such as the JSRT `.IMG` radiographs (`RawFormat`);
`read_mask` returns a `uint8 (H, W)` array in `{0, 1}`. `size` is an int (square) or `(height, width)`.
Multi-frame files need `frame`; images over `max_pixels()` (`UREP_MAX_PIXELS`) are refused before decoding.
Scaling, colour, DICOM LUTs, resizing and mask binarization: docs/choices.md, "Data".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from urep.data.errors import ImageReadError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
Size = int | tuple[int, int]

#: File name suffixes decoded with OpenCV.
OPENCV_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
#: File name suffixes read as DICOM (files with another suffix are also read as DICOM when they carry the
#: "DICM" preamble).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
#: File name suffixes read as headerless raw data (see `RawFormat`).
RAW_SUFFIXES = (".img", ".raw")

#: Separator between the parts of a mask made of several files (e.g. left and right lung).
MASK_SEPARATOR = ";"

#: Default cap on the pixels of one image (height x width); see `max_pixels`.
DEFAULT_MAX_PIXELS = 100_000_000
#: Environment variable that changes the cap (an integer number of pixels).
MAX_PIXELS_ENV = "UREP_MAX_PIXELS"


def max_pixels() -> int:
    """The largest image (height x width) the readers decode: `$UREP_MAX_PIXELS` or `DEFAULT_MAX_PIXELS`.

    The largest public chest radiographs are about 4k x 4k (16 MP), so 100 MP leaves room while refusing a
    few-hundred-kilobyte PNG that claims 20000 x 20000 pixels (it would need gigabytes to decode).

    Raises:
        ValueError: the environment variable is not a positive integer (it is named).
    """
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${MAX_PIXELS_ENV} must be a positive integer number of pixels, got {text!r}")
    return value


def _check_pixels(path: Path, height: int, width: int) -> None:
    cap = max_pixels()
    if height * width > cap:
        raise _fail(path, f"the image is {height}x{width} = {height * width:,} pixels, above the limit of "
                          f"{cap:,} (set ${MAX_PIXELS_ENV} to allow larger images)")


@dataclass(frozen=True)
class RawFormat:
    """Layout of a headerless raw image file.

    The default is the JSRT database's `.IMG` files: 2048x2048 pixels, 12-bit values stored in big-endian
    unsigned 16-bit words, no header, with high values meaning dark (more film density), hence `invert`.

    Attributes:
        shape: `(height, width)` in pixels.
        dtype: NumPy dtype string of one stored value, with byte order (`">u2"` is big-endian uint16).
        bits: number of significant bits; values are divided by `2**bits - 1`.
        invert: whether high values are dark (then the result is `1 - value`).
    """

    shape: tuple[int, int] = (2048, 2048)
    dtype: str = ">u2"
    bits: int = 12
    invert: bool = True


JSRT_RAW = RawFormat()


def _as_hw(size: Size) -> tuple[int, int]:
    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if is_int(size):
        hw = (int(size), int(size))
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and all(map(is_int, size)):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}")
    if min(hw) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return hw


def _fail(path: Path, reason: str) -> ImageReadError:
    return ImageReadError(f"cannot read image {path}: {reason}")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "it is a directory, not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _fail(path, f"{type(err).__name__}: {err}") from err
    if not data:
        raise _fail(path, "the file is empty (0 bytes)")
    return data


def _is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _kind(path: Path, data: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES or _is_dicom_bytes(data):
        return "dicom"
    if suffix in RAW_SUFFIXES:
        return "raw"
    if suffix in OPENCV_SUFFIXES:
        return "opencv"
    raise _fail(
        path,
        f"unsupported file type {suffix or '(no suffix)'!r}; expected one of "
        f"{', '.join(OPENCV_SUFFIXES + DICOM_SUFFIXES + RAW_SUFFIXES)} or a DICOM file with a DICM preamble",
    )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_TAIL_BYTES = 4096


def _check_not_truncated(path: Path, head: bytes, tail: bytes) -> None:
    """OpenCV decodes a truncated JPEG without error (gray bottom rows); check the end markers instead.

    `head` is the start of the file and `tail` its last `_TAIL_BYTES` bytes (or all of it).
    """
    if head[:3] == _JPEG_SIGNATURE and b"\xff\xd9" not in tail:
        raise _fail(path, "truncated JPEG (no end-of-image marker)")
    if head[:8] == _PNG_SIGNATURE and b"IEND" not in tail[-64:]:
        raise _fail(path, "truncated PNG (no IEND chunk)")


def _decode_opencv(path: Path, data: bytes, frame: int | None) -> np.ndarray:
    _check_not_truncated(path, data, data[-_TAIL_BYTES:])
    shape = _png_shape(data[:64]) or _jpeg_shape(data[: 1 << 16])
    if shape is not None:
        _check_pixels(path, *shape)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if path.suffix.lower() in (".tif", ".tiff"):
        ok, pages = cv2.imdecodemulti(buffer, cv2.IMREAD_UNCHANGED)
        if not ok or not pages:
            raise _fail(path, "OpenCV could not decode it as TIFF (corrupt, truncated or not an image)")
        return _pick_frame(path, list(pages), frame, what="page")
    array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise _fail(path, "OpenCV could not decode it (corrupt, truncated or not an image)")
    _check_pixels(path, *array.shape[:2])
    if frame not in (None, 0):
        raise _fail(path, f"frame={frame} was asked for, but this file holds a single image")
    return array


def _pick_frame(path: Path, frames: Sequence[np.ndarray], frame: int | None, what: str) -> np.ndarray:
    count = len(frames)
    if frame is None:
        if count > 1:
            raise _fail(path, f"multi-{what} file with {count} {what}s; pass frame=0..{count - 1} to choose one")
        return frames[0]
    if not 0 <= frame < count:
        raise _fail(path, f"frame={frame} is out of range; the file has {count} {what}(s)")
    return frames[frame]


def _color_to_gray(array: np.ndarray, order: str) -> np.ndarray:
    """`(H, W, C)` -> `(H, W)`; `order` is "bgr" (OpenCV) or "rgb" (DICOM); alpha is dropped."""
    if array.shape[-1] == 1:
        return array[..., 0]
    if array.shape[-1] not in (3, 4):
        raise ValueError(f"expected 1, 3 or 4 channels, got {array.shape[-1]}")
    rgb = array[..., :3].astype(np.float32)
    code = cv2.COLOR_BGR2GRAY if order == "bgr" else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(rgb, code)


def _scale_by_type(path: Path, array: np.ndarray, source_dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(source_dtype, np.integer):
        info = np.iinfo(source_dtype)
        if info.min < 0:
            return (array.astype(np.float32) - np.float32(info.min)) / np.float32(info.max - info.min)
        return array.astype(np.float32) / np.float32(info.max)
    if np.issubdtype(source_dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise _fail(path, "floating-point image holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return array.astype(np.float32)
        if high == low:
            return np.zeros_like(array, dtype=np.float32)
        return ((array.astype(np.float64) - low) / (high - low)).astype(np.float32)
    raise _fail(path, f"unsupported pixel type {source_dtype}")


def _read_opencv(path: Path, data: bytes, frame: int | None) -> np.ndarray:
    array = _decode_opencv(path, data, frame)
    source_dtype = array.dtype
    if array.ndim == 3:
        array = _color_to_gray(array, "bgr")
    return _scale_by_type(path, array, source_dtype)


def _read_raw(path: Path, data: bytes, raw: RawFormat, frame: int | None) -> np.ndarray:
    dtype = np.dtype(raw.dtype)
    expected = raw.shape[0] * raw.shape[1] * dtype.itemsize
    if len(data) != expected:
        raise _fail(
            path,
            f"raw file has {len(data)} bytes but {raw.shape[0]}x{raw.shape[1]} values of {raw.dtype} need "
            f"{expected} (truncated file, or pass another RawFormat)",
        )
    if frame not in (None, 0):
        raise _fail(path, f"frame={frame} was asked for, but a raw file holds a single image")
    _check_pixels(path, *raw.shape)
    values = np.frombuffer(data, dtype=dtype).reshape(raw.shape).astype(np.float32)
    top = 2**raw.bits - 1
    if values.max() > top:
        raise _fail(path, f"raw values reach {values.max():.0f}, above the {raw.bits}-bit maximum {top}")
    scaled = values / top
    return 1.0 - scaled if raw.invert else scaled


# --- DICOM -------------------------------------------------------------------------------------------------


def _dicom_stored_range(ds) -> tuple[float, float]:
    """Range of the Modality LUT output, as the standard defines it for windowing (PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
    return low, high


def _dicom_gray(ds, array: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(array, ds)
    if ds.get("VOILUTSequence"):
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        low, high = 0.0, float(2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        low, high = _dicom_stored_range(ds)
    else:
        low, high = _dicom_stored_range(ds)
    if high <= low:
        raise ValueError(f"empty output range [{low}, {high}]")
    scaled = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    scaled = np.clip(scaled, 0.0, 1.0)
    if str(ds.PhotometricInterpretation).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled


def _dicom_color(ds, array: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.PhotometricInterpretation).upper()
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        top = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    else:
        top = float(2 ** int(ds.BitsStored) - 1)
    if array.ndim != 3:
        raise ValueError(f"colour image ({photometric}) decoded to shape {array.shape}, expected (H, W, 3)")
    return np.clip(_color_to_gray(array, "rgb").astype(np.float64) / top, 0.0, 1.0)


def _read_dicom(path: Path, frame: int | None) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise _fail(path, f"not a DICOM file ({err})") from err
    except Exception as err:  # pydicom raises many kinds on damaged headers; report them all as read errors
        raise _fail(path, f"damaged DICOM header ({type(err).__name__}: {err})") from err
    if "PixelData" not in ds:
        raise _fail(path, "DICOM file has no pixel data (PixelData element missing)")
    if "Rows" not in ds or "Columns" not in ds:
        raise _fail(path, "DICOM file lacks Rows/Columns, so its pixel data cannot be decoded")
    _check_pixels(path, int(ds.Rows), int(ds.Columns))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frame is None and frames > 1:
        raise _fail(path, f"multi-frame DICOM with {frames} frames; pass frame=0..{frames - 1} to choose one")
    if frame is not None and not 0 <= frame < frames:
        raise _fail(path, f"frame={frame} is out of range; the file has {frames} frame(s)")
    try:
        from pydicom.pixels import pixel_array

        array = pixel_array(ds, index=frame if frames > 1 else None)
        photometric = str(ds.PhotometricInterpretation).upper()
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            return _dicom_gray(ds, array)
        return _dicom_color(ds, array)
    except ImageReadError:
        raise
    except Exception as err:  # decoder errors: truncated pixel data, unsupported transfer syntax, ...
        raise _fail(path, f"cannot decode DICOM pixel data ({type(err).__name__}: {err})") from err


# --- public API --------------------------------------------------------------------------------------------


def _read_native(path: PathLike, frame: int | None, raw: RawFormat) -> np.ndarray:
    """Decode a file to a fresh float `(H, W)` array in `[0, 1]` at its own size (float32 for integer pixels)."""
    path = Path(path)
    data = _read_bytes(path)
    kind = _kind(path, data)
    if kind == "dicom":
        image = _read_dicom(path, frame)
    elif kind == "raw":
        image = _read_raw(path, data, raw, frame)
    else:
        image = _read_opencv(path, data, frame)
    if image.ndim != 2:
        raise _fail(path, f"decoded to shape {image.shape}, expected a 2-D image")
    return image


def resize_image(image: np.ndarray, size: Size) -> np.ndarray:
    """Resize a float image with OpenCV bicubic interpolation and clip it back to `[0, 1]`.

    Args:
        image: `(H, W)` float array in `[0, 1]`.
        size: int (square) or `(height, width)`.

    Returns:
        `(height, width)` float32 array in `[0, 1]`.
    """
    height, width = _as_hw(size)
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """Resize a `{0, 1}` mask with nearest-neighbour interpolation.

    Args:
        mask: `(H, W)` uint8 array in `{0, 1}`.
        size: int (square) or `(height, width)`.

    Returns:
        `(height, width)` uint8 array in `{0, 1}`.
    """
    height, width = _as_hw(size)
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape[:2] != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask


def read_image(
    path: PathLike,
    size: Size | None = None,
    frame: int | None = None,
    *,
    raw: RawFormat = JSRT_RAW,
) -> np.ndarray:
    """Read one image as grayscale `float32` in `[0, 1]`.

    How each format is scaled (DICOM rescale, VOI/window, MONOCHROME1 inversion, bit depth, colour to gray,
    raw JSRT files): docs/choices.md, "Data".

    Args:
        path: image file (PNG, JPEG, BMP, GIF, TIFF, DICOM, or raw `.img`/`.raw`).
        size: output size, an int (square) or `(height, width)`; `None` keeps the file's size. Resizing is
            OpenCV bicubic, clipped back to `[0, 1]`.
        frame: 0-based frame of a multi-frame DICOM or page of a multi-page TIFF; required for those files.
        raw: layout of headerless raw files (default: JSRT `.IMG`).

    Returns:
        `(H, W)` float32 array in `[0, 1]`.

    Raises:
        ImageReadError: the file is missing, empty, truncated, corrupt, not an image, multi-frame without
            `frame`, or `frame` is out of range. The message names the file and the reason.
        ValueError: `size` is not an int or a `(height, width)` pair.
    """
    if size is not None:
        _as_hw(size)
    image = _read_native(path, frame, raw)
    if size is None:
        image = np.asarray(image, dtype=np.float32)  # the decoders return a fresh array: clip it in place
        return np.clip(image, 0.0, 1.0, out=image)
    return resize_image(image, size)


def split_mask_parts(mask: PathLike | Sequence[PathLike]) -> list[Path]:
    """The files that make up one mask: a path, a `"left;right"` string, or a sequence of paths."""
    if isinstance(mask, (str, os.PathLike)):
        parts = [part.strip() for part in str(mask).split(MASK_SEPARATOR)]
        return [Path(part) for part in parts if part]
    return [Path(part) for part in mask]


def _binarize(path: Path, values: np.ndarray) -> np.ndarray:
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.ndim != 2:
        raise _fail(path, f"mask decoded to shape {values.shape}, expected (H, W)")
    top = float(values.max())
    if top <= 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return (values > top / 2.0).astype(np.uint8)


def _read_one_mask(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    kind = _kind(path, data)
    if kind == "opencv":
        return _binarize(path, _decode_opencv(path, data, None).astype(np.float64))
    return _binarize(path, _read_native(path, None, JSRT_RAW))


def read_mask(path: PathLike | Sequence[PathLike], size: Size | None = None) -> np.ndarray:
    """Read a binary mask as `uint8` in `{0, 1}`.

    A mask can be made of several files (e.g. the left and right lung masks of Montgomery or SCR/JSRT):
    pass a sequence of paths or one string joined with `";"`; the result is their union.

    A file is binarized at half its maximum (foreground: value `> max / 2`, maximum over colour channels);
    an all-zero mask stays all zero. Resizing is nearest-neighbour.

    Args:
        path: mask file, `"a.png;b.png"`, or a sequence of mask files of equal size.
        size: output size, int or `(height, width)`; `None` keeps the file's size.

    Returns:
        `(H, W)` uint8 array in `{0, 1}`.

    Raises:
        ImageReadError: a file is missing, corrupt or not an image, no file was given, or the parts differ
            in size.
        ValueError: `size` is not an int or a `(height, width)` pair.
    """
    if size is not None:
        _as_hw(size)
    mask = combine_masks(split_mask_parts(path))
    return mask if size is None else resize_mask(mask, size)


def combine_masks(paths: Iterable[PathLike]) -> np.ndarray:
    """Union of several mask files of the same size.

    Args:
        paths: mask files.

    Returns:
        `(H, W)` uint8 array in `{0, 1}`.

    Raises:
        ImageReadError: no path was given, a file cannot be read, or two parts differ in size (both named).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageReadError("cannot read mask: no mask file was given")
    union = _read_one_mask(paths[0])
    for other in paths[1:]:
        part = _read_one_mask(other)
        if part.shape != union.shape:
            raise ImageReadError(
                f"cannot combine masks: {paths[0]} is {union.shape[0]}x{union.shape[1]} but {other} is "
                f"{part.shape[0]}x{part.shape[1]}"
            )
        union = np.maximum(union, part)
    return union


def _png_shape(head: bytes) -> tuple[int, int] | None:
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_shape(head: bytes) -> tuple[int, int] | None:
    """Height and width from the first start-of-frame segment, or None when it is not in `head`."""
    if head[:3] != _JPEG_SIGNATURE:
        return None
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _head_and_tail(path: Path, head_bytes: int) -> tuple[bytes, bytes]:
    with open(path, "rb") as handle:
        head = handle.read(head_bytes)
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        handle.seek(max(end - _TAIL_BYTES, 0))
        tail = handle.read()
    return head, tail


def image_shape(path: PathLike, raw: RawFormat = JSRT_RAW) -> tuple[int, int]:
    """`(height, width)` of an image or mask file, read cheaply where the format allows it.

    PNG and JPEG sizes come from their headers (and the file's end is checked for truncation), DICOM sizes
    from Rows/Columns (pixel data not read), raw files from `raw` (the file size is checked); other formats
    are decoded. For a multi-part mask (`"a;b"`) the first part is used. A PNG/JPEG whose middle is damaged
    passes this check and fails later in `read_image`.

    Args:
        path: image or mask file.
        raw: layout of headerless raw files.

    Returns:
        `(height, width)` in pixels.

    Raises:
        ImageReadError: the file is missing, empty, truncated or its header cannot be read.
    """
    parts = split_mask_parts(path)
    if not parts:
        raise ImageReadError("cannot read image: no file was given")
    path = parts[0]
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "it is a directory, not a file")
    suffix = path.suffix.lower()
    head, tail = _head_and_tail(path, 1 << 16)
    if not head:
        raise _fail(path, "the file is empty (0 bytes)")
    if suffix in RAW_SUFFIXES and not _is_dicom_bytes(head):
        expected = raw.shape[0] * raw.shape[1] * np.dtype(raw.dtype).itemsize
        size = path.stat().st_size
        if size != expected:
            raise _fail(path, f"raw file has {size} bytes but {raw.shape[0]}x{raw.shape[1]} values of "
                              f"{raw.dtype} need {expected} (truncated file, or pass another RawFormat)")
        return raw.shape
    _check_not_truncated(path, head, tail)
    shape = _png_shape(head) or _jpeg_shape(head)
    if shape is not None:
        return shape
    if suffix in DICOM_SUFFIXES or _is_dicom_bytes(head):
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # any header problem is a read error for this file
            raise _fail(path, f"cannot read DICOM header ({type(err).__name__}: {err})") from err
        if "Rows" not in ds or "Columns" not in ds:
            raise _fail(path, "cannot read DICOM header: it has no Rows/Columns (no image; is the pixel data missing?)")
        try:
            return int(ds.Rows), int(ds.Columns)
        except Exception as err:  # any header problem is a read error for this file
            raise _fail(path, f"cannot read DICOM header ({type(err).__name__}: {err})") from err
    return _read_native(path, 0 if suffix in (".tif", ".tiff") else None, raw).shape
