"""A minimal DICOM writer for the data-layer tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    **tags,
) -> Path:
    """A minimal valid DICOM file (explicit VR little endian, uncompressed) holding `pixels`.

    `pixels` is `(H, W)`, `(frames, H, W)` or `(H, W, 3)` for RGB.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PhotometricInterpretation = photometric
    color = photometric.startswith("RGB") or photometric.startswith("YBR")
    ds.SamplesPerPixel = 3 if color else 1
    if color:
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = pixels.shape[:2]
    elif pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
        ds.Rows, ds.Columns = pixels.shape[1:]
    else:
        ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
