"""Reading DICOM files: headers for indexing, pixel data decoded to float32 for training.

Pixel values come back as float32 [rows, cols] with RescaleSlope/Intercept applied and
MONOCHROME1 inverted (so that high always means bright). Compressed transfer syntaxes are decoded
by pydicom's pixel plugins: RLE by pydicom itself; JPEG baseline, extended (12-bit) and lossless,
JPEG-LS and JPEG 2000 by pylibjpeg (libjpeg, openjpeg), and by gdcm where installed. Uncompressed
data may be little or big endian, explicit or implicit VR; 12-bit data stored in 16-bit words is
masked (and sign-extended) to its BitsStored by pydicom.

What real archives hold beyond the textbook file, and how it is read:

* **Files without the 128-byte preamble, the ``DICM`` prefix or the file meta group** (older PACS
  exports): read with pydicom's ``force=True`` when the file holds a DICOM dataset (an SOP UID or
  a Modality); the transfer syntax is decided from the encoding pydicom detected (implicit or
  explicit VR, little or big endian) or, for encapsulated pixel data, from the codestream's own
  markers (:func:`sniff_transfer_syntax`). Anything else stays unreadable, with its reason.
* **Multi-frame (Enhanced MR) files**: every frame is a slice of its own (:func:`read_headers`);
  position, orientation and spacing come from the per-frame functional groups, else the shared
  ones, else the top-level elements; a frame is decoded on its own (``frame=`` of
  :func:`read_frame`). A multi-frame file is never read silently as its first frame.
* **Pixel headers that make decoding impossible** (BitsStored above BitsAllocated, packed 12-bit
  data, a data length that is not what Rows × Columns × frames × BitsAllocated describes, ...)
  are refused by :func:`pixel_header_problems` before decoding, naming the file and the elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from spinectx.data.errors import DicomError

HEADER_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
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
    "NumberOfFrames",
    "AcquisitionNumber",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class FrameRef(NamedTuple):
    """One 2-D image on disk: a file, and the frame of it for multi-frame files (0-based; None
    for a single-frame file). ``str()`` names it in messages."""

    path: str
    frame: int | None = None

    def __str__(self) -> str:
        return self.path if self.frame is None else f"{self.path} [frame {self.frame}]"


@dataclass(frozen=True)
class SliceHeader:
    """What indexing needs from one image of a DICOM file (no pixel data).

    ``orientation``: ImageOrientationPatient (row direction xyz, column direction xyz) or None;
    ``position``: ImagePositionPatient (mm) or None; ``pixel_spacing``: (dy, dx) mm or None;
    ``frame``: 0-based frame of a multi-frame file (None for a single-frame file), of
    ``num_frames`` frames.
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
    frame: int | None = None
    num_frames: int = 1
    acquisition_number: int | None = None

    @property
    def ref(self) -> FrameRef:
        """This image as a :class:`FrameRef` (file + frame)."""
        return FrameRef(self.path, self.frame)

    @property
    def key(self) -> tuple[str, int | None]:
        """(SOP instance UID, frame): what identifies the image across copies of its file."""
        return self.instance_uid, self.frame


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
        out = kind(value)
    except (TypeError, ValueError):
        return None
    return out if kind is not float or math.isfinite(out) else None


# --------------------------------------------------------------------------------------------
# reading files, with or without preamble and file meta


def _looks_like_dicom(ds: pydicom.Dataset) -> bool:
    """A dataset read with ``force=True`` is accepted only when it names an SOP instance or class
    or a modality: random bytes parse into one or two nonsense elements and none of these."""
    return any(ds.get(k) for k in ("SOPInstanceUID", "SOPClassUID", "Modality", "StudyInstanceUID"))


_JPEG_SOF = {0xC0: JPEGBaseline8Bit, 0xC1: JPEGExtended12Bit, 0xC3: JPEGLosslessSV1, 0xF7: JPEGLSLossless}


def sniff_transfer_syntax(fragment: bytes) -> UID | None:
    """The transfer syntax of an encapsulated frame, read off its codestream.

    JPEG family: the first start-of-frame marker (SOF0 baseline → 1.2.840.10008.1.2.4.50, SOF1
    extended → .51, SOF3 lossless → .70, SOF55 JPEG-LS → .80; decoders of these read the lossy
    and near-lossless variants too); JPEG 2000: the SOC+SIZ markers or the JP2 signature box
    (→ .91, whose decoder reads lossless streams too); RLE: the 64-byte segment header (→ .5).
    None when nothing matches.
    """
    if fragment[:4] == b"\xff\x4f\xff\x51" or fragment[4:8] == b"jP  ":
        return JPEG2000
    if fragment[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(fragment):
            if fragment[i] != 0xFF:
                return None
            marker = fragment[i + 1]
            if marker in _JPEG_SOF:
                return _JPEG_SOF[marker]
            i += 2 + int.from_bytes(fragment[i + 2:i + 4], "big")
        return None
    if len(fragment) >= 64:
        segments = int.from_bytes(fragment[:4], "little")
        offsets = [int.from_bytes(fragment[4 + 4 * j:8 + 4 * j], "little") for j in range(15)]
        used = offsets[:segments]
        if 1 <= segments <= 15 and used[0] == 64 and all(a < b for a, b in zip(used, used[1:])) \
                and all(o == 0 for o in offsets[segments:]) and used[-1] < len(fragment):
            return RLELossless
    return None


def _set_transfer_syntax(ds: pydicom.Dataset, path: Path) -> None:
    """Give a dataset read without file meta the transfer syntax its bytes were written in."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    ds.file_meta = meta if meta is not None else pydicom.dataset.FileMetaDataset()
    elem = ds["PixelData"] if "PixelData" in ds else None
    raw = getattr(elem, "value", None) if elem is not None else None
    if elem is not None and getattr(elem, "is_undefined_length", False) and isinstance(raw, bytes):
        from pydicom.encaps import generate_fragments

        try:  # item 0 is the Basic Offset Table; the codestream starts in the next item
            first = next((f for k, f in enumerate(generate_fragments(raw)) if k > 0 and f), b"")
        except Exception:  # noqa: BLE001 - malformed encapsulation: reported below
            first = b""
        syntax = sniff_transfer_syntax(first)
        if syntax is None:
            raise DicomError(path, "compressed (encapsulated) pixel data without a transfer syntax: the file has no "
                                   "file meta group and the codestream is not JPEG, JPEG-LS, JPEG 2000 or RLE")
        ds.file_meta.TransferSyntaxUID = syntax
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little is False:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _dcmread(path: Path, **kwargs) -> pydicom.Dataset:
    """``pydicom.dcmread``, also for files without preamble / ``DICM`` / file meta, raising
    DicomError (naming the file and the reason) for anything that is not a DICOM dataset."""
    errors = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError)
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as exc:
        first = exc
    except errors as exc:
        raise DicomError(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from exc
    try:
        ds = pydicom.dcmread(path, force=True, **kwargs)
    except errors as exc:
        raise DicomError(path, f"unreadable DICOM file: no 'DICM' prefix, and reading it as a raw DICOM dataset "
                               f"failed ({type(exc).__name__}: {exc})") from first
    if not _looks_like_dicom(ds):
        raise DicomError(path, "unreadable DICOM file: no 'DICM' prefix, and no DICOM dataset in it (no SOP "
                               "instance, study or modality element)")
    return ds


# --------------------------------------------------------------------------------------------
# headers


def _first(seq_owner, keyword: str):
    """Item 0 of a sequence element, or None."""
    seq = seq_owner.get(keyword) if seq_owner is not None else None
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _group_value(groups: list, sequence: str, keyword: str):
    """The first value of ``keyword`` inside ``sequence`` of the functional-group items given
    (per-frame first, then shared), else None."""
    for group in groups:
        item = _first(group, sequence)
        if item is not None and item.get(keyword) is not None:
            return item.get(keyword)
    return None


def read_headers(path: str | Path) -> list[SliceHeader]:
    """Read the indexing fields of one DICOM file without decoding pixels: one header per image.

    A single-frame file gives one header (``frame`` None). A multi-frame file (NumberOfFrames > 1,
    e.g. Enhanced MR) gives one header per frame (``frame`` 0 … n−1, file order). Geometry comes
    from the frame's PerFrameFunctionalGroupsSequence item, else SharedFunctionalGroupsSequence,
    else the top-level elements (PlanePositionSequence → position, PlaneOrientationSequence →
    orientation, PixelMeasuresSequence → spacing, MREchoSequence → echo time,
    MRTimingAndRelatedParametersSequence → repetition time); Enhanced files of one frame each are
    read the same way.

    Raises:
        DicomError: the file is not a readable DICOM file, lacks the UIDs, has a malformed header
            element, or is a multi-frame file whose frames cannot be given a geometry (no
            functional groups, or fewer per-frame items than frames).
    """
    path = Path(path)
    ds = _dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    try:
        return _headers_of(ds, path)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed element (wrong length, bad value) raises many types
        raise DicomError(path, f"unreadable DICOM header element ({type(exc).__name__}: {exc})") from exc


def _headers_of(ds: pydicom.Dataset, path: Path) -> list[SliceHeader]:
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not ds.get(k)]
    if missing:
        raise DicomError(path, f"DICOM header lacks {', '.join(missing)}")
    base = SliceHeader(
        path=str(path),
        study_uid=str(ds.StudyInstanceUID).strip(),
        series_uid=str(ds.SeriesInstanceUID).strip(),
        instance_uid=str(ds.SOPInstanceUID).strip(),
        description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_number(ds.get("SeriesNumber"), int),
        instance_number=_number(ds.get("InstanceNumber"), int),
        echo_time=_number(ds.get("EchoTime")),
        repetition_time=_number(ds.get("RepetitionTime")),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        rows=int(_number(ds.get("Rows"), int) or 0),
        cols=int(_number(ds.get("Columns"), int) or 0),
        acquisition_number=_number(ds.get("AcquisitionNumber"), int),
    )
    frames = _number(ds.get("NumberOfFrames"), int) or 1
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if shared is None and not per_frame:
        if frames <= 1:
            return [base]
        raise DicomError(path, f"multi-frame file of {frames} frames without functional groups: the frames' "
                               "positions are unknown, so they cannot be ordered as slices")
    if per_frame and len(per_frame) != frames:
        raise DicomError(path, f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {frames} frames "
                               "(NumberOfFrames): the frames' geometry cannot be matched to them")
    out = []
    for f in range(frames):
        groups = [g for g in ((per_frame[f] if per_frame else None), shared) if g is not None]
        echo = _group_value(groups, "MREchoSequence", "EffectiveEchoTime")
        tr = _group_value(groups, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
        out.append(replace(
            base,
            frame=f if frames > 1 else None,
            num_frames=frames,
            position=_floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3) or base.position,
            orientation=_floats(_group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            or base.orientation,
            pixel_spacing=_floats(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2) or base.pixel_spacing,
            echo_time=_number(echo) if echo is not None else base.echo_time,
            repetition_time=_number(tr) if tr is not None else base.repetition_time,
        ))
    return out


def read_header(path: str | Path) -> SliceHeader:
    """The header of a single-frame file; for a multi-frame file, that of its first frame with
    ``num_frames`` telling how many there are (use :func:`read_headers` for every frame).

    Raises:
        DicomError: the file is not a readable DICOM file or lacks the UIDs.
    """
    return read_headers(path)[0]


# --------------------------------------------------------------------------------------------
# pixel header checks and decoding

_NATIVE_BITS = (1, 8, 16, 32, 64)
_SAMPLES_OF = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3,
               "YBR_FULL_422": 3, "YBR_ICT": 3, "YBR_RCT": 3, "YBR_PARTIAL_420": 3}


def _int_element(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def expected_pixel_bytes(ds: pydicom.Dataset) -> int:
    """Bytes that uncompressed pixel data of ``ds`` needs (Rows × Columns × SamplesPerPixel ×
    NumberOfFrames × BitsAllocated / 8; 1-bit data packed), from its header."""
    rows, cols = _int_element(ds, "Rows", 0) or 0, _int_element(ds, "Columns", 0) or 0
    samples = _int_element(ds, "SamplesPerPixel", 1) or 1
    frames = _int_element(ds, "NumberOfFrames", 1) or 1
    bits = _int_element(ds, "BitsAllocated", 16) or 16
    if "FloatPixelData" in ds:
        bits = 32
    elif "DoubleFloatPixelData" in ds:
        bits = 64
    return (rows * cols * samples * frames * bits + 7) // 8


def pixel_header_problems(ds: pydicom.Dataset) -> list[str]:
    """Why the image pixel elements of ``ds`` cannot describe decodable pixel data (empty when
    they can). Checked: Rows/Columns ≥ 1; NumberOfFrames ≥ 1; SamplesPerPixel 1 or 3 and as
    PhotometricInterpretation needs; PixelRepresentation 0/1; BitsAllocated 1, 8, 16, 32 or 64
    for native data (packed 12-bit data is not DICOM) and 32/64 for float data; 1 ≤ BitsStored ≤
    BitsAllocated; HighBit < BitsAllocated; and for native data a length that Rows × Columns ×
    SamplesPerPixel × NumberOfFrames × BitsAllocated accounts for (short = truncated; more than
    two rows' worth beyond it = the header describes other data than the file holds, e.g. a
    Columns several pixels short; trailing padding of up to two rows is accepted, as real files
    carry it — pydicom's own ``MR_small_padded.dcm`` has one row). DICOM PS3.3 C.7.6.3 / C.8.3.1.
    """
    out: list[str] = []
    rows, cols = _int_element(ds, "Rows"), _int_element(ds, "Columns")
    if rows is None or cols is None or rows < 1 or cols < 1:
        out.append(f"invalid image size {ds.get('Rows')}×{ds.get('Columns')} (Rows, Columns)")
    frames = _int_element(ds, "NumberOfFrames", 1)
    if frames is None or frames < 1:
        out.append(f"NumberOfFrames {ds.get('NumberOfFrames')!r} is not a positive number")
    samples = _int_element(ds, "SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    if samples not in (1, 3):
        out.append(f"SamplesPerPixel {ds.get('SamplesPerPixel')!r} is neither 1 (grey) nor 3 (colour)")
    elif photometric in _SAMPLES_OF and _SAMPLES_OF[photometric] != samples:
        out.append(f"PhotometricInterpretation {photometric} needs SamplesPerPixel {_SAMPLES_OF[photometric]}, "
                   f"the header says {samples}")
    if _int_element(ds, "PixelRepresentation", 0) not in (0, 1):
        out.append(f"PixelRepresentation {ds.get('PixelRepresentation')!r} is neither 0 (unsigned) nor 1 (signed)")
    allocated = _int_element(ds, "BitsAllocated")
    stored = _int_element(ds, "BitsStored", allocated)
    high = _int_element(ds, "HighBit", (stored - 1) if stored else None)
    keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), "PixelData")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    compressed = syntax is not None and UID(syntax).is_compressed
    bits = allocated if keyword == "PixelData" else (32 if keyword == "FloatPixelData" else 64)
    if keyword != "PixelData":
        if allocated not in (None, bits):
            out.append(f"{keyword} needs BitsAllocated {bits}, the header says {allocated}")
    elif allocated is None:
        out.append(f"BitsAllocated {ds.get('BitsAllocated')!r} is missing or not a number")
    else:
        if not compressed and allocated not in _NATIVE_BITS:
            extra = " (packed 12-bit pixel data is not valid DICOM)" if allocated == 12 else ""
            out.append(f"BitsAllocated {allocated} is not 1, 8, 16, 32 or 64{extra}")
        if stored is None or not 1 <= stored <= allocated:
            out.append(f"BitsStored {ds.get('BitsStored')!r} does not fit BitsAllocated {allocated} "
                       "(1 ≤ BitsStored ≤ BitsAllocated)")
        if high is None or not 0 <= high < allocated:
            out.append(f"HighBit {ds.get('HighBit')!r} lies outside BitsAllocated {allocated}")
    if not out and not compressed:
        try:
            actual = len(ds[keyword].value or b"")
        except (KeyError, TypeError, ValueError) as exc:
            return [f"unreadable pixel data element ({type(exc).__name__}: {exc})"]
        expected = expected_pixel_bytes(ds)
        what = f"{rows}×{cols} pixels × {samples} sample(s) × {frames} frame(s) of {bits} bits"
        if actual < expected:
            out.append(f"pixel data truncated: {actual} bytes where {what} need {expected}")
        elif actual - expected > 2 * ((cols * samples * bits + 7) // 8):  # more than 2 rows: not padding
            out.append(f"pixel data holds {actual} bytes where {what} need {expected}: the header "
                       "(BitsAllocated, Rows, Columns, NumberOfFrames) does not describe the data")
    return out


def _rescale_of(ds: pydicom.Dataset, frame: int | None) -> tuple[float, float]:
    """(slope, intercept): top-level RescaleSlope/Intercept, else the frame's (or the shared)
    PixelValueTransformationSequence of an Enhanced file; (1, 0) when none is given."""
    slope, intercept = _number(ds.get("RescaleSlope")), _number(ds.get("RescaleIntercept"))
    if slope is None and intercept is None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        groups = [g for g in ((per_frame[frame] if frame is not None and frame < len(per_frame) else None),
                              _first(ds, "SharedFunctionalGroupsSequence")) if g is not None]
        slope = _number(_group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _number(_group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
    return (slope if slope else 1.0), (intercept or 0.0)


def decode_pixels(ds: pydicom.Dataset, path: str | Path = "<dataset>", frame: int | None = None) -> np.ndarray:
    """Pixel data of a loaded dataset → float32 [rows, cols], rescaled, MONOCHROME1 inverted.

    ``frame``: 0-based frame of a multi-frame dataset; required when it has more than one frame
    (never silently the first). Colour data gives its luminance.

    Raises:
        DicomError: naming the file, for impossible pixel headers (:func:`pixel_header_problems`),
            a multi-frame dataset without a valid ``frame``, or data that fails to decode.
    """
    from pydicom.pixels import pixel_array

    try:
        problems = pixel_header_problems(ds)
    except Exception as exc:  # noqa: BLE001 - a malformed element raises on access
        raise DicomError(path, f"unreadable image pixel element ({type(exc).__name__}: {exc})") from exc
    if problems:
        raise DicomError(path, "cannot decode pixel data: " + "; ".join(problems))
    frames = _int_element(ds, "NumberOfFrames", 1) or 1
    if frames > 1 and (frame is None or not 0 <= frame < frames):
        which = "no frame was chosen" if frame is None else f"frame {frame} does not exist"
        raise DicomError(path, f"multi-frame file of {frames} frames: {which} (frames are 0 … {frames - 1})")
    if frames == 1 and frame not in (None, 0):
        raise DicomError(path, f"frame {frame} asked of a single-frame file")
    try:
        pixels = pixel_array(ds, index=frame if frames > 1 else None)
    except Exception as exc:  # decoders raise many types (missing plugin, truncated stream, ...)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise DicomError(path, f"cannot decode pixel data (transfer syntax {name}): {type(exc).__name__}: {exc}") from exc
    image = np.asarray(pixels)
    if image.ndim == 3:  # colour: luminance
        image = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if image.ndim != 2:
        raise DicomError(path, f"unexpected pixel array shape {image.shape}")
    image = image.astype(np.float32)
    slope, intercept = _rescale_of(ds, frame)
    if slope != 1.0 or intercept != 0.0:
        image = image * np.float32(slope) + np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = image.max() + image.min() - image
    return image


def _read_with_pixels(path: Path) -> pydicom.Dataset:
    ds = _dcmread(path)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise DicomError(path, "DICOM file has no pixel data")
    _set_transfer_syntax(ds, path)
    return ds


def read_frame(path: str | Path | FrameRef, frame: int | None = None) -> np.ndarray:
    """Decode one image of a DICOM file to float32 [rows, cols] (see :func:`decode_pixels`).

    ``path`` may be a :class:`FrameRef` (file + frame); ``frame`` picks the frame of a
    multi-frame file (0-based, required there).

    Raises:
        DicomError: naming the file, when it cannot be read or decoded.
    """
    if isinstance(path, FrameRef):
        path, frame = path.path, path.frame if frame is None else frame
    path = Path(path)
    return decode_pixels(_read_with_pixels(path), path, frame)


def check_frame(path: str | Path | FrameRef, frame: int | None = None) -> np.ndarray:
    """Check that one image really decodes: the pixel header is possible
    (:func:`pixel_header_problems`) and the frame decodes to finite values. Returns the decoded
    float32 [rows, cols] image.

    Raises:
        DicomError: naming the file, when it is unreadable, has no pixel data, has an impossible
            pixel header, is truncated, fails to decode or decodes to non-finite values.
    """
    ref = path if isinstance(path, FrameRef) else FrameRef(str(path), frame)
    image = read_frame(ref)
    if not np.isfinite(image).all():
        raise DicomError(ref.path, "pixel data decodes to non-finite values (NaN or infinity)")
    return image
