"""From a dataset root to one record per annotated study (what the loader understood).

``build_index(root, splits, landmarks)`` reads ``<root>/<split>_annotation.json`` and indexes
``<root>/<split>/study*/`` (headers only), matching each annotation to its frame by instance UID;
of the pixel data it only checks each study's annotated frame. Every study that cannot be used
is reported in ``problems`` with the reason, naming the file; nothing is dropped without a count.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinectx.data.annotation import AnnotationFile, parse_annotations
from spinectx.data.dicom import check_frame
from spinectx.data.errors import DataError, DicomError
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.study import Series, StudyIndex, index_study

log = logging.getLogger(__name__)


@dataclass
class StudyRecord:
    """One annotated study, ready for training.

    ``keypoints`` [K, 2] (x, y) pixels of the annotated frame, NaN for missing landmarks;
    ``tags`` per landmark (empty for missing); ``slice_paths`` the annotated series' files in
    slice order, ``slice_index`` the annotated one; ``pixel_spacing`` (dy, dx) mm; ``shape``
    (rows, cols).
    """

    split: str
    study_uid: str
    folder: str
    series_uid: str
    instance_uid: str
    slice_paths: list[str]
    slice_index: int
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    keypoints: np.ndarray
    tags: list[tuple[str, ...]]
    problems: list[str] = field(default_factory=list)

    @property
    def frame_path(self) -> str:
        return self.slice_paths[self.slice_index]

    def landmarks_dict(self, landmarks: LandmarkSet) -> dict:
        """{identification: {"coord": [x, y], "tags": [...]}} for annotated landmarks."""
        out = {}
        for k, name in enumerate(landmarks.names):
            if np.isfinite(self.keypoints[k]).all():
                out[name] = {"coord": [float(v) for v in self.keypoints[k]], "tags": list(self.tags[k])}
        return out

    def to_json(self, landmarks: LandmarkSet) -> dict:
        return {
            "split": self.split,
            "study_uid": self.study_uid,
            "folder": self.folder,
            "series_uid": self.series_uid,
            "instance_uid": self.instance_uid,
            "frame": self.frame_path,
            "slice_index": self.slice_index,
            "num_slices": len(self.slice_paths),
            "pixel_spacing": list(self.pixel_spacing),
            "shape": list(self.shape),
            "landmarks": self.landmarks_dict(landmarks),
            "problems": list(self.problems),
        }


@dataclass
class DatasetIndex:
    """Records of all usable studies plus everything that was skipped, and why."""

    records: list[StudyRecord]
    problems: list[str]
    skipped_studies: list[str]
    skipped_identifications: Counter

    def totals(self, landmarks: LandmarkSet) -> dict:
        """Counts for a dataset check: studies, annotated landmarks, landmarks per class."""
        per_class: Counter = Counter()
        annotated = 0
        for r in self.records:
            for k, name in enumerate(landmarks.names):
                if np.isfinite(r.keypoints[k]).all():
                    annotated += 1
                    group = landmarks.group(name).name
                    for t in r.tags[k]:
                        per_class[f"{group}_{t}"] += 1
        return {
            "studies": len(self.records),
            "skipped_studies": len(self.skipped_studies),
            "landmarks": annotated,
            "missing_landmarks": len(self.records) * len(landmarks) - annotated,
            "per_class": dict(sorted(per_class.items())),
            "skipped_identifications": dict(sorted(self.skipped_identifications.items())),
            "problems": len(self.problems) + sum(len(r.problems) for r in self.records),
        }


def register_study(idx: StudyIndex, by_study: dict[str, StudyIndex], by_instance: dict[str, StudyIndex]) -> None:
    """Add a study to the lookups by study uid and by instance uid (the first folder wins)."""
    by_study.setdefault(idx.study_uid, idx)
    for s in idx.series.values():
        for h in s.slices:
            by_instance.setdefault(h.instance_uid, idx)


def _index_split_folders(split_dir: Path, problems: list[str]) -> tuple[dict[str, StudyIndex], dict[str, StudyIndex]]:
    """Index every study folder of a split → (by study uid, by instance uid)."""
    by_study: dict[str, StudyIndex] = {}
    by_instance: dict[str, StudyIndex] = {}
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        try:
            idx = index_study(folder)
        except DataError as exc:
            problems.append(str(exc))
            continue
        problems.extend(idx.problems)
        register_study(idx, by_study, by_instance)
    return by_study, by_instance


def _spacing_problem(spacing: tuple[float, float] | None) -> str | None:
    """Why a PixelSpacing cannot be used, or None when it is two positive finite numbers."""
    if spacing is None:
        return "PixelSpacing (0028,0030) is missing or not two numbers; it must give [row, column] spacing in mm"
    if not all(math.isfinite(v) for v in spacing):
        return f"PixelSpacing (0028,0030) is not finite ({spacing[0]:g}, {spacing[1]:g}); it must be two positive numbers (mm)"
    if not all(v > 0 for v in spacing):
        return f"PixelSpacing (0028,0030) is not positive ({spacing[0]:g}, {spacing[1]:g}); it must be two positive numbers (mm)"
    return None


def _usable_frame(series: Series, slice_index: int, problems: list[str]) -> list[str]:
    """Paths of ``series`` in slice order, with the annotated frame replaced by a copy that
    decodes when the first copy does not; raises DicomError (naming the file) when none does."""
    header = series.slices[slice_index]
    paths = [h.path for h in series.slices]
    try:
        check_frame(header.path)
        return paths
    except DataError as exc:
        first_error = exc
    for spare in series.duplicates.get(header.instance_uid, []):
        try:
            check_frame(spare.path)
        except DataError:
            continue
        problems.append(f"{first_error}; the annotated frame is read from its copy {spare.path}")
        paths[slice_index] = spare.path
        return paths
    raise DicomError(first_error.path, f"the annotated frame cannot be used: {first_error.problem}")


def _record_for(split: str, ann, idx: StudyIndex, landmarks: LandmarkSet, check_pixels: bool = True) -> StudyRecord:
    """Build one record; raises DataError (naming the file or folder) when the study is unusable."""
    found = idx.locate(ann.instance_uid)
    if found is None:
        count = sum(len(s.slices) for s in idx.series.values())
        context = f"the study's {count} readable DICOM files ({idx.summary()})"
        if not idx.find("sagittal"):
            context += "; the study has no sagittal series"
        raise DataError(idx.folder, f"annotated instance {ann.instance_uid} not found among {context}")
    series, slice_index = found
    header = series.slices[slice_index]
    if series.plane in ("axial", "coronal"):
        others = ", ".join(s.summary() for s in idx.find("sagittal"))
        raise DataError(
            header.path,
            f"the annotated frame lies in a {series.plane} series ({series.summary()}), not a sagittal one; "
            + (f"sagittal series: {others}" if others else "the study has no sagittal series"),
        )
    spacing_problem = _spacing_problem(header.pixel_spacing)
    if spacing_problem:
        raise DataError(header.path, spacing_problem)
    if header.rows <= 0 or header.cols <= 0:
        raise DataError(header.path, f"invalid image size {header.rows}×{header.cols} (Rows, Columns)")
    problems = list(ann.problems)
    if series.plane == "unknown":
        problems.append(f"{header.path}: no usable ImageOrientationPatient; cannot confirm the annotated frame is sagittal")
    keypoints = np.full((len(landmarks), 2), np.nan, dtype=np.float32)
    tags: list[tuple[str, ...]] = [() for _ in landmarks.names]
    outside = []
    for name, point in ann.points.items():
        x, y = point.coord
        if not (-0.5 <= x <= header.cols - 0.5 and -0.5 <= y <= header.rows - 0.5):
            outside.append(f"{name} at (x={x:g}, y={y:g})")
            problems.append(f"{header.path}: {outside[-1]} lies outside the {header.cols}×{header.rows} frame; landmark masked")
            continue
        k = landmarks.index[name]
        keypoints[k] = (x, y)
        tags[k] = point.tags
    if ann.skipped:
        problems.append(f"{idx.folder}: skipped identifications outside the landmark set: {sorted(ann.skipped)}")
    if not np.isfinite(keypoints).all(-1).any():
        if outside:
            detail = f"all {len(outside)} lie outside the {header.cols}×{header.rows} frame: {', '.join(outside)}"
        else:
            detail = "the annotation lists none of the landmark set"
        raise DataError(header.path, f"no usable landmark on the annotated frame ({detail})")
    slice_paths = _usable_frame(series, slice_index, problems) if check_pixels else [h.path for h in series.slices]
    return StudyRecord(
        split=split,
        study_uid=ann.study_uid,
        folder=idx.folder,
        series_uid=series.series_uid,
        instance_uid=ann.instance_uid,
        slice_paths=slice_paths,
        slice_index=slice_index,
        pixel_spacing=(float(header.pixel_spacing[0]), float(header.pixel_spacing[1])),
        shape=(header.rows, header.cols),
        keypoints=keypoints,
        tags=tags,
        problems=problems,
    )


def build_index(root: str | Path, splits: list[str], landmarks: LandmarkSet, check_pixels: bool = True) -> DatasetIndex:
    """Index the annotated studies of ``splits`` under ``root``.

    Only headers are read, except for each study's annotated frame when ``check_pixels``:
    uncompressed pixel data is checked by its length, compressed data decoded once, so that a
    truncated or undecodable annotated frame skips its study here (with a problem naming the
    file) rather than failing in a DataLoader worker mid-epoch.

    Raises:
        DataError: the root, a split folder or its annotation file is missing, or an annotation
            file is malformed (AnnotationError).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset root not found")
    records: list[StudyRecord] = []
    problems: list[str] = []
    skipped: list[str] = []
    skipped_ids: Counter = Counter()
    for split in splits:
        split_dir, ann_path = root / split, root / f"{split}_annotation.json"
        if not split_dir.is_dir():
            raise DataError(split_dir, f"split folder of '{split}' not found")
        if not ann_path.is_file():
            raise DataError(ann_path, f"annotation file of split '{split}' not found")
        annotations: AnnotationFile = parse_annotations(ann_path, landmarks)
        problems.extend(annotations.problems)
        skipped_ids.update(annotations.skipped_identifications)
        by_study, by_instance = _index_split_folders(split_dir, problems)
        for ann in annotations.studies:
            idx = by_instance.get(ann.instance_uid) or by_study.get(ann.study_uid)
            try:
                if idx is None:
                    raise DataError(split_dir, f"study {ann.study_uid}: no study folder holds it or its annotated instance {ann.instance_uid}")
                rec = _record_for(split, ann, idx, landmarks, check_pixels)
            except DataError as exc:
                problems.append(f"{exc}; study {ann.study_uid} skipped")
                skipped.append(ann.study_uid)
                log.warning("skipping study %s: %s", ann.study_uid, exc)
                continue
            records.append(rec)
    return DatasetIndex(records=records, problems=problems, skipped_studies=skipped, skipped_identifications=skipped_ids)
