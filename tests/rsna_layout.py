"""A tiny RSNA 2024 Kaggle layout with known geometry, written from scratch for reader tests.

Each study has Sagittal T1 and Sagittal T2/STIR stacks of 9 slices (64×64, 1 mm pixels, slices
4 mm apart from patient left x = +16 to right x = −16) and an Axial T2 series of 10 slices
(z = 4 … 76 mm). Slice j has a background of 100·(j+1) (axial: 1000 + 10·j), a mark at rows
30–33, columns 30–33 on every slice and one at rows 4–7, columns 4 + 6j … 7 + 6j that tells the
slice apart (after intensity normalisation too). Level k (L1/L2 … L5/S1) sits at sagittal row
12 + 10k (z = 48 − 10k mm), column 32 (the canal); foramina at columns 20; recesses on the axial
frames at patient x = ±8 mm (columns 40 / 24), row 30.

``quirks`` (per study id) switch on the faults of SPEC §6 the reader must cope with.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
CONDITIONS = {
    "Spinal Canal Stenosis": "spinal_canal_stenosis",
    "Left Neural Foraminal Narrowing": "left_neural_foraminal_narrowing",
    "Right Neural Foraminal Narrowing": "right_neural_foraminal_narrowing",
    "Left Subarticular Stenosis": "left_subarticular_stenosis",
    "Right Subarticular Stenosis": "right_subarticular_stenosis",
}
SAG_X = [16.0 - 4.0 * j for j in range(9)]  # patient x (mm) of sagittal slice j: left (+) to right (−)
AX_Z = [4.0 + 8.0 * j for j in range(10)]


def level_row(k: int) -> float:
    return 12.0 + 10.0 * k


def level_z(k: int) -> float:
    return 60.0 - level_row(k)


def axial_slice_of(k: int) -> int:
    return int(np.argmin([abs(z - level_z(k)) for z in AX_Z]))


def _write(path: Path, series_uid: str, study_uid: str, desc: str, number: int, iop, ipp, value: int,
           instance_uid: str | None = None) -> str:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = instance_uid or generate_uid()
    ds.SOPClassUID = MRImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "MR", desc, number
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 4.0
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    image = np.full((64, 64), value, np.uint16)
    image[30:34, 30:34] = value + 50  # the same mark on every slice (for alignment checks)
    j = (value % 100) // 10 if value >= 1000 else value // 100 - 1
    image[4:8, 4 + 6 * j:8 + 6 * j] = value + 100  # a mark that tells the slice apart
    ds.PixelData = image.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def write_rsna_case(root: Path, studies: dict[str, dict], severities: dict | None = None) -> Path:
    """Write the layout for ``studies`` = {study_id: quirks} (quirk names in the code below) and
    return ``root``. ``severities``: {study_id: {column: value}} overriding the default labels
    (Normal/Mild everywhere but Severe at spinal L4/L5 and Moderate at left subarticular L5/S1)."""
    root = Path(root)
    images = root / "train_images"
    labels, coords, series_rows = [], [], []
    for sid, quirks in studies.items():
        study_uid = f"1.2.826.0.1.3680043.10.{sid}"
        t1, t2, ax, ax2 = f"{sid}1", f"{sid}2", f"{sid}3", f"{sid}4"
        series_rows += [(sid, t1, "Sagittal T1"), (sid, t2, "Sagittal T2/STIR"), (sid, ax, "Axial T2")]
        row = {f"{cond}_{lv.lower().replace('/', '_')}": "Normal/Mild" for cond in CONDITIONS.values() for lv in LEVELS}
        row["spinal_canal_stenosis_l4_l5"] = "Severe"
        row["left_subarticular_stenosis_l5_s1"] = "Moderate"
        row.update((severities or {}).get(sid, {}))
        if "blank" in quirks:
            row["right_neural_foraminal_narrowing_l1_l2"] = ""
        if "no_labels" not in quirks:
            labels.append({"study_id": sid, **row})
        if "no_images" not in quirks:
            for uid, desc in ((t1, "Sagittal T1"), (t2, "Sagittal T2/STIR")):
                if desc == "Sagittal T1" and "missing_series" in quirks:
                    continue
                for j, x in enumerate(SAG_X):
                    number = j + 1
                    name = f"{number}.dcm"
                    if "file_name_mismatch" in quirks and desc == "Sagittal T2/STIR" and j == 0:
                        name = "99.dcm"
                    _write(images / sid / uid / name, f"{study_uid}.{uid}", study_uid, desc, number,
                           (0, 1, 0, 0, 0, -1), (x, -40.0, 60.0), 100 * (j + 1))
            for j, z in enumerate(AX_Z):
                number = (len(AX_Z) - j) if "descending_instances" in quirks else j + 1
                _write(images / sid / ax / f"{number}.dcm", f"{study_uid}.{ax}", study_uid, "Axial T2", number,
                       (1, 0, 0, 0, 1, 0), (-32.0, -40.0, z), 1000 + 10 * j)
            if "multi_stack_axial" in quirks:  # a second, tilted stack under the same series UID
                c, s = np.cos(np.deg2rad(15)), np.sin(np.deg2rad(15))
                for j in range(4):
                    _write(images / sid / ax / f"{20 + j}.dcm", f"{study_uid}.{ax}", study_uid, "Axial T2", 20 + j,
                           (1, 0, 0, 0, c, s), (-32.0, -40.0, 20.0 + 4 * j), 3000 + j)
            if "subarticular_other_series" in quirks:
                series_rows.append((sid, ax2, "Axial T2"))
                for j, z in enumerate(AX_Z):
                    _write(images / sid / ax2 / f"{j + 1}.dcm", f"{study_uid}.{ax2}", study_uid, "Axial T2", j + 1,
                           (1, 0, 0, 0, 1, 0), (-32.0, -40.0, z), 2000 + 10 * j)
        for k, level in enumerate(LEVELS):
            spinal_slice = 5 if ("two_slices" in quirks and k >= 3) else 4
            coords.append((sid, t2, spinal_slice + 1, "Spinal Canal Stenosis", level, 32.0, level_row(k)))
            coords.append((sid, t1, 2, "Left Neural Foraminal Narrowing", level, 20.0, level_row(k)))
            coords.append((sid, t1, 8, "Right Neural Foraminal Narrowing", level, 20.0, level_row(k)))
            a = axial_slice_of(k)
            number = (len(AX_Z) - a) if "descending_instances" in quirks else a + 1
            coords.append((sid, ax, number, "Left Subarticular Stenosis", level, 40.0, 30.0))
            if "subarticular_other_series" in quirks and k == 4:
                coords.append((sid, ax2, a + 2, "Right Subarticular Stenosis", level, 24.0, 30.0))
            else:
                coords.append((sid, ax, number, "Right Subarticular Stenosis", level, 24.0, 30.0))
        if "duplicate_row" in quirks:
            coords.append(coords[-10])
        if "spinal_on_t1" in quirks:
            first = next(i for i, c in enumerate(coords) if c[0] == sid and c[3] == "Spinal Canal Stenosis")
            coords[first] = (sid, t1, 5) + coords[first][3:]
    root.mkdir(parents=True, exist_ok=True)
    columns = ["study_id"] + [f"{c}_{lv.lower().replace('/', '_')}" for c in CONDITIONS.values() for lv in LEVELS]
    with open(root / "train.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(labels)
    with open(root / "train_label_coordinates.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", "series_id", "instance_number", "condition", "level", "x", "y"])
        writer.writerows(coords)
    with open(root / "train_series_descriptions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", "series_id", "series_description"])
        writer.writerows(series_rows)
    return root
