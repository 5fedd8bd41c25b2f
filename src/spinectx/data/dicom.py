"""Reading DICOM files: headers for indexing, pixel data decoded to float32 for training.

Pixel values come back as float32 [rows, cols] with RescaleSlope/Intercept applied and
MONOCHROME1 inverted (so that high always means bright). Compressed transfer syntaxes are decoded
by pydicom's pixel plugins: RLE by pydicom itself; JPEG baseline, extended (12-bit) and lossless,
JPEG-LS and JPEG 2000 by pylibjpeg (libjpeg, openjpeg), and by gdcm where installed. Uncompressed
data may be little or big endian, explicit or implicit VR; 12-bit data stored in 16-bit words is
masked (and sign-extended) to its BitsStored by pydicom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from spinectx.data.errors import DicomError

HEADER_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "InstanceNumber",
    "EchoTime",
    "RepetitionTime",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class SliceHeader:
    """What indexing needs from one DICOM file (no pixel data).

    ``orientation``: ImageOrientationPatient (row direction xyz, column direction xyz) or None;
    ``position``: ImagePositionPatient (mm) or None; ``pixel_spacing``: (dy, dx) mm or None.
    """

    path: str
    study_uid: str
    series_uid: str
    instance_uid: str
    description: str
    series_number: int | None
    instance_number: int | None
    echo_time: float | None
    repetition_time: float | None
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    cols: int


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _number(value, kind=float):
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _dcmread(path: Path, **kwargs) -> pydicom.Dataset:
    """``pydicom.dcmread`` raising DicomError (naming the file) for anything unreadable."""
    try:
        return pydicom.dcmread(path, **kwargs)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DicomError(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from exc


def read_header(path: str | Path) -> SliceHeader:
    """Read the indexing fields of one DICOM file without decoding pixels.

    Raises:
        DicomError: the file is not a readable DICOM file or lacks the UIDs.
    """
    path = Path(path)
    ds = _dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not ds.get(k)]
    if missing:
        raise DicomError(path, f"DICOM header lacks {', '.join(missing)}")
    return SliceHeader(
        path=str(path),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        instance_uid=str(ds.SOPInstanceUID),
        description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_number(ds.get("SeriesNumber"), int),
        instance_number=_number(ds.get("InstanceNumber"), int),
        echo_time=_number(ds.get("EchoTime")),
        repetition_time=_number(ds.get("RepetitionTime")),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        rows=int(ds.get("Rows", 0) or 0),
        cols=int(ds.get("Columns", 0) or 0),
    )


def decode_pixels(ds: pydicom.Dataset, path: str | Path = "<dataset>") -> np.ndarray:
    """Pixel data of a loaded dataset → float32 [rows, cols], rescaled, MONOCHROME1 inverted.

    Multi-frame data returns its first frame; colour data its luminance.
    """
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # decoders raise many types (missing plugin, truncated stream, ...)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise DicomError(path, f"cannot decode pixel data (transfer syntax {name}): {type(exc).__name__}: {exc}") from exc
    frame = np.asarray(pixels)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frame.ndim == (3 if samples == 1 else 4):  # several frames: the first
        frame = frame[0]
    if frame.ndim == 3:  # colour: convert to luminance
        frame = frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if frame.ndim != 2:
        raise DicomError(path, f"unexpected pixel array shape {frame.shape}")
    image = frame.astype(np.float32)
    slope = _number(ds.get("RescaleSlope")) or 1.0
    intercept = _number(ds.get("RescaleIntercept")) or 0.0
    if slope != 1.0 or intercept != 0.0:
        image = image * np.float32(slope) + np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = image.max() + image.min() - image
    return image


def read_frame(path: str | Path) -> np.ndarray:
    """Decode one DICOM file to float32 [rows, cols] (see :func:`decode_pixels`).

    Raises:
        DicomError: naming the file, when it cannot be read or decoded.
    """
    path = Path(path)
    ds = _read_with_pixels(path)
    return decode_pixels(ds, path)


def _read_with_pixels(path: Path) -> pydicom.Dataset:
    ds = _dcmread(path)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise DicomError(path, "DICOM file has no pixel data")
    return ds


def expected_pixel_bytes(ds: pydicom.Dataset) -> int:
    """Bytes that uncompressed pixel data of ``ds`` needs (Rows × Columns × SamplesPerPixel ×
    NumberOfFrames × BitsAllocated / 8; 1-bit data packed), from its header."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = _number(ds.get("NumberOfFrames"), int) or 1
    bits = int(ds.get("BitsAllocated", 16) or 16)
    count = rows * cols * samples * frames
    if "FloatPixelData" in ds:
        bits = 32
    elif "DoubleFloatPixelData" in ds:
        bits = 64
    return (count * bits + 7) // 8


def check_frame(path: str | Path) -> None:
    """Check that the pixel data of one DICOM file can be decoded, cheaply where possible.

    Uncompressed data is checked by its length against Rows × Columns × BitsAllocated (no
    decoding); compressed data is decoded once.

    Raises:
        DicomError: naming the file, when it is unreadable, has no pixel data, is truncated or
            fails to decode.
    """
    path = Path(path)
    ds = _read_with_pixels(path)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        decode_pixels(ds, path)
        return
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    try:
        actual, expected = len(ds[keyword].value or b""), expected_pixel_bytes(ds)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DicomError(path, f"unreadable image header ({type(exc).__name__}: {exc})") from exc
    if expected == 0:
        raise DicomError(path, f"invalid image size {ds.get('Rows')}×{ds.get('Columns')} in the header")
    if actual < expected:
        raise DicomError(
            path,
            f"pixel data truncated: {actual} bytes where {ds.get('Rows')}×{ds.get('Columns')} pixels of "
            f"{ds.get('BitsAllocated')} bits need {expected}",
        )
