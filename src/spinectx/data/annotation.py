"""Parsing TianChi annotation JSON files (SPEC §2).

``coord`` is [x, y] = [column, row] in pixels of the annotated frame. Points come in any order;
missing landmarks stay missing; identifications outside the dataset's landmark set are skipped
and counted.

The file's schema lives in one place, the pydantic models below, and is validated level by level
so that a malformed value costs as little as possible:

- a top level that is not a list, or a file none of whose entries is a study in this format,
  raises :class:`~spinectx.data.errors.AnnotationError`;
- a malformed study entry (no ``studyUid``, ``data`` not a list, a first frame without
  ``seriesUid``/``instanceUid``/``annotation`` list) costs that study;
- a malformed annotation item (``data`` not an object, ``data.point`` not a list) costs its points;
- a malformed point (not an object, no ``tag.identification``, ``coord`` not two finite numbers)
  costs that point;
- a class value that is not a string, or holds a code outside the group's vocabulary, costs only
  the class: the location is kept and the landmark's class counts as unknown (``tags == ()``);
- so does a point without a class (``null``, ``""``, or no key for the landmark's group, e.g. a
  vertebra whose class sits under ``disc``): one problem line each, naming the tag's keys. Only
  where classes are optional (``classes_required=False``: submissions, whose points may carry a
  ``prob`` instead) is a missing class silent;
- a ``studyUid``, ``seriesUid`` or ``instanceUid`` with surrounding whitespace is read stripped,
  with a note;
- ``zIndex`` is not used for training: when it is missing, not a non-negative integer or NaN, the
  point keeps its landmark with ``z_index=None`` (with a note when it was present but unusable).

Every problem is a line naming the file, the entry (index and ``studyUid``), the landmark (or the
point's position when it has no readable identification), the field, what was expected and what
was found. Fields outside the schema are allowed and kept (``LandmarkPoint.extra``: e.g. a
submission's ``"prob"``).

**Duplicate studies.** One rule, used by everything that reads annotation files (training's
index, ``spinectx-score``, :func:`~spinectx.data.submission.read_submission`): *the first entry
of a study uid in a file counts*. Later entries with the same ``studyUid`` are ignored, even when
the first one turns out unusable, and each is reported with the indices of both entries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError

from spinectx.data.errors import AnnotationError
from spinectx.data.landmarks import LandmarkSet

__all__ = ["AnnotationFile", "LandmarkPoint", "StudyAnnotation", "parse_annotations"]


@dataclass(frozen=True)
class LandmarkPoint:
    """One annotated landmark.

    Attributes:
        coord: (x, y) = (column, row) pixels of the annotated frame, finite.
        tags: its class codes (``()`` = class unknown: not given or not usable).
        z_index: slice index of the frame in its series, None when missing or unusable.
        extra: the point's fields outside the schema, as in the file (e.g. ``{"prob": 0.8}``).
    """

    coord: tuple[float, float]
    tags: tuple[str, ...]
    z_index: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class StudyAnnotation:
    """The annotation of one study: which frame, and its landmarks by identification.

    ``entry`` is the index of the study's entry in the file's top-level list."""

    study_uid: str
    series_uid: str
    instance_uid: str
    points: dict[str, LandmarkPoint]
    skipped: list[str] = field(default_factory=list)  # identifications outside the landmark set
    problems: list[str] = field(default_factory=list)
    entry: int | None = None


@dataclass
class AnnotationFile:
    """A parsed file: its usable studies (one per study uid, first entry first), the count of
    skipped identifications outside the landmark set, and the file-level problems (studies
    skipped or ignored)."""

    path: str
    studies: list[StudyAnnotation]
    skipped_identifications: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- schema (SPEC §2)


class _Node(BaseModel):
    """A JSON object of the format; fields outside the schema are allowed and kept."""

    model_config = ConfigDict(extra="allow")


FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Study(_Node):
    studyUid: Annotated[StrictStr, Field(min_length=1)]
    data: list[Any]  # frames; only the first is used, validated as _Frame


class _Frame(_Node):
    seriesUid: StrictStr
    instanceUid: StrictStr
    annotation: list[Any]  # annotation items, each validated as _Item


class _ItemData(_Node):
    point: list[Any]  # points, each validated as _Point


class _Item(_Node):
    data: _ItemData


class _Tag(_Node):
    identification: Annotated[StrictStr, Field(min_length=1)]
    # the class of a landmark sits under its group's name ("vertebra", "disc"): read by _CLASS


class _Point(_Node):
    coord: tuple[FiniteNumber, FiniteNumber]
    tag: _Tag
    zIndex: Any = None  # not needed for training: read leniently by _Z_INDEX


_CLASS = TypeAdapter(StrictStr | None)
_Z_INDEX = TypeAdapter(Annotated[int, Field(ge=0)])


# ----------------------------------------------------------------------------- messages


def _where(loc: tuple) -> str:
    """('data', 0, 'annotation') → 'data[0].annotation'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_JSON_KIND = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}


def _shown(value: Any) -> str:
    """A found value as JSON with its JSON kind: ``2 (number)``, ``"v2" (string)``, ``null``."""
    if value is None:
        return "null"
    text = json.dumps(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({_JSON_KIND.get(type(value), type(value).__name__)})"


def _describe(exc: ValidationError, prefix: tuple = ()) -> str:
    """A readable line for a pydantic error: field, what was expected, what was found."""
    parts = []
    for err in exc.errors(include_url=False):
        if err["loc"][:1] == ("coord",) and err["type"] in ("missing", "tuple_type", "too_long", "too_short") and (
            err["type"] != "missing" or len(err["loc"]) > 1
        ):
            # the pair as a whole (pydantic reports a short list as a missing coord[1])
            parts.append(f"{_where(prefix + ('coord',))}: expected [x, y] (two numbers), got {_shown(err['input'])}")
            continue
        loc = _where(prefix + tuple(err["loc"]))
        if err["type"] == "missing":
            parts.append(f"missing '{loc}'")
            continue
        if err["type"] in ("model_type", "dict_type"):
            expected = "expected an object"
        else:
            msg = err["msg"]
            expected = "expected " + msg.removeprefix("Input should be ").removeprefix("Input ")
        got = _shown(err["input"])
        parts.append(f"{loc + ': ' if loc else ''}{expected}, got {got}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- parsing


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(path, f"cannot read annotation file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def _point(
    raw: Any, landmarks: LandmarkSet, study: StudyAnnotation, skipped: Counter, say: str, where: str, z_notes: list[str],
    classes_required: bool = True,
) -> None:
    """Validate one point and add it to ``study`` (or report why not). ``say`` prefixes problems
    (file and entry), ``where`` names the point's position in the entry; a point without a class
    is a problem when ``classes_required``."""
    tag = raw.get("tag") if isinstance(raw, dict) else None
    ident = tag.get("identification") if isinstance(tag, dict) else None
    if isinstance(ident, str) and ident and ident not in landmarks.index:
        study.skipped.append(ident)  # not one of ours: whatever else is wrong with it does not matter
        skipped[ident] += 1
        return
    try:
        point = _Point.model_validate(raw)
    except ValidationError as exc:
        name = ident if isinstance(ident, str) and ident else where
        study.problems.append(f"{say}: {name}: {_describe(exc)}; point skipped")
        return
    ident = point.tag.identification
    if ident in study.points:
        study.problems.append(f"{say}: {ident} annotated twice; keeping the first")
        return
    group = landmarks.group(ident)
    tags: tuple[str, ...] = ()
    value = point.tag.model_extra.get(group.name)
    try:
        text = _CLASS.validate_python(value)
        if text is None or not text.strip():
            if classes_required:
                study.problems.append(f"{say}: {ident}: {_no_class(point.tag, group.name, value)}; location kept, class unknown")
        else:
            tags = landmarks.parse_tags(ident, text)
    except ValidationError:
        study.problems.append(
            f"{say}: {ident}: tag.{group.name}: expected a string of class codes from {list(group.classes)} "
            f"(comma-separated), got {_shown(value)}; location kept, class unknown"
        )
    except ValueError as exc:  # a code outside the group's vocabulary
        study.problems.append(f"{say}: {exc}; location kept, class unknown")
    z_index = None
    if point.zIndex is not None:
        try:
            z_index = _Z_INDEX.validate_python(point.zIndex)
        except ValidationError as exc:
            z_notes.append(f"{ident} ({_describe(exc, ('zIndex',))})")
    study.points[ident] = LandmarkPoint(tuple(point.coord), tags, z_index, dict(point.model_extra or {}))


def _no_class(tag: _Tag, key: str, value: Any) -> str:
    """What was found where a landmark's class should be (``tag.<key>``)."""
    if key in (tag.model_extra or {}):
        return f"no class: tag.{key} is {_shown(value)}"
    keys = ", ".join(["identification", *(tag.model_extra or {})])
    return f"no class under tag.{key} (tag keys: {keys})"


def _stripped(value: str, field_name: str, say: str, notes: list[str]) -> str:
    """A UID without surrounding whitespace; a note in ``notes`` when there was some."""
    clean = value.strip()
    if clean != value:
        notes.append(f"{say}: {field_name} {json.dumps(value)} has surrounding whitespace; read as {clean!r}")
    return clean


class _Unusable(Exception):
    """A study entry that cannot be used: ``problem`` says why, ``malformed`` whether its structure
    breaks the schema (rather than, say, an empty ``data`` list)."""

    def __init__(self, problem: str, malformed: bool = True):
        super().__init__(problem)
        self.problem, self.malformed = problem, malformed


def _study(i: int, raw: Any, path: Path, landmarks: LandmarkSet, skipped: Counter, problems: list[str],
           classes_required: bool = True) -> StudyAnnotation:
    """Validate one study entry → its annotation (file-level notes appended to ``problems``).

    Raises:
        _Unusable: the entry cannot be used (the problem names the file, entry and field).
    """
    uid = raw.get("studyUid") if isinstance(raw, dict) else None
    say = f"{path}: entry {i} (studyUid {uid.strip() if isinstance(uid, str) and uid.strip() else '?'})"
    try:
        entry = _Study.model_validate(raw)
    except ValidationError as exc:
        raise _Unusable(f"{say}: {_describe(exc)}; study skipped") from None
    if not entry.studyUid.strip():
        raise _Unusable(f"{say}: studyUid is blank ({json.dumps(entry.studyUid)}); study skipped")
    if not entry.data:
        raise _Unusable(f"{say}: empty 'data', study skipped", malformed=False)
    try:
        frame = _Frame.model_validate(entry.data[0])
    except ValidationError as exc:
        raise _Unusable(f"{say}: {_describe(exc, ('data', 0))}; study skipped") from None
    if len(entry.data) > 1:
        problems.append(f"{say}: {len(entry.data)} annotated frames, using the first")
    notes: list[str] = []
    study = StudyAnnotation(_stripped(entry.studyUid, "studyUid", say, notes),
                            _stripped(frame.seriesUid, "data[0].seriesUid", say, notes),
                            _stripped(frame.instanceUid, "data[0].instanceUid", say, notes), points={}, entry=i,
                            problems=notes)
    z_notes: list[str] = []
    for j, raw_item in enumerate(frame.annotation):
        where = f"data[0].annotation[{j}]"
        try:
            item = _Item.model_validate(raw_item)
        except ValidationError as exc:
            study.problems.append(f"{say}: {where}: {_describe(exc)}; its points skipped")
            continue
        for p, raw_point in enumerate(item.data.point):
            _point(raw_point, landmarks, study, skipped, say, f"{where}.data.point[{p}]", z_notes, classes_required)
    if z_notes:
        study.problems.append(f"{say}: unusable zIndex (slice index unknown, landmark kept): {'; '.join(z_notes)}")
    return study


def parse_annotations(path: str | Path, landmarks: LandmarkSet, classes_required: bool = True) -> AnnotationFile:
    """Parse one annotation file (rules and problem reports in the module docstring).

    ``classes_required``: a point without a class is a problem line (ground truth); False for
    files whose classes are optional (submissions).

    Returns:
        The usable studies in file order, one per study uid (the first entry counts), with
        per-study problems in ``StudyAnnotation.problems`` and file-level ones in
        ``AnnotationFile.problems``; every line names the file.

    Raises:
        AnnotationError: unreadable file, malformed JSON (with line and column), a top level that
            is not a list, or a non-empty list none of whose entries is a study in the challenge's
            format (with the first entry's problem).
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise AnnotationError(path, f"expected a list of studies at the top level, got {type(raw).__name__}")
    result = AnnotationFile(path=str(path), studies=[])
    first_entry: dict[str, int] = {}
    examined, malformed = 0, []
    for i, entry in enumerate(raw):
        uid = entry.get("studyUid") if isinstance(entry, dict) else None
        uid = uid.strip() if isinstance(uid, str) else None  # " 1.2.3" and "1.2.3" are one study
        if uid and uid in first_entry:
            result.problems.append(
                f"{path}: study {uid} appears more than once (entries {first_entry[uid]} and {i}); "
                f"the first entry counts, entry {i} ignored"
            )
            continue
        if uid:
            first_entry[uid] = i
        examined += 1
        try:
            result.studies.append(_study(i, entry, path, landmarks, result.skipped_identifications, result.problems,
                                         classes_required))
        except _Unusable as exc:
            result.problems.append(exc.problem)
            if exc.malformed:
                malformed.append(exc.problem)
    if examined and len(malformed) == examined:
        first = malformed[0].removeprefix(f"{path}: ").removesuffix("; study skipped")
        raise AnnotationError(path, f"none of the {examined} entries is a study in the challenge's format; first: {first}")
    return result
