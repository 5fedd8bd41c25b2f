"""RSNA 2024 Lumbar Spine Degenerative Classification, read as downloaded (SPEC §6).

Layout::

    <root>/train.csv                        study_id + 25 columns {condition}_{level} (severity or blank)
    <root>/train_label_coordinates.csv      study_id,series_id,instance_number,condition,level,x,y
    <root>/train_series_descriptions.csv    study_id,series_id,series_description
    <root>/train_images/<study_id>/<series_id>/<instance_number>.dcm

Reading is headers-only (:func:`~spinectx.data.study.index_folder`): series are split into stacks
by orientation and geometry, slices are ordered along the slice normal (ascending
dot(ImagePositionPatient, row × column direction)), and a coordinate's ``instance_number`` maps to
the file whose DICOM InstanceNumber it is — never to a file name (a file named otherwise is
reported). Each coordinate row is joined with its severity from ``train.csv``; a blank severity
stays ``None`` ("unlabelled": masked in the loss and the metric, never guessed).

**Views** turn a study into training samples in the suite's unit (one frame, K landmarks, one
class per landmark), one view per condition family (``data.view``):

* ``spinal`` — Sagittal T2/STIR, landmarks ``L1/L2`` … ``L5/S1``: the frame is the slice holding
  most of the labelled points; points labelled on other slices of the same stack keep their
  (x, y) on this frame (their own slice is recorded in ``meta["point_slices"]``);
* ``foraminal`` — Sagittal T1, one sample per side (left, right), the same 5 landmarks, on the
  slice holding most of that side's points;
* ``subarticular`` — Axial T2, one sample per level with landmarks ``left``, ``right`` on the
  slice holding the level's points. When left and right sit on different slices (reported), a
  point on another slice of the same stack keeps its (x, y), and a point in another stack or
  series is carried over through patient space (projected onto the frame's plane).

Ties: the stack holding most points, then the slice holding most of them; among equal slices the
one nearest the median of the points' slices (then the lower index).

Every fault (a coordinate on an unexpected series type, a series listed but missing on disk, a
study without images or labels, duplicated rows, an instance number not found, a point outside
its frame, ...) is reported with its file and counted; nothing here raises for a bad study.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinectx.data.dicom import SliceHeader, check_frame
from spinectx.data.errors import DataError
from spinectx.data.geometry import patient_to_pixel, pixel_to_patient
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.records import DatasetIndex, StudyRecord
from spinectx.data.study import Stack, index_folder

log = logging.getLogger(__name__)

LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
#: CSV spelling → (snake name used in train.csv columns and row ids, view, side)
CONDITIONS: dict[str, tuple[str, str, str | None]] = {
    "Spinal Canal Stenosis": ("spinal_canal_stenosis", "spinal", None),
    "Left Neural Foraminal Narrowing": ("left_neural_foraminal_narrowing", "foraminal", "left"),
    "Right Neural Foraminal Narrowing": ("right_neural_foraminal_narrowing", "foraminal", "right"),
    "Left Subarticular Stenosis": ("left_subarticular_stenosis", "subarticular", "left"),
    "Right Subarticular Stenosis": ("right_subarticular_stenosis", "subarticular", "right"),
}
#: train.csv value → class code (the submission's column names)
SEVERITIES = {"Normal/Mild": "normal_mild", "Moderate": "moderate", "Severe": "severe"}
SEVERITY_ORDER = ("normal_mild", "moderate", "severe")
#: the series type each view is labelled on (train_series_descriptions.csv spelling)
SERIES_OF_VIEW = {"spinal": "Sagittal T2/STIR", "foraminal": "Sagittal T1", "subarticular": "Axial T2"}
VIEWS = tuple(SERIES_OF_VIEW)
SIDES = ("left", "right")


def integer_id(value) -> str:
    """A study or series id as written in the CSVs → its text, ``"1045646.0"`` → ``"1045646"`` (what
    pandas writes for an integer column holding NaN); folder names and row ids use the integer form."""
    text = str(value).strip()
    head, dot, tail = text.partition(".")
    return head if dot and head.isdigit() and tail and set(tail) == {"0"} else text


def level_snake(level: str) -> str:
    """``"L4/L5"`` → ``"l4_l5"``."""
    return level.lower().replace("/", "_")


def label_column(condition: str, level: str) -> str:
    """train.csv column of a condition (CSV spelling) and level: ``spinal_canal_stenosis_l4_l5``."""
    return f"{CONDITIONS[condition][0]}_{level_snake(level)}"


def row_id(study_id: str, condition: str, level: str) -> str:
    """The submission's row id: ``{study_id}_{condition}_{level}`` in lower snake case (SPEC §6)."""
    return f"{study_id}_{label_column(condition, level)}"


LABEL_COLUMNS = tuple(label_column(c, lv) for c in CONDITIONS for lv in LEVELS)


# --------------------------------------------------------------------------------------------
# the CSV files


def read_csv_columns(path: Path, required: Iterable[str]):
    """A CSV read as text (blank cells stay ``""``) → DataFrame.

    Raises:
        DataError: naming the file: missing, unreadable, or lacking one of the ``required`` columns.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(path, "file not found" + (" (the RSNA 2024 layout needs train.csv, train_label_coordinates.csv "
                              "and train_series_descriptions.csv beside train_images/)" if path.name.startswith("train") else ""))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many parser errors
        raise DataError(path, f"unreadable CSV ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {list(frame.columns)}")
    return frame


@dataclass
class LabelPoint:
    """One row of train_label_coordinates.csv, joined and resolved.

    ``x, y``: (column, row) pixels of the instance; ``severity``: class code or None (blank);
    ``header``/``stack``/``slice_index``: the image it lies on (None when it could not be found,
    ``problem`` says why).
    """

    study_id: str
    series_id: str
    instance_number: int
    condition: str
    level: str
    x: float
    y: float
    severity: str | None = None
    header: SliceHeader | None = None
    stack: Stack | None = None
    slice_index: int | None = None
    problem: str | None = None

    @property
    def view(self) -> str:
        return CONDITIONS[self.condition][1]

    @property
    def side(self) -> str | None:
        return CONDITIONS[self.condition][2]


@dataclass
class RSNAStudy:
    """What the reader understood of one study: severities of its 25 rows (row id → class code
    or None), its coordinate points, its series (id → description) and their stacks."""

    study_id: str
    severities: dict[str, str | None]
    points: list[LabelPoint] = field(default_factory=list)
    series: dict[str, str] = field(default_factory=dict)
    stacks: dict[str, list[Stack]] = field(default_factory=dict)
    folder: str = ""
    problems: list[str] = field(default_factory=list)

    def worst_severity(self) -> int:
        """Index in SEVERITY_ORDER of the study's worst labelled severity, −1 when none is labelled
        (the fold stratum)."""
        values = [SEVERITY_ORDER.index(s) for s in self.severities.values() if s is not None]
        return max(values, default=-1)


def _read_labels(root: Path, problems: list[str]) -> dict[str, dict[str, str | None]]:
    """train.csv → {study_id: {row id: class code or None}} (every study listed, 25 rows each)."""
    path = root / "train.csv"
    frame = read_csv_columns(path, ["study_id"])
    unknown_cols = [c for c in frame.columns if c != "study_id" and c not in LABEL_COLUMNS]
    if unknown_cols:
        problems.append(f"{path}: columns not of the 25 condition-level labels ignored: {unknown_cols}")
    absent = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if absent:
        problems.append(f"{path}: {len(absent)} label columns missing (left blank): {absent[:5]}")
    out: dict[str, dict[str, str | None]] = {}
    for i, row in enumerate(frame.to_dict("records")):
        study = integer_id(row["study_id"])
        if not study:
            problems.append(f"{path}: line {i + 2}: empty study_id; row ignored")
            continue
        if study in out:
            problems.append(f"{path}: study {study} listed again on line {i + 2}; the first row counts")
            continue
        labels: dict[str, str | None] = {}
        for condition in CONDITIONS:
            for level in LEVELS:
                value = str(row.get(label_column(condition, level), "") or "").strip()
                code = SEVERITIES.get(value)
                if value and code is None:
                    problems.append(f"{path}: study {study}, {label_column(condition, level)}: unknown severity "
                                    f"{value!r} (expected {list(SEVERITIES)} or blank); left unlabelled")
                labels[row_id(study, condition, level)] = code
        out[study] = labels
    return out


def _read_series(root: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """train_series_descriptions.csv → {study_id: {series_id: description}}."""
    return read_series_descriptions(root / "train_series_descriptions.csv", problems)


def read_series_descriptions(path: str | Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """A series-description CSV (Kaggle ``train_series_descriptions.csv`` or
    ``test_series_descriptions.csv``: study_id, series_id, series_description) → {study_id:
    {series_id: description}}. Unknown descriptions and repeated series go to ``problems`` (the first
    row of a series counts).

    Raises:
        DataError: the file is missing, unreadable, or lacks one of the three columns.
    """
    path = Path(path)
    frame = read_csv_columns(path, ["study_id", "series_id", "series_description"])
    out: dict[str, dict[str, str]] = defaultdict(dict)
    known = set(SERIES_OF_VIEW.values())
    for i, row in enumerate(frame.to_dict("records")):
        study, series = (integer_id(row[k]) for k in ("study_id", "series_id"))
        desc = str(row["series_description"]).strip()
        if desc not in known:
            problems.append(f"{path}: line {i + 2}: study {study} series {series}: unknown series description "
                            f"{desc!r} (expected one of {sorted(known)})")
        if series in out[study]:
            if out[study][series] != desc:
                problems.append(f"{path}: line {i + 2}: series {series} of study {study} described twice "
                                f"({out[study][series]!r}, {desc!r}); the first counts")
            else:
                problems.append(f"{path}: line {i + 2}: series {series} of study {study} repeated (same description)")
            continue
        out[study].setdefault(series, desc)
    return dict(out)


def _read_coordinates(root: Path, labels: dict, problems: list[str]) -> dict[str, list[LabelPoint]]:
    """train_label_coordinates.csv → {study_id: [LabelPoint]} joined with the severities; rows with
    unknown conditions/levels, non-numeric values or a repeated (study, condition, level) are
    reported and left out (the first of repeated rows counts)."""
    path = root / "train_label_coordinates.csv"
    frame = read_csv_columns(path, ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"])
    out: dict[str, list[LabelPoint]] = defaultdict(list)
    seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(frame.to_dict("records")):
        where = f"{path}: line {i + 2}"
        study, series = integer_id(row["study_id"]), integer_id(row["series_id"])
        condition, level = str(row["condition"]).strip(), str(row["level"]).strip()
        if condition not in CONDITIONS:
            problems.append(f"{where}: unknown condition {condition!r} (expected one of {list(CONDITIONS)}); row ignored")
            continue
        if level not in LEVELS:
            problems.append(f"{where}: unknown level {level!r} (expected one of {list(LEVELS)}); row ignored")
            continue
        try:
            instance = int(float(row["instance_number"]))
            x, y = float(row["x"]), float(row["y"])
        except ValueError:
            problems.append(f"{where}: non-numeric instance_number/x/y "
                            f"({row['instance_number']!r}, {row['x']!r}, {row['y']!r}); row ignored")
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.append(f"{where}: non-finite coordinate ({x}, {y}); row ignored")
            continue
        key = (study, condition, level)
        if key in seen:
            problems.append(f"{where}: study {study} {condition} {level} labelled again (first on line {seen[key]}); "
                            "the first row counts")
            continue
        seen[key] = i + 2
        severity = labels.get(study, {}).get(row_id(study, condition, level))
        out[study].append(LabelPoint(study, series, instance, condition, level, x, y, severity))
    return dict(out)


# --------------------------------------------------------------------------------------------
# images


def _index_series(study: RSNAStudy, series_dir: Path) -> None:
    """Index one series folder into ``study.stacks`` (headers only), reporting files whose name is
    not their DICOM InstanceNumber and instance numbers held by more than one image."""
    try:
        indexes = index_folder(series_dir)
    except DataError as exc:
        study.problems.append(str(exc))
        return
    stacks = [s for idx in indexes for s in idx.stacks]
    for idx in indexes:
        study.problems.extend(idx.problems)
    study.stacks[series_dir.name] = stacks
    numbers: dict[int, str] = {}
    for stack in stacks:
        for h in stack.slices:
            stem = Path(h.path).stem
            if h.instance_number is None:
                study.problems.append(f"{h.path}: no InstanceNumber in the header; coordinates cannot refer to it")
                continue
            if stem != str(h.instance_number):
                study.problems.append(f"{h.path}: file name says instance {stem}, its DICOM InstanceNumber is "
                                      f"{h.instance_number}; the InstanceNumber counts")
            if h.instance_number in numbers and h.frame in (None, 0):
                study.problems.append(f"{h.path}: InstanceNumber {h.instance_number} also held by "
                                      f"{numbers[h.instance_number]}; the first in slice order counts")
            numbers.setdefault(h.instance_number, h.path)


def _resolve(point: LabelPoint, study: RSNAStudy, coords_path: Path) -> None:
    """Find the image a coordinate refers to (by DICOM InstanceNumber) and check the point."""
    where = f"{coords_path}: study {point.study_id} {point.condition} {point.level}"
    desc = study.series.get(point.series_id)
    expected = SERIES_OF_VIEW[point.view]
    if point.series_id not in study.stacks:
        if desc is None:
            point.problem = f"{where}: series {point.series_id} is neither listed nor on disk"
        else:
            point.problem = (f"{where}: series {point.series_id} ({desc}) is listed but missing on disk "
                             f"({Path(study.folder) / point.series_id})")
        return
    if desc is not None and desc != expected:
        point.problem = (f"{where}: coordinate on a {desc} series ({point.series_id}), where this condition is "
                         f"labelled on {expected}; left out")
        return
    for stack in study.stacks[point.series_id]:
        for i, h in enumerate(stack.slices):
            if h.instance_number == point.instance_number and h.frame in (None, 0):
                point.header, point.stack, point.slice_index = h, stack, i
                break
        if point.header is not None:
            break
    if point.header is None:
        point.problem = (f"{where}: instance {point.instance_number} not found in series {point.series_id} "
                         f"({Path(study.folder) / point.series_id})")
        return
    h = point.header
    if not (-0.5 <= point.x <= h.cols - 0.5 and -0.5 <= point.y <= h.rows - 0.5):
        point.problem = f"{h.path}: {point.condition} {point.level} at (x={point.x:g}, y={point.y:g}) lies outside " \
                        f"the {h.cols}×{h.rows} frame; left out"


def scan(root: str | Path, views: Iterable[str] = VIEWS) -> tuple[list[RSNAStudy], list[str]]:
    """Read the CSVs and index the image series the given views need → (studies, problems).

    Indexed per study: the series of the views' types (train_series_descriptions.csv) and the
    series their coordinates point at. Problems name the file (CSV line, folder or DICOM file).

    Raises:
        DataError: the root or one of the three CSV files is missing or unreadable.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset root not found")
    views = tuple(views)
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise DataError(root, f"unknown view(s) {unknown}; views are {list(VIEWS)}")
    problems: list[str] = []
    labels = _read_labels(root, problems)
    series = _read_series(root, problems)
    coords = _read_coordinates(root, labels, problems)
    images = root / "train_images"
    if not images.is_dir():
        raise DataError(images, "image folder train_images/ not found")
    on_disk = {p.name: p for p in images.iterdir() if p.is_dir()}
    wanted_types = {SERIES_OF_VIEW[v] for v in views}
    coords_path = root / "train_label_coordinates.csv"
    studies = []
    for study_id in sorted(set(labels) | set(coords) | set(series) | set(on_disk), key=_study_order):
        study = RSNAStudy(study_id, labels.get(study_id) or {}, series=series.get(study_id, {}),
                          folder=str(images / study_id))
        points = [p for p in coords.get(study_id, []) if p.view in views]
        study.points = points
        if study_id not in labels:
            study.problems.append(f"{root / 'train.csv'}: study {study_id} has no row (no labels); not used")
        elif all(v is None for v in study.severities.values()):
            study.problems.append(f"{root / 'train.csv'}: study {study_id} has no severity at all (no labels); not used")
        elif study_id not in coords:
            study.problems.append(f"{coords_path}: study {study_id} has severities in train.csv but no coordinate "
                                  "row; no training sample (nothing to place its labels on)")
        if study_id not in on_disk:
            study.problems.append(f"{images / study_id}: study without images (folder missing)")
            for p in points:
                p.problem = f"{coords_path}: study {study_id} {p.condition} {p.level}: the study has no images"
            studies.append(study)
            continue
        needed = {s for s, d in study.series.items() if d in wanted_types} | {p.series_id for p in points}
        folders = {p.name: p for p in on_disk[study_id].iterdir() if p.is_dir()}
        for sid in sorted(folders):
            if sid not in study.series:
                study.problems.append(f"{folders[sid]}: series folder not listed in train_series_descriptions.csv")
        for sid in sorted(needed):
            if sid in folders:
                _index_series(study, folders[sid])
            elif sid in study.series:
                study.problems.append(f"{on_disk[study_id] / sid}: series {sid} ({study.series[sid]}) is listed in "
                                      "train_series_descriptions.csv but missing on disk")
        for p in points:
            _resolve(p, study, coords_path)
        studies.append(study)
    return studies, problems


def _study_order(study_id: str):
    return (0, int(study_id), "") if study_id.isdigit() else (1, 0, study_id)


# --------------------------------------------------------------------------------------------
# views → records


def _frame_of(points: list[LabelPoint]) -> tuple[Stack, int]:
    """(stack, slice index) holding most of ``points`` (all resolved); ties go to the stack met
    first and then to the slice nearest the middle of the points' slices."""
    by_stack: dict[int, list[LabelPoint]] = defaultdict(list)
    stacks: dict[int, Stack] = {}
    for p in points:
        by_stack[id(p.stack)].append(p)
        stacks[id(p.stack)] = p.stack
    key = max(by_stack, key=lambda k: len(by_stack[k]))
    chosen = by_stack[key]
    counts = Counter(p.slice_index for p in chosen)
    best = max(counts.values())
    middle = float(np.median([p.slice_index for p in chosen]))
    slice_index = min((s for s, n in counts.items() if n == best), key=lambda s: (abs(s - middle), s))
    return stacks[key], slice_index


def _carry(point: LabelPoint, frame: SliceHeader) -> tuple[float, float, float]:
    """(x, y) of a point of another stack/series on ``frame``, through patient space, and its
    distance (mm) from the frame's plane."""
    patient = pixel_to_patient(point.header, (point.x, point.y))
    xy, distance = patient_to_pixel(frame, patient)
    return float(xy[0]), float(xy[1]), float(distance)


@dataclass
class _Sample:
    sample_id: str
    names: list[str]                       # landmark identification of each point slot
    points: dict[str, LabelPoint]          # identification → point
    rows: dict[str, str]                   # identification → row id
    meta: dict


def _make_record(study: RSNAStudy, sample: _Sample, landmarks: LandmarkSet, problems: list[str],
                 check_pixels: bool = True) -> StudyRecord | None:
    """One sample → a record on the frame holding most of its points (see the module docstring);
    None (with a problem) when none of its points can be used, or (``check_pixels``) when its
    frame does not decode."""
    usable = {n: p for n, p in sample.points.items() if p.problem is None}
    for p in sample.points.values():
        if p.problem is not None:
            problems.append(p.problem)
    if not usable:
        problems.append(f"{study.folder}: sample {sample.sample_id}: no usable labelled point; sample skipped")
        return None
    stack, slice_index = _frame_of(list(usable.values()))
    frame = stack.slices[slice_index]
    if frame.pixel_spacing is None or not all(v > 0 for v in frame.pixel_spacing):
        problems.append(f"{frame.path}: PixelSpacing (0028,0030) missing or not positive; sample {sample.sample_id} skipped")
        return None
    if check_pixels:  # decoded once here, so that a truncated or undecodable frame never reaches a worker
        try:
            check_frame(frame.ref)
        except DataError as exc:
            problems.append(f"{frame.path}: the frame of sample {sample.sample_id} does not decode ({exc}); "
                            "sample skipped")
            return None
    k = len(landmarks)
    keypoints = np.full((k, 2), np.nan, dtype=np.float32)
    tags: list[tuple[str, ...]] = [() for _ in range(k)]
    point_slices: list[int | None] = [None] * k
    rows: list[str | None] = [None] * k
    for name in landmarks.names:
        j = landmarks.index[name]
        rows[j] = sample.rows.get(name)
        severity = study.severities.get(rows[j]) if rows[j] else None
        tags[j] = (severity,) if severity else ()
        p = usable.get(name)
        if p is None:
            continue
        if p.stack is stack:
            keypoints[j] = (p.x, p.y)
            point_slices[j] = p.slice_index
            if p.slice_index != slice_index and sample.meta["view"] == "subarticular":
                problems.append(f"{p.header.path}: study {study.study_id} {p.condition} {p.level} is labelled on slice "
                                f"{p.slice_index} of its stack, the sample's frame is slice {slice_index}; its (x, y) "
                                "is kept on the frame")
            continue
        try:
            x, y, distance = _carry(p, frame)
        except DataError as exc:
            problems.append(f"{exc}; {p.condition} {p.level} of study {study.study_id} left out")
            continue
        if not (-0.5 <= x <= frame.cols - 0.5 and -0.5 <= y <= frame.rows - 0.5):
            problems.append(f"{p.header.path}: study {study.study_id} {p.condition} {p.level} falls outside the frame "
                            f"{frame.path} of the sample when carried over; left out")
            continue
        keypoints[j] = (x, y)
        problems.append(f"{p.header.path}: study {study.study_id} {p.condition} {p.level} lies in another stack or "
                        f"series than the sample's frame {frame.path}; carried over through patient space "
                        f"({distance:+.1f} mm from the frame's plane)")
    if not np.isfinite(keypoints).all(-1).any():
        problems.append(f"{frame.path}: sample {sample.sample_id}: no point could be placed on the frame; sample skipped")
        return None
    return StudyRecord(
        split="train",
        study_uid=study.study_id,
        folder=study.folder,
        series_uid=stack.series_uid,  # the DICOM SeriesInstanceUID; the RSNA series_id is meta["series_id"]
        instance_uid=frame.instance_uid,
        slices=[h.ref for h in stack.slices],
        slice_index=slice_index,
        pixel_spacing=(float(frame.pixel_spacing[0]), float(frame.pixel_spacing[1])),
        shape=(frame.rows, frame.cols),
        keypoints=keypoints,
        tags=tags,
        stack=stack.summary(),
        sample_id=sample.sample_id,
        meta={**sample.meta, "rows": rows, "point_slices": point_slices, "series_id": Path(frame.path).parent.name,
              "instance_number": frame.instance_number},
    )


def view_samples(study: RSNAStudy, view: str) -> list[_Sample]:
    """The samples a study gives in ``view`` (see the module docstring), before placement."""
    mine = [p for p in study.points if p.view == view]
    sid = study.study_id
    if view == "subarticular":
        out = []
        for level in LEVELS:
            points = {p.side: p for p in mine if p.level == level}
            rows = {side: row_id(sid, f"{side.capitalize()} Subarticular Stenosis", level) for side in SIDES}
            if points or any(study.severities.get(r) for r in rows.values()):
                out.append(_Sample(f"{sid}_{level_snake(level)}", list(SIDES), points, rows,
                                   {"view": view, "level": level}))
        return out
    sides = [None] if view == "spinal" else list(SIDES)
    out = []
    for side in sides:
        condition = next(c for c, (_, v, s) in CONDITIONS.items() if v == view and s == side)
        points = {p.level: p for p in mine if p.condition == condition}
        rows = {level: row_id(sid, condition, level) for level in LEVELS}
        if points or any(study.severities.get(r) for r in rows.values()):
            sample_id = sid if side is None else f"{sid}_{side}"
            out.append(_Sample(sample_id, list(LEVELS), points, rows,
                               {"view": view, "side": side, "condition": condition}))
    return out


def check_view_landmarks(view: str, landmarks: LandmarkSet) -> None:
    """The landmark set must name what the view yields (levels; or left/right for subarticular).

    Raises:
        DataError: it does not (naming the expected identifications).
    """
    expected = set(SIDES) if view == "subarticular" else set(LEVELS)
    if set(landmarks.names) != expected:
        raise DataError(f"data.landmarks ({view})", f"view {view!r} yields landmarks {sorted(expected)}, the landmark "
                                                    f"set has {list(landmarks.names)} "
                                                    f"(use conf/data/landmarks/rsna2024_{view}.yaml)")


def build_view_index(root: str | Path, view: str, landmarks: LandmarkSet) -> DatasetIndex:
    """The training samples of one view of an RSNA 2024 folder (see the module docstring).

    ``DatasetIndex.strata`` maps each study to its worst labelled severity (for stratified folds).

    Raises:
        DataError: a missing root/CSV, an unknown view, or a landmark set that does not fit it.
    """
    check_view_landmarks(view, landmarks)
    studies, problems = scan(root, [view])
    records: list[StudyRecord] = []
    skipped: list[str] = []
    for study in studies:
        problems.extend(study.problems)
        if not any(v is not None for v in study.severities.values()) or not Path(study.folder).is_dir():
            skipped.append(study.study_id)
            continue
        for sample in view_samples(study, view):
            rec = _make_record(study, sample, landmarks, problems)
            if rec is None:
                skipped.append(sample.sample_id)
            else:
                records.append(rec)
    index = DatasetIndex(records=records, problems=problems, skipped_studies=skipped,
                         skipped_identifications=Counter())
    index.strata = {s.study_id: s.worst_severity() for s in studies}
    return index


def report(root: str | Path, view: str | None = None, landmarks: LandmarkSet | None = None) -> dict:
    """What the reader understood of an RSNA 2024 folder (``spinectx-data data=rsna2024``):
    ``{"studies": [{"study_id", "points": [{"condition", "level", "series_id", "instance_number",
    "file", "slice_index", "coord": [x, y], "severity", "pixel_spacing": [row, col]}],
    "problems"}], "problems", "totals"}`` — ``file`` relative to the root, ``slice_index``
    0-based within its stack, ``severity`` null when blank; unresolved points have null ``file``.

    With ``view`` and its ``landmarks``, the view's training samples are also built, exactly as
    training builds them (frames decoded once): their problems (left and right on different
    slices or series, points carried between series, undecodable frames, skipped samples) join
    their study's, and ``totals.samples`` / ``totals.samples_skipped`` count them.

    Raises:
        DataError: a missing root/CSV, or a landmark set that does not fit ``view``.
    """
    root = Path(root)
    if view is not None:
        check_view_landmarks(view, landmarks)
    studies, problems = scan(root)
    out_studies = []
    totals: Counter = Counter()
    severities: Counter = Counter()
    for study in studies:
        points = []
        for p in study.points:
            h = p.header if p.problem is None else None
            points.append({
                "condition": p.condition,
                "level": p.level,
                "series_id": p.series_id,
                "instance_number": p.instance_number,
                "file": None if h is None else str(Path(h.path).relative_to(root)),
                "slice_index": None if h is None else p.slice_index,
                "coord": [p.x, p.y],
                "severity": p.severity,
                "pixel_spacing": None if h is None or h.pixel_spacing is None else list(h.pixel_spacing),
            })
            totals["points"] += 1
            totals["points_unresolved"] += h is None
        study_problems = study.problems + [p.problem for p in study.points if p.problem]
        labelled = any(v is not None for v in study.severities.values()) and Path(study.folder).is_dir()
        if view is not None and labelled:
            sample_problems: list[str] = []
            for sample in view_samples(study, view):
                made = _make_record(study, sample, landmarks, sample_problems) is not None
                totals["samples" if made else "samples_skipped"] += 1
            study_problems += list(dict.fromkeys(p for p in sample_problems if p not in study_problems))
        for value in study.severities.values():
            severities[value or "blank"] += 1
        out_studies.append({"study_id": study.study_id, "points": points, "problems": study_problems})
        totals["problems"] += len(study_problems)
    kinds = Counter(_problem_kind(p) for s in out_studies for p in s["problems"])
    kinds.update(_problem_kind(p) for p in problems)
    return {
        "root": str(root),
        "studies": out_studies,
        "problems": problems,
        "totals": {
            "studies": len(studies),
            "studies_with_images": sum(Path(s.folder).is_dir() for s in studies),
            "studies_with_labels": sum(any(v is not None for v in s.severities.values()) for s in studies),
            "points": totals["points"],
            "points_unresolved": totals["points_unresolved"],
            "labels": dict(sorted(severities.items())),
            "problems": len(problems) + totals["problems"],
            "problems_by_kind": dict(sorted(kinds.items())),
            **({"view": view, "samples": totals["samples"], "samples_skipped": totals["samples_skipped"]}
               if view is not None else {}),
        },
    }


_KINDS = (
    ("no usable labelled point", "sample without a usable point"),
    ("no point could be placed", "sample without a usable point"),
    ("when carried over", "carried point outside the frame"),
    ("carried over through patient space", "point carried between stacks or series"),
    ("the sample's frame is slice", "points of one sample on different slices"),
    ("but missing on disk", "series missing on disk"),
    ("neither listed nor on disk", "series unknown"),
    ("study without images", "study without images"),
    ("the study has no images", "coordinate of a study without images"),
    ("no labels", "study without labels"),
    ("but no coordinate row", "study without coordinates"),
    ("labelled again", "duplicated coordinate row"),
    ("listed again", "duplicated train.csv row"),
    ("described twice", "series described twice"),
    ("repeated (same description)", "duplicated series row"),
    ("non-numeric", "unreadable coordinate row"),
    ("non-finite coordinate", "unreadable coordinate row"),
    ("unknown condition", "unknown condition or level"),
    ("unknown level", "unknown condition or level"),
    ("unknown series description", "unknown series description"),
    ("does not decode", "undecodable frame"),
    ("unreadable DICOM", "unreadable DICOM file"),
    ("DICOM header lacks", "unreadable DICOM file"),
    ("where this condition is labelled on", "coordinate on an unexpected series type"),
    ("not found in series", "instance not found"),
    ("file name says instance", "file name is not the InstanceNumber"),
    ("outside the", "point outside its frame"),
    ("not listed in train_series_descriptions", "series folder not listed"),
    ("unknown severity", "unknown severity value"),
    ("holds", "series split into stacks"),
)


def _problem_kind(problem: str) -> str:
    return next((kind for marker, kind in _KINDS if marker in problem), "other")


class RSNAReader:
    """The RSNA 2024 layout (SPEC §6) as one view's training samples (see the module docstring).

    Args:
        view: ``spinal``, ``foraminal`` or ``subarticular``.
    """

    name = "rsna2024"

    def __init__(self, view: str = "spinal"):
        if view not in VIEWS:
            from spinectx.data.errors import ConfigError

            raise ConfigError(f"data.reader.view must be one of {list(VIEWS)}, got {view!r}")
        self.view = view

    def index(self, root: str | Path, landmarks: LandmarkSet) -> DatasetIndex:
        return build_view_index(root, self.view, landmarks)

    def report(self, root: str | Path, landmarks: LandmarkSet | None = None) -> dict:
        """What ``spinectx-data`` writes (:func:`report`): every point of every view, and, given the
        landmark set, this view's samples and their problems."""
        return report(root, self.view if landmarks is not None else None, landmarks)
