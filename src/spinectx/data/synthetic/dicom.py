"""DICOM writing of the synthetic series: one MR Image Storage dataset per frame.

:class:`SyntheticSeries` holds a series' acquisition parameters, patient geometry (LPS mm) and
pixels; :func:`series_template` builds the elements its instances share and
:func:`instance_dataset` one instance (file meta, SOP UID, InstanceNumber, ImagePositionPatient,
SliceLocation, pixels; optionally RLE Lossless).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, RLELossless

from .seeding import UID_PREFIX

__all__ = ["SyntheticSeries", "series_template", "instance_dataset", "ds_num", "hhmmss"]


@dataclass
class SyntheticSeries:
    """One series: ``pixels`` (n, rows, cols) uint16 and per-frame ``positions`` (n, 3) LPS mm
    (ImagePositionPatient), both in slice-position order; ``orientation`` the six
    ImageOrientationPatient values; ``pixel_spacing`` (dy, dx) mm = DICOM PixelSpacing (row, column
    spacing); ``sop_uids``/``filenames`` per frame."""

    role: str  # "t1_sag" | "t2_sag" | "t2_ax" (RSNA adds "t2_ax2")
    uid: str
    number: int
    description: str
    echo_time: float
    repetition_time: float
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # (dy, dx) = DICOM PixelSpacing
    slice_thickness: float
    spacing_between_slices: float | None
    positions: np.ndarray  # (n, 3) ImagePositionPatient, slice-position order
    pixels: np.ndarray  # (n, rows, cols) uint16, slice-position order
    sop_uids: list[str]  # slice-position order
    filenames: list[str]  # slice-position order



def hhmmss(secs: int) -> str:
    """DICOM TM ``HHMMSS`` of ``secs`` seconds after midnight (wrapping at 24 h)."""
    return f"{secs // 3600 % 24:02d}{secs // 60 % 60:02d}{secs % 60:02d}"


def ds_num(v: float, nd: int = 4) -> str:
    """A DICOM DS string of ``v`` with at most ``nd`` decimals and no trailing zeros (``-0`` → ``0``)."""
    s = f"{v:.{nd}f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def series_template(common: dict, ser: SyntheticSeries) -> Dataset:
    """Every element shared by the instances of one series.

    ``common`` holds the study's shared values: ``date``, ``time``, ``series_time[role]``,
    ``accession``, ``manufacturer``, ``patient_name``, ``patient_id``, ``sex``, ``age``, ``field``,
    ``study_uid``, ``frame_uid``, ``window[role]`` (centre, width).
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = common["date"]
    ds.SeriesDate = common["date"]
    ds.ContentDate = common["date"]
    ds.StudyTime = common["time"]
    ds.SeriesTime = common["series_time"][ser.role]
    ds.ContentTime = common["series_time"][ser.role]
    ds.AccessionNumber = common["accession"]
    ds.Modality = "MR"
    ds.Manufacturer = common["manufacturer"]
    ds.InstitutionName = "SPINECTX SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "LUMBAR SPINE"
    ds.SeriesDescription = ser.description
    ds.ManufacturerModelName = "PHANTOM"
    ds.PatientName = common["patient_name"]
    ds.PatientID = common["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = common["sex"]
    ds.PatientAge = common["age"]
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = ds_num(ser.slice_thickness)
    ds.RepetitionTime = ds_num(ser.repetition_time, 1)
    ds.EchoTime = ds_num(ser.echo_time, 2)
    ds.EchoTrainLength = 4 if ser.role == "t1_sag" else 17
    ds.MagneticFieldStrength = common["field"]
    if ser.spacing_between_slices is not None:
        ds.SpacingBetweenSlices = ds_num(ser.spacing_between_slices)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = common["study_uid"]
    ds.SeriesInstanceUID = ser.uid
    ds.StudyID = "1"
    ds.SeriesNumber = ser.number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [ds_num(float(v)) for v in ser.orientation]
    ds.FrameOfReferenceUID = common["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(ser.pixels.shape[1])
    ds.Columns = int(ser.pixels.shape[2])
    ds.PixelSpacing = [ds_num(ser.pixel_spacing[0]), ds_num(ser.pixel_spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = common["window"][ser.role][0]
    ds.WindowWidth = common["window"][ser.role][1]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    return ds


def instance_dataset(
    template: Dataset,
    ser: SyntheticSeries,
    i: int,
    *,
    instance_number: int | None = None,
    orientation: Sequence[float] | None = None,
    rle: bool = False,
) -> Dataset:
    """The dataset of frame ``i`` of ``ser`` (slice-position order), ready for ``save_as``.

    ``instance_number`` defaults to ``i + 1``; ``orientation`` overrides the template's
    ImageOrientationPatient for this frame (a series holding stacks of different orientation);
    ``rle`` stores the pixels RLE Lossless instead of Explicit VR Little Endian.
    """
    # element-wise copies of the template (cheap; no re-validation) so that datasets stay independent
    ds = Dataset({tag: copy.copy(elem) for tag, elem in template.items()})
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = ser.sop_uids[i]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID_PREFIX + "1"
    meta.ImplementationVersionName = "SPINECTX_SYN"
    ds.file_meta = meta
    ds.SOPInstanceUID = ser.sop_uids[i]
    ds.InstanceNumber = i + 1 if instance_number is None else int(instance_number)
    pos = ser.positions[i]
    ds.ImagePositionPatient = [ds_num(float(v)) for v in pos]
    iop = ser.orientation if orientation is None else tuple(orientation)
    if orientation is not None:
        ds.ImageOrientationPatient = [ds_num(float(v)) for v in iop]
    normal = np.cross(np.array(iop[:3]), np.array(iop[3:]))
    ds.SliceLocation = ds_num(float(np.dot(pos, normal)))
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(ser.pixels[i]).astype("<u2").tobytes())
    if rle:
        # sets the transfer syntax and encapsulates the frame; keep the (deterministic) SOP Instance UID
        ds.compress(RLELossless, generate_instance_uid=False)
    return ds


