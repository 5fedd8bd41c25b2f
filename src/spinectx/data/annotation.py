"""Parsing TianChi annotation JSON files (SPEC §2).

``coord`` is [x, y] = [column, row] in pixels of the annotated frame. Points come in any order;
missing landmarks stay missing; identifications outside the dataset's landmark set are skipped
and counted; malformed entries are reported, each with the file and the study.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from spinectx.data.errors import AnnotationError
from spinectx.data.landmarks import LandmarkSet


@dataclass(frozen=True)
class LandmarkPoint:
    """One annotated landmark: ``coord`` (x, y) pixels of the annotated frame, its class ``tags``."""

    coord: tuple[float, float]
    tags: tuple[str, ...]
    z_index: int | None = None


@dataclass
class StudyAnnotation:
    """The annotation of one study: which frame, and its landmarks by identification."""

    study_uid: str
    series_uid: str
    instance_uid: str
    points: dict[str, LandmarkPoint]
    skipped: list[str] = field(default_factory=list)  # identifications outside the landmark set
    problems: list[str] = field(default_factory=list)


@dataclass
class AnnotationFile:
    path: str
    studies: list[StudyAnnotation]
    skipped_identifications: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _require(obj, key: str, kind: type, path: Path, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise AnnotationError(path, f"{where}: missing '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise AnnotationError(path, f"{where}: '{key}' should be {kind.__name__}, got {type(value).__name__}")
    return value


def _parse_point(point, landmarks: LandmarkSet, where: str) -> tuple[str, LandmarkPoint]:
    """→ (identification, point); raises ValueError with a short reason."""
    if not isinstance(point, dict):
        raise ValueError(f"{where}: point is not an object")
    tag = point.get("tag")
    if not isinstance(tag, dict) or "identification" not in tag:
        raise ValueError(f"{where}: point without tag.identification")
    ident = str(tag["identification"])
    coord = point.get("coord")
    if not isinstance(coord, (list, tuple)) or len(coord) != 2:
        raise ValueError(f"{where} {ident}: coord should be [x, y], got {coord!r}")
    try:
        x, y = float(coord[0]), float(coord[1])
    except (TypeError, ValueError):
        raise ValueError(f"{where} {ident}: non-numeric coord {coord!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{where} {ident}: non-finite coord {coord!r}")
    if ident not in landmarks.index:
        return ident, LandmarkPoint((x, y), ())
    group = landmarks.group(ident)
    raw = tag.get(group.name, "")
    tags = landmarks.parse_tags(ident, raw if raw is not None else "")
    z = point.get("zIndex")
    return ident, LandmarkPoint((x, y), tags, int(z) if isinstance(z, (int, float)) else None)


def parse_annotations(path: str | Path, landmarks: LandmarkSet) -> AnnotationFile:
    """Parse one annotation file.

    Raises:
        AnnotationError: unreadable file, malformed JSON (with line and column) or a structure
            that is not the challenge's (with the entry that breaks it).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(path, f"cannot read annotation file: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(raw, list):
        raise AnnotationError(path, f"expected a list of studies at the top level, got {type(raw).__name__}")

    result = AnnotationFile(path=str(path), studies=[])
    for i, entry in enumerate(raw):
        study_uid = str(entry.get("studyUid", "")) if isinstance(entry, dict) else ""
        where = f"entry {i} (studyUid {study_uid or '?'})"
        if not study_uid:
            raise AnnotationError(path, f"{where}: missing 'studyUid'")
        data = _require(entry, "data", list, path, where)
        if not data:
            result.problems.append(f"{path}: {where}: empty 'data', study skipped")
            continue
        if len(data) > 1:
            result.problems.append(f"{path}: {where}: {len(data)} annotated frames, using the first")
        frame = data[0]
        series_uid = str(_require(frame, "seriesUid", str, path, where))
        instance_uid = str(_require(frame, "instanceUid", str, path, where))
        annotations = _require(frame, "annotation", list, path, where)
        study = StudyAnnotation(study_uid, series_uid, instance_uid, points={})
        for ann in annotations:
            points = ann.get("data", {}).get("point", []) if isinstance(ann, dict) else None
            if not isinstance(points, list):
                raise AnnotationError(path, f"{where}: annotation without data.point list")
            for point in points:
                try:
                    ident, parsed = _parse_point(point, landmarks, where)
                except ValueError as exc:
                    study.problems.append(f"{path}: {exc}; point skipped")
                    continue
                if ident not in landmarks.index:
                    study.skipped.append(ident)
                    result.skipped_identifications[ident] += 1
                elif ident in study.points:
                    study.problems.append(f"{path}: {where}: {ident} annotated twice; keeping the first")
                else:
                    study.points[ident] = parsed
        result.studies.append(study)
    return result
