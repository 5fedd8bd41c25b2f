"""Indexing a study folder: images grouped into series and stacks, plane, weighting, slice order.

All series of a study live in one flat folder with meaningless file names (SPEC §2). A series
(one SeriesInstanceUID) may hold several **stacks**: images of different orientation (a localizer
or a second stack saved under the same UID, common in RSNA 2024 data, SPEC §6) or of different
matrix/pixel spacing. Everything that depends on geometry is decided per stack:

* stacks: images whose row and column directions agree within 1° and whose (Rows, Columns,
  PixelSpacing) agree;
* plane: from ImageOrientationPatient (the slice normal row × column points mostly along patient
  x → sagittal, y → coronal, z → axial);
* weighting: T1/T2 from SeriesDescription where it says so, else EchoTime/RepetitionTime;
* slice order: ascending dot(ImagePositionPatient, n), n = row direction × column direction —
  never file names or instance numbers (these only break ties).

A multi-frame file contributes one image per frame (:func:`~spinectx.data.dicom.read_headers`).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinectx.data.dicom import SliceHeader, read_headers
from spinectx.data.errors import DataError

_WEIGHTING = re.compile(r"(?<![a-z0-9])t([12])(?![0-9])")
_SAME_DIRECTION = float(np.cos(np.deg2rad(1.0)))


def plane_of(orientation: tuple[float, ...] | None) -> str:
    """``sagittal`` / ``coronal`` / ``axial`` from ImageOrientationPatient; ``unknown`` if absent.

    The slice normal (row × column direction) points mostly along patient x for sagittal, y for
    coronal, z for axial.
    """
    normal = slice_normal(orientation)
    if normal is None:
        return "unknown"
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def slice_normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    """Unit slice normal n = row direction × column direction of ImageOrientationPatient (patient
    LPS, unitless), or None when the orientation is missing or degenerate."""
    if orientation is None:
        return None
    normal = np.cross(np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:6], dtype=np.float64))
    length = float(np.linalg.norm(normal))
    if not np.isfinite(normal).all() or length < 1e-6:
        return None
    return normal / length


def weighting_of(description: str, echo_time: float | None, repetition_time: float | None) -> str | None:
    """``T1``/``T2`` from the series description when it says so, else from TE/TR (T2: TE ≥ 60 ms;
    T1: TE ≤ 30 ms and TR ≤ 1000 ms); ``None`` when undecidable."""
    found = set(_WEIGHTING.findall(description.lower()))
    if len(found) == 1:
        return f"T{found.pop()}"
    if echo_time is not None:
        if echo_time >= 60:
            return "T2"
        if echo_time <= 30 and (repetition_time is None or repetition_time <= 1000):
            return "T1"
    return None


@dataclass
class Stack:
    """One stack of a series: images of one orientation and geometry, in slice order.

    ``slices`` are ordered along the slice normal, one per image (SOP instance UID + frame);
    ``duplicates`` holds further files carrying an image already in ``slices`` (the same frame
    stored twice), by image key: spares when the first copy cannot be decoded. ``number`` is the
    stack's 0-based number within its series (ordered by lowest InstanceNumber), of
    ``series_stacks``.
    """

    series_uid: str
    description: str
    plane: str
    weighting: str | None
    slices: list[SliceHeader]
    duplicates: dict[tuple[str, int | None], list[SliceHeader]] = field(default_factory=dict)
    number: int = 0
    series_stacks: int = 1

    @property
    def middle(self) -> SliceHeader:
        return self.slices[len(self.slices) // 2]

    @property
    def name(self) -> str:
        """The series UID, with ``#<number>`` when its series holds several stacks."""
        return self.series_uid if self.series_stacks == 1 else f"{self.series_uid}#{self.number}"

    def summary(self) -> str:
        """Short description for messages, e.g. ``sagittal T2 'T2_TSE_SAG' (15 slices)``."""
        kind = f"{self.plane} {self.weighting}" if self.weighting else self.plane
        desc = f" '{self.description}'" if self.description else ""
        part = f" stack {self.number + 1}/{self.series_stacks}" if self.series_stacks > 1 else ""
        return f"{kind}{desc}{part} ({len(self.slices)} slice{'s' if len(self.slices) != 1 else ''})"


@dataclass
class StudyIndex:
    """All readable images of one study folder as stacks, and the files that could not be read."""

    folder: str
    study_uid: str
    stacks: list[Stack]
    problems: list[str] = field(default_factory=list)

    @property
    def series(self) -> dict[str, list[Stack]]:
        """Stacks by SeriesInstanceUID."""
        return _by_series(self.stacks)

    def locate(self, instance_uid: str, frame: int | None = None) -> tuple[Stack, int] | None:
        """(stack, slice index) of an image, or None when it is not in this folder. ``frame``
        picks the frame of a multi-frame instance (ignored for a single-frame one).

        Raises:
            DataError: the instance is a multi-frame file and ``frame`` does not pick one of its
                frames.
        """
        found = [(s, i, h) for s in self.stacks for i, h in enumerate(s.slices) if h.instance_uid == instance_uid]
        if not found:
            return None
        if found[0][2].frame is None:
            return found[0][0], found[0][1]
        for s, i, h in found:
            if h.frame == frame:
                return s, i
        n = found[0][2].num_frames
        which = "no valid zIndex" if frame is None else f"zIndex {frame}, which is not one of its frames"
        raise DataError(found[0][2].path, f"instance {instance_uid} is a multi-frame file of {n} frames and the "
                                          f"annotation gives {which} (frames 0 … {n - 1}); cannot tell the annotated frame")

    def summary(self) -> str:
        """The study's stacks for messages, e.g. ``sagittal T1 (15 slices), axial T2 (20 slices)``."""
        return ", ".join(s.summary() for s in self.stacks) or "no series"

    def find(self, plane: str, weighting: str | None = None) -> list[Stack]:
        return [s for s in self.stacks if s.plane == plane and (weighting is None or s.weighting == weighting)]

    def inference_stack(self) -> Stack:
        """The stack inference uses: a T2 sagittal one (else any sagittal one), most slices first.

        Raises:
            DataError: when the study has no sagittal stack.
        """
        for candidates in (self.find("sagittal", "T2"), self.find("sagittal")):
            if candidates:
                return max(candidates, key=lambda s: len(s.slices))
        planes = sorted({s.plane for s in self.stacks})
        raise DataError(
            self.folder,
            f"no sagittal series in this study (found planes: {', '.join(planes) or 'none'}; series: {self.summary()})",
        )


def slice_position(h: SliceHeader) -> float:
    """dot(ImagePositionPatient, n) in mm (n: the unit slice normal); the instance number when the
    geometry is missing."""
    normal = slice_normal(h.orientation)
    if normal is None or h.position is None or not np.isfinite(h.position).all():
        return float(h.instance_number or 0)
    return float(np.dot(normal, np.asarray(h.position)))


def _spacing(h: SliceHeader) -> tuple[float, ...] | None:
    if h.pixel_spacing is None or not (np.isfinite(h.pixel_spacing).all() and min(h.pixel_spacing) > 0):
        return None
    return tuple(h.pixel_spacing)


def _same_geometry(h: SliceHeader, other: SliceHeader) -> bool:
    """Same matrix, and the same pixel spacing (within 0.1 %) where both have a usable one (an
    image with a missing spacing stays with its stack, where the missing value is reported)."""
    a, b = _spacing(h), _spacing(other)
    same_spacing = a is None or b is None or all(math.isclose(u, v, rel_tol=1e-3) for u, v in zip(a, b))
    return (h.rows, h.cols) == (other.rows, other.cols) and same_spacing


def _same_direction(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ra, ca, rb, cb = (np.asarray(v, dtype=np.float64) for v in (a[:3], a[3:6], b[:3], b[3:6]))
    ra, ca, rb, cb = (v / max(float(np.linalg.norm(v)), 1e-12) for v in (ra, ca, rb, cb))
    return float(ra @ rb) >= _SAME_DIRECTION and float(ca @ cb) >= _SAME_DIRECTION


def split_stacks(headers: list[SliceHeader]) -> list[list[SliceHeader]]:
    """Split the images of one series into stacks: same orientation (row and column directions
    within 1°; images without a usable orientation form a stack of their own) and the same
    (Rows, Columns, PixelSpacing). Stacks come ordered by their lowest InstanceNumber (then
    path); images keep their input order within a stack."""
    groups: list[tuple[tuple | None, list[SliceHeader]]] = []
    for h in headers:
        orientation = h.orientation if slice_normal(h.orientation) is not None else None
        for g_orientation, members in groups:
            same = (orientation is None and g_orientation is None) or (
                orientation is not None and g_orientation is not None and _same_direction(orientation, g_orientation))
            if same and _same_geometry(h, members[0]):
                members.append(h)
                break
        else:
            groups.append((orientation, [h]))
    stacks = [part for _, members in groups for part in _split_acquisitions(members)]
    return sorted(stacks, key=lambda m: min((h.instance_number if h.instance_number is not None else 1 << 30, h.path)
                                            for h in m))


def repeated_positions(members: list[SliceHeader], tolerance_mm: float = 0.01) -> int:
    """How many images of a stack lie at a slice position (within ``tolerance_mm``) already taken
    by another image (copies of one image, same key, do not count)."""
    positions = sorted({h.key: slice_position(h) for h in members}.values())
    return sum(1 for a, b in zip(positions, positions[1:]) if b - a <= tolerance_mm)


def _split_acquisitions(members: list[SliceHeader]) -> list[list[SliceHeader]]:
    """Parallel images of one geometry that repeat slice positions (two echoes or two
    acquisitions saved under one series UID) → one stack per (EchoTime, AcquisitionNumber) when
    that removes the repeats; otherwise the images stay one stack (reported by index_study)."""
    if len(members) < 2 or not repeated_positions(members):
        return [members]
    parts: dict[tuple, list[SliceHeader]] = defaultdict(list)
    for h in members:
        parts[(None if h.echo_time is None else round(h.echo_time, 1), h.acquisition_number)].append(h)
    if len(parts) > 1 and not any(repeated_positions(p) for p in parts.values()):
        return list(parts.values())
    return [members]


def _order_stack(members: list[SliceHeader]) -> tuple[list[SliceHeader], dict]:
    """(slices along the normal, duplicates by image key); the first file of a key by path wins."""
    slices: list[SliceHeader] = []
    duplicates: dict[tuple[str, int | None], list[SliceHeader]] = defaultdict(list)
    seen: set[tuple[str, int | None]] = set()
    for h in sorted(members, key=lambda h: (h.path, h.frame or 0)):
        if h.key in seen:
            duplicates[h.key].append(h)
        else:
            seen.add(h.key)
            slices.append(h)
    slices.sort(key=lambda h: (slice_position(h), h.instance_number or 0, h.path, h.frame or 0))
    return slices, dict(duplicates)


def group_stacks(headers: list[SliceHeader]) -> list[Stack]:
    """Group image headers by SeriesInstanceUID, split each series into stacks
    (:func:`split_stacks`) and order each stack along its normal. A file repeating an image
    already seen in its stack (by path order) goes to the stack's ``duplicates``."""
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        by_series[h.series_uid].append(h)
    out = []
    for uid, members in by_series.items():
        parts = split_stacks(members)
        for number, part in enumerate(parts):
            slices, duplicates = _order_stack(part)
            first = slices[0]
            out.append(Stack(
                series_uid=uid,
                description=first.description,
                plane=plane_of(first.orientation),
                weighting=weighting_of(first.description, first.echo_time, first.repetition_time),
                slices=slices,
                duplicates=duplicates,
                number=number,
                series_stacks=len(parts),
            ))
    return out


def index_folder(folder: str | Path) -> list[StudyIndex]:
    """Read the headers of every file in a folder (no pixel decoding) → one :class:`StudyIndex`
    per StudyInstanceUID found (a folder normally holds one study; files of several are split
    by study and reported). Most images first.

    Unreadable files are skipped and listed in the first index's ``problems`` (each naming the
    file and why), and so are files repeating another file's image (kept as spares, see
    :class:`Stack`), series split into several stacks, and stacks whose slice positions repeat.

    Raises:
        DataError: the folder does not exist or holds no readable DICOM file (the message gives
            the reasons of the first files).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "study folder not found")
    headers, unreadable = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            headers.extend(read_headers(path))
        except DataError as exc:
            unreadable.append(str(exc))
    if not headers:
        detail = ""
        if unreadable:
            shown = "; ".join(unreadable[:3]) + (f"; … {len(unreadable) - 3} more" if len(unreadable) > 3 else "")
            detail = f" ({len(unreadable)} unreadable: {shown})"
        raise DataError(folder, "no readable DICOM file in this folder" + detail)
    by_study: dict[str, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        by_study[h.study_uid].append(h)
    order = sorted(by_study, key=lambda uid: (-len(by_study[uid]), uid))
    out = []
    for uid in order:
        stacks = group_stacks(by_study[uid])
        out.append(StudyIndex(folder=str(folder), study_uid=uid, stacks=stacks, problems=_stack_notes(folder, stacks)))
    out[0].problems[:0] = unreadable
    if len(out) > 1:
        counts = ", ".join(f"{s.study_uid} ({sum(len(t.slices) for t in s.stacks)} images)" for s in out)
        out[0].problems.insert(0, f"{folder}: files of {len(out)} different studies in one folder: {counts}; "
                                  "each is indexed as a study of its own")
    return out


def index_subfolders(parent: str | Path, problems: list[str]) -> list[tuple[Path, StudyIndex]]:
    """:func:`index_folder` on every sub-folder of ``parent`` (name order) → (folder, index) pairs.
    A folder that cannot be indexed, and every problem an index reports, go to ``problems``."""
    out: list[tuple[Path, StudyIndex]] = []
    for folder in sorted(p for p in Path(parent).iterdir() if p.is_dir()):
        try:
            found = index_folder(folder)
        except DataError as exc:
            problems.append(str(exc))
            continue
        for idx in found:
            problems.extend(idx.problems)
            out.append((folder, idx))
    return out


def index_study(folder: str | Path) -> StudyIndex:
    """The study of a study folder (see :func:`index_folder`); when the folder holds files of
    several studies, the one with the most images (the others are named in its problems).

    Raises:
        DataError: the folder does not exist or holds no readable DICOM file.
    """
    return index_folder(folder)[0]


def unique_studies(indexes: Iterable[StudyIndex], problems: list[str] | None = None) -> dict[str, StudyIndex]:
    """The duplicates rule (one for training, scoring and prediction): when several folders hold
    the same StudyInstanceUID, the one with the most images counts (a partial copy never wins);
    ties go to the first in the order given (folders in sorted path order). Every other copy is
    reported in ``problems``, naming both folders. → {study uid: index}."""
    chosen: dict[str, StudyIndex] = {}
    others: dict[str, list[StudyIndex]] = defaultdict(list)
    for idx in indexes:
        first = chosen.get(idx.study_uid)
        if first is None:
            chosen[idx.study_uid] = idx
        elif _images(idx) > _images(first):
            chosen[idx.study_uid] = idx
            others[idx.study_uid].append(first)
        else:
            others[idx.study_uid].append(idx)
    for uid, ignored in others.items():
        kept = chosen[uid]
        for idx in ignored:
            if problems is not None:
                problems.append(f"{idx.folder}: holds study {uid} again ({_images(idx)} images; {kept.folder} holds "
                                f"{_images(kept)}): the folder with the most images counts, this one is ignored")
    return chosen


def _images(idx: StudyIndex) -> int:
    return sum(len(s.slices) for s in idx.stacks)


def _stack_notes(folder: Path, stacks: list[Stack]) -> list[str]:
    """Problems worth reporting about a study's stacks: split series, repeated slice positions,
    files repeating an image."""
    notes = []
    for uid, parts in _by_series(stacks).items():
        if len(parts) > 1:
            notes.append(f"{folder}: series {uid} holds {len(parts)} stacks of different orientation, geometry or "
                         f"acquisition ({'; '.join(s.summary() for s in parts)}); each stack is ordered and used on its own")
    for s in stacks:
        repeats = repeated_positions(s.slices)
        if repeats:
            notes.append(f"{folder}: stack {s.name} ({s.summary()}) has {repeats} image(s) at a slice position another "
                         "image already holds; neighbouring slices may come from another acquisition")
        first = {h.key: h.path for h in s.slices}
        for key, copies in s.duplicates.items():
            for h in copies:
                what = key[0] if key[1] is None else f"{key[0]} frame {key[1]}"
                notes.append(f"{h.path}: repeats instance {what} of {first[key]}; kept only as a spare should the first "
                             "not decode")
    return notes


def _by_series(stacks: list[Stack]) -> dict[str, list[Stack]]:
    out: dict[str, list[Stack]] = defaultdict(list)
    for s in stacks:
        out[s.series_uid].append(s)
    return dict(out)
