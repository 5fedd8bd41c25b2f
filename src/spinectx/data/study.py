"""Indexing a study folder: files grouped by series, plane, T1/T2 weighting and slice order.

All series of a study live in one flat folder with meaningless file names (SPEC §2). Plane comes
from ImageOrientationPatient, weighting from SeriesDescription (else EchoTime/RepetitionTime),
slice order from ImagePositionPatient projected on the slice normal.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinectx.data.dicom import SliceHeader, read_header
from spinectx.data.errors import DataError

_WEIGHTING = re.compile(r"(?<![a-z0-9])t([12])(?![0-9])")


def plane_of(orientation: tuple[float, ...] | None) -> str:
    """``sagittal`` / ``coronal`` / ``axial`` from ImageOrientationPatient; ``unknown`` if absent.

    The slice normal (row × column direction) points mostly along patient x for sagittal, y for
    coronal, z for axial.
    """
    if orientation is None:
        return "unknown"
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:6]))
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-6:
        return "unknown"
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


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
class Series:
    """One series of a study; ``slices`` are ordered along the slice normal, one per instance UID.

    ``duplicates`` holds further files carrying an instance UID already in ``slices`` (the same
    frame stored twice), by instance UID: spares when the first copy cannot be decoded.
    """

    series_uid: str
    description: str
    plane: str
    weighting: str | None
    slices: list[SliceHeader]
    duplicates: dict[str, list[SliceHeader]] = field(default_factory=dict)

    @property
    def middle(self) -> SliceHeader:
        return self.slices[len(self.slices) // 2]

    def summary(self) -> str:
        """Short description for messages, e.g. ``sagittal T2 'T2_TSE_SAG' (15 slices)``."""
        kind = f"{self.plane} {self.weighting}" if self.weighting else self.plane
        desc = f" '{self.description}'" if self.description else ""
        return f"{kind}{desc} ({len(self.slices)} slice{'s' if len(self.slices) != 1 else ''})"


@dataclass
class StudyIndex:
    """All readable series of one study folder, and the files that could not be read."""

    folder: str
    study_uid: str
    series: dict[str, Series]
    problems: list[str] = field(default_factory=list)

    def locate(self, instance_uid: str) -> tuple[Series, int] | None:
        """(series, slice index) of an instance, or None when it is not in this folder."""
        for s in self.series.values():
            for i, h in enumerate(s.slices):
                if h.instance_uid == instance_uid:
                    return s, i
        return None

    def summary(self) -> str:
        """The study's series for messages, e.g. ``sagittal T1 (15 slices), axial T2 (20 slices)``."""
        return ", ".join(s.summary() for s in self.series.values()) or "no series"

    def find(self, plane: str, weighting: str | None = None) -> list[Series]:
        return [s for s in self.series.values() if s.plane == plane and (weighting is None or s.weighting == weighting)]

    def inference_series(self) -> Series:
        """The series inference uses: T2 sagittal (else any sagittal, most slices first).

        Raises:
            DataError: when the study has no sagittal series.
        """
        for candidates in (self.find("sagittal", "T2"), self.find("sagittal")):
            if candidates:
                return max(candidates, key=lambda s: len(s.slices))
        planes = sorted({s.plane for s in self.series.values()})
        raise DataError(
            self.folder,
            f"no sagittal series in this study (found planes: {', '.join(planes) or 'none'}; series: {self.summary()})",
        )


def _slice_position(h: SliceHeader) -> float:
    if h.orientation is None or h.position is None:
        return float(h.instance_number or 0)
    normal = np.cross(np.asarray(h.orientation[:3]), np.asarray(h.orientation[3:6]))
    return float(np.dot(normal, np.asarray(h.position)))


def group_series(headers: list[SliceHeader]) -> dict[str, Series]:
    """Group slice headers by SeriesInstanceUID and order each series along its normal.

    A file repeating an instance UID already seen in its series (by path order) goes to the
    series' ``duplicates`` instead of ``slices``.
    """
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        by_series[h.series_uid].append(h)
    out = {}
    for uid, members in by_series.items():
        slices: list[SliceHeader] = []
        duplicates: dict[str, list[SliceHeader]] = defaultdict(list)
        seen: set[str] = set()
        for h in sorted(members, key=lambda h: h.path):
            if h.instance_uid in seen:
                duplicates[h.instance_uid].append(h)
            else:
                seen.add(h.instance_uid)
                slices.append(h)
        slices.sort(key=lambda h: (_slice_position(h), h.instance_number or 0, h.path))
        first = slices[0]
        out[uid] = Series(
            series_uid=uid,
            description=first.description,
            plane=plane_of(first.orientation),
            weighting=weighting_of(first.description, first.echo_time, first.repetition_time),
            slices=slices,
            duplicates=dict(duplicates),
        )
    return out


def index_study(folder: str | Path) -> StudyIndex:
    """Read the headers of every file in a study folder (no pixel decoding).

    Unreadable files are skipped and listed in ``problems`` (each naming the file), and so are
    files repeating another file's instance UID (kept as spares, see :class:`Series`).

    Raises:
        DataError: the folder does not exist or holds no readable DICOM file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "study folder not found")
    headers, problems = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            headers.append(read_header(path))
        except DataError as exc:
            problems.append(str(exc))
    if not headers:
        raise DataError(folder, "no readable DICOM file in this folder" + (f" ({len(problems)} unreadable)" if problems else ""))
    study_uids = sorted({h.study_uid for h in headers})
    if len(study_uids) > 1:
        problems.append(f"{folder}: files of {len(study_uids)} different studies in one folder; using all of them")
    series = group_series(headers)
    for s in series.values():
        first = {h.instance_uid: h.path for h in s.slices}
        for uid, copies in s.duplicates.items():
            for h in copies:
                problems.append(
                    f"{h.path}: repeats instance {uid} of {first[uid]}; kept only as a spare should the first not decode"
                )
    return StudyIndex(folder=str(folder), study_uid=study_uids[0], series=series, problems=problems)
