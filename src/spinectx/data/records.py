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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from spinectx.data.annotation import AnnotationFile, parse_annotations
from spinectx.data.dicom import FrameRef, check_frame, read_headers
from spinectx.data.errors import ConfigError, DataError, DicomError
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.study import Stack, StudyIndex, index_subfolders, unique_studies

log = logging.getLogger(__name__)


@dataclass
class StudyRecord:
    """One annotated study, ready for training.

    ``keypoints`` [K, 2] (x, y) pixels of the annotated frame, NaN for missing landmarks;
    ``tags`` per landmark (empty for missing); ``slices`` the annotated stack's images in slice
    order (file + frame, see :class:`~spinectx.data.dicom.FrameRef`), ``slice_index`` the
    annotated one; ``pixel_spacing`` (dy, dx) mm; ``shape`` (rows, cols); ``stack`` a short
    description of the annotated stack.

    A record is one training *sample*: ``sample_id`` names it (the study uid for TianChi, where a
    study gives one sample; e.g. ``<study>_left`` for an RSNA foraminal side), ``study_uid`` is what
    folds split by, and ``meta`` holds what a reader knows beyond the frame (RSNA: the view, the
    submission row id of each landmark, the slice each point was labelled on).
    """

    split: str
    study_uid: str
    folder: str
    series_uid: str
    instance_uid: str
    slices: list[FrameRef]
    slice_index: int
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    keypoints: np.ndarray
    tags: list[tuple[str, ...]]
    problems: list[str] = field(default_factory=list)
    stack: str = ""
    sample_id: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sample_id = self.sample_id or self.study_uid

    @property
    def frame_ref(self) -> FrameRef:
        """The annotated image (file + frame)."""
        return self.slices[self.slice_index]

    @property
    def frame_path(self) -> str:
        """The file holding the annotated image."""
        return self.frame_ref.path

    @property
    def slice_paths(self) -> list[str]:
        """The files of ``slices`` (a multi-frame file appears once per frame)."""
        return [ref.path for ref in self.slices]

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
            "frame_number": self.frame_ref.frame,
            "stack": self.stack,
            "slice_index": self.slice_index,
            "num_slices": len(self.slices),
            "pixel_spacing": list(self.pixel_spacing),
            "shape": list(self.shape),
            "landmarks": self.landmarks_dict(landmarks),
            "problems": list(self.problems),
        }


@dataclass
class DatasetIndex:
    """Records of all usable studies plus everything that was skipped, and why.

    ``layout_problems``: what is wrong with the folder layout itself (e.g. study folders one
    level too deep); also the first entries of ``problems``. ``strata``: a label per study for
    stratified folds (RSNA: the worst labelled severity), empty when folds are not stratified.
    """

    records: list[StudyRecord]
    problems: list[str]
    skipped_studies: list[str]
    skipped_identifications: Counter
    layout_problems: list[str] = field(default_factory=list)
    strata: dict[str, int] = field(default_factory=dict)

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

    def why_too_few(self, limit: int = 3) -> str:
        """The reasons behind a small index, for an error message: the layout problems, else the
        first ``limit`` skipped-study problems."""
        reasons = self.layout_problems or [p for p in self.problems if p.endswith("skipped")] or self.problems
        if not reasons:
            return "no annotated study found"
        more = f" (and {len(reasons) - limit} more; run spinectx-data for the full report)" if len(reasons) > limit else ""
        return "; ".join(reasons[:limit]) + more


def study_lookups(indexes: Iterable[StudyIndex], problems: list[str]) -> tuple[dict[str, StudyIndex], dict[str, StudyIndex]]:
    """(by study uid, by SOP instance uid) over the studies that count under the duplicates
    rule (:func:`~spinectx.data.study.unique_studies`: the copy with the most images; the others
    are reported in ``problems``)."""
    by_study = unique_studies(indexes, problems)
    by_instance: dict[str, StudyIndex] = {}
    for idx in by_study.values():
        for stack in idx.stacks:
            for h in stack.slices:
                by_instance.setdefault(h.instance_uid, idx)
    return by_study, by_instance


def _holds_dicom(folder: Path) -> bool:
    """Whether a folder directly holds a file that reads as DICOM (the first few files tried)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files[:5]:
        try:
            read_headers(path)
            return True
        except DataError:
            continue
    return False


def layout_problem(split_dir: Path, max_depth: int = 3) -> str | None:
    """What is wrong with a split folder in which no study folder could be read, or None.

    Recognised: an empty folder; DICOM files lying directly in the split folder (no study
    folders); study folders one or more levels deeper (``<split>/<x>/<study>/*.dcm``, what
    unzipping an archive often gives) — named by the folder that holds them, whatever else
    (a README, ``__MACOSX``) sits beside them.
    """
    entries = [p for p in split_dir.iterdir() if not p.name.startswith(".")]
    layout = f"the layout is {split_dir.name}/<study folder>/<files>.dcm"
    if not entries:
        return f"{split_dir}: the split folder is empty ({layout})"
    if _holds_dicom(split_dir):
        files = sum(1 for p in entries if p.is_file())
        return f"{split_dir}: {files} files lie directly in the split folder, without study folders ({layout})"
    if any(_holds_dicom(d) for d in entries if d.is_dir()):
        return None
    level = [d for d in entries if d.is_dir()]
    for depth in range(2, max_depth + 2):
        level = [q for d in level for q in sorted(d.iterdir()) if q.is_dir() and not q.name.startswith((".", "__"))]
        holders = [q for q in level if _holds_dicom(q)]
        if holders:
            parents = sorted({q.parent for q in holders})
            where = ", ".join(str(p) for p in parents[:3]) + (f" and {len(parents) - 3} more" if len(parents) > 3 else "")
            extra = "one level" if depth == 2 else f"{depth - 1} levels"
            return (f"{split_dir}: the study folders sit {extra} deeper, in {where} ({len(holders)} folders); move them "
                    f"up into {split_dir} ({layout})")
    return f"{split_dir}: no folder below it holds DICOM files ({layout})"


def _index_split_folders(split_dir: Path, problems: list[str]) -> tuple[dict[str, StudyIndex], dict[str, StudyIndex]]:
    """Index every study folder of a split → (by study uid, by instance uid)."""
    indexes = [idx for _, idx in index_subfolders(split_dir, problems)]
    return study_lookups(indexes, problems)


def _spacing_problem(spacing: tuple[float, float] | None) -> str | None:
    """Why a PixelSpacing cannot be used, or None when it is two positive finite numbers."""
    if spacing is None:
        return "PixelSpacing (0028,0030) is missing or not two numbers; it must give [row, column] spacing in mm"
    if not all(math.isfinite(v) for v in spacing):
        return f"PixelSpacing (0028,0030) is not finite ({spacing[0]:g}, {spacing[1]:g}); it must be two positive numbers (mm)"
    if not all(v > 0 for v in spacing):
        return f"PixelSpacing (0028,0030) is not positive ({spacing[0]:g}, {spacing[1]:g}); it must be two positive numbers (mm)"
    return None


def _usable_frame(stack: Stack, slice_index: int, problems: list[str]) -> list[FrameRef]:
    """Images of ``stack`` in slice order, with the annotated image replaced by a copy that
    decodes when the first copy does not; raises DicomError (naming the file) when none does.
    The annotated image is really decoded (:func:`~spinectx.data.dicom.check_frame`), so every
    study whose frame cannot be read is skipped here, never in a DataLoader worker mid-epoch."""
    header = stack.slices[slice_index]
    refs = [h.ref for h in stack.slices]
    try:
        check_frame(header.ref)
        return refs
    except DataError as exc:
        first_error = exc
    for spare in stack.duplicates.get(header.key, []):
        try:
            check_frame(spare.ref)
        except DataError:
            continue
        problems.append(f"{first_error}; the annotated frame is read from its copy {spare.path}")
        refs[slice_index] = spare.ref
        return refs
    raise DicomError(first_error.path, f"the annotated frame cannot be used: {first_error.problem}")


def annotated_frame_number(ann) -> int | None:
    """The frame the annotation's points lie on: the most common valid zIndex of its points
    (only needed for multi-frame files), or None."""
    z = Counter(p.z_index for p in ann.points.values() if p.z_index is not None)
    return z.most_common(1)[0][0] if z else None


def _record_for(split: str, ann, idx: StudyIndex, landmarks: LandmarkSet, check_pixels: bool = True) -> StudyRecord:
    """Build one record; raises DataError (naming the file or folder) when the study is unusable."""
    found = idx.locate(ann.instance_uid, annotated_frame_number(ann))
    if found is None:
        count = sum(len(s.slices) for s in idx.stacks)
        context = f"the study's {count} readable DICOM images ({idx.summary()})"
        if not idx.find("sagittal"):
            context += "; the study has no sagittal series"
        raise DataError(idx.folder, f"annotated instance {ann.instance_uid} not found among {context}")
    stack, slice_index = found
    header = stack.slices[slice_index]
    if stack.plane in ("axial", "coronal"):
        others = ", ".join(s.summary() for s in idx.find("sagittal"))
        raise DataError(
            header.path,
            f"the annotated frame lies in a {stack.plane} series ({stack.summary()}), not a sagittal one; "
            + (f"sagittal series: {others}" if others else "the study has no sagittal series"),
        )
    spacing_problem = _spacing_problem(header.pixel_spacing)
    if spacing_problem:
        raise DataError(header.path, spacing_problem)
    if header.rows <= 0 or header.cols <= 0:
        raise DataError(header.path, f"invalid image size {header.rows}×{header.cols} (Rows, Columns)")
    problems = list(ann.problems)
    if ann.series_uid and ann.series_uid != stack.series_uid:
        problems.append(
            f"{header.path}: the annotation's seriesUid {ann.series_uid} is not the series holding instance "
            f"{ann.instance_uid} ({stack.series_uid}); the instance's own series is used (a sign of a broken export)"
        )
    if stack.plane == "unknown":
        problems.append(f"{header.path}: no usable ImageOrientationPatient; cannot confirm the annotated frame is sagittal")
    keypoints = np.full((len(landmarks), 2), np.nan, dtype=np.float32)
    tags: list[tuple[str, ...]] = [() for _ in landmarks.names]
    outside = []
    other_frame = []
    for name, point in ann.points.items():
        x, y = point.coord
        if header.frame is not None and point.z_index is not None and point.z_index != header.frame:
            other_frame.append(f"{name} (zIndex {point.z_index})")
            continue
        if not (-0.5 <= x <= header.cols - 0.5 and -0.5 <= y <= header.rows - 0.5):
            outside.append(f"{name} at (x={x:g}, y={y:g})")
            problems.append(f"{header.path}: {outside[-1]} lies outside the {header.cols}×{header.rows} frame; landmark masked")
            continue
        k = landmarks.index[name]
        keypoints[k] = (x, y)
        tags[k] = point.tags
    if other_frame:
        problems.append(f"{header.path}: {', '.join(other_frame)} lie on other frames of this multi-frame file than "
                        f"the annotated frame {header.frame} (the most common zIndex); landmarks masked")
    if ann.skipped:
        problems.append(f"{idx.folder}: skipped identifications outside the landmark set: {sorted(ann.skipped)}")
    if not np.isfinite(keypoints).all(-1).any():
        if outside:
            detail = f"all {len(outside)} lie outside the {header.cols}×{header.rows} frame: {', '.join(outside)}"
        elif ann.problems:
            detail = f"every point of the annotation was rejected; first: {ann.problems[0]}"
        else:
            detail = "the annotation lists none of the landmark set"
        raise DataError(header.path, f"no usable landmark on the annotated frame ({detail})")
    refs = _usable_frame(stack, slice_index, problems) if check_pixels else [h.ref for h in stack.slices]
    return StudyRecord(
        split=split,
        study_uid=ann.study_uid,
        folder=idx.folder,
        series_uid=stack.series_uid,
        instance_uid=ann.instance_uid,
        slices=refs,
        slice_index=slice_index,
        pixel_spacing=(float(header.pixel_spacing[0]), float(header.pixel_spacing[1])),
        shape=(header.rows, header.cols),
        keypoints=keypoints,
        tags=tags,
        problems=problems,
        stack=stack.summary(),
    )


def build_index(root: str | Path, splits: list[str], landmarks: LandmarkSet, check_pixels: bool = True) -> DatasetIndex:
    """Index the annotated studies of ``splits`` under ``root``.

    Only headers are read, except for each study's annotated frame when ``check_pixels``: it is
    decoded once, so that an impossible pixel header, a truncated or undecodable annotated frame
    skips its study here (with a problem naming the file) rather than failing in a DataLoader
    worker mid-epoch.

    Duplicates rule (the same everywhere): the first occurrence counts — splits in the order
    given, entries in file order (:func:`~spinectx.data.annotation.parse_annotations`), study
    folders by :func:`~spinectx.data.study.unique_studies`); every other occurrence is reported, naming
    both places, and left out, so a study never appears twice in the index or in folds.

    Raises:
        DataError: the root, a split folder or its annotation file is missing, or an annotation
            file is malformed (AnnotationError).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset root not found")
    splits = [splits] if isinstance(splits, str) else list(splits)  # one split given as a plain name
    records: list[StudyRecord] = []
    problems: list[str] = []
    layout: list[str] = []
    skipped: list[str] = []
    skipped_ids: Counter = Counter()
    seen: dict[str, str] = {}  # study uid → annotation file that gave it
    for split in splits:
        split_dir, ann_path = root / split, root / f"{split}_annotation.json"
        if not split_dir.is_dir():
            raise DataError(split_dir, f"split folder of '{split}' not found")
        if not ann_path.is_file():
            raise DataError(ann_path, f"annotation file of split '{split}' not found")
        annotations: AnnotationFile = parse_annotations(ann_path, landmarks)
        problems.extend(annotations.problems)
        skipped_ids.update(annotations.skipped_identifications)
        split_problems: list[str] = []
        by_study, by_instance = _index_split_folders(split_dir, split_problems)
        wrong_layout = layout_problem(split_dir) if not by_study else None
        if wrong_layout:
            layout.append(wrong_layout)
        problems.extend(split_problems)
        for ann in annotations.studies:
            if ann.study_uid in seen:
                problems.append(f"{ann_path}: study {ann.study_uid} is annotated again (first in {seen[ann.study_uid]}); "
                                "the first counts, this entry is ignored")
                continue
            seen[ann.study_uid] = str(ann_path)
            idx = by_instance.get(ann.instance_uid) or by_study.get(ann.study_uid)
            try:
                if idx is None:
                    hint = " (the split folder's layout is wrong: see the first problem)" if wrong_layout else ""
                    raise DataError(split_dir, f"study {ann.study_uid}: no study folder holds it or its annotated "
                                               f"instance {ann.instance_uid}{hint}")
                rec = _record_for(split, ann, idx, landmarks, check_pixels)
            except DataError as exc:
                problems.extend(ann.problems)  # the points' own problems explain many a skipped study
                problems.append(f"{exc}; study {ann.study_uid} skipped")
                skipped.append(ann.study_uid)
                log.warning("skipping study %s: %s", ann.study_uid, exc)
                continue
            records.append(rec)
    return DatasetIndex(records=records, problems=layout + problems, skipped_studies=skipped,
                        skipped_identifications=skipped_ids, layout_problems=layout)


class TianChiReader:
    """The TianChi 2020 layout (SPEC §2): ``<root>/<split>/<study>/*.dcm`` and
    ``<root>/<split>_annotation.json``, one sample per study. Readers give the DataModule the same
    records whatever the layout (:class:`~spinectx.data.rsna.RSNAReader` is the other one).

    Args:
        splits: split names read and pooled before folding (a single name is one split).
    """

    name = "tianchi"

    def __init__(self, splits: Sequence[str] | str = ("lumbar_train",)):
        self.splits = [splits] if isinstance(splits, str) else list(splits or [])
        if not self.splits or not all(isinstance(s, str) and s for s in self.splits):
            raise ConfigError(f"data.splits must be split names such as [lumbar_train], got {splits!r}")

    def index(self, root: str | Path, landmarks: LandmarkSet) -> DatasetIndex:
        """The annotated studies of the splits (:func:`build_index`)."""
        return build_index(root, self.splits, landmarks)

    def report(self, root: str | Path, landmarks: LandmarkSet) -> dict:
        """What ``spinectx-data`` writes: one entry per usable study, the skipped ones, every
        problem, totals."""
        index = self.index(root, landmarks)
        return {
            "root": str(root),
            "splits": list(self.splits),
            "landmarks": list(landmarks.names),
            "totals": index.totals(landmarks),
            "studies": [r.to_json(landmarks) for r in index.records],
            "skipped_studies": index.skipped_studies,
            "problems": index.problems + [p for r in index.records for p in r.problems],
        }
