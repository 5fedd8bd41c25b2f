"""Where a study-level RSNA prediction looked, against the true points of train_label_coordinates.csv.

``spinectx-predict`` on RSNA data writes ``predictions.json`` beside the submission: per study the
points behind its rows (row id, view, series, instance, file, frame, x, y; x, y = column, row pixels
of that file's frame, as in Kaggle's train_label_coordinates.csv). :func:`load_predictions` reads and
checks that file; :func:`point_errors` measures, per predicted row that has a true point for the same
condition and level, the distance between the two in 3-D patient space (mm), so that a point on a
neighbouring slice counts the slice gap too; :func:`hit_rates` sums those up per view.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from spinectx.data.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from spinectx.data.dicom import SliceHeader

#: the columns of Kaggle's train_label_coordinates.csv
COORDINATE_COLUMNS = ("study_id", "series_id", "instance_number", "condition", "level", "x", "y")
#: the columns of :func:`point_errors`' table, in order
ERROR_COLUMNS = ("study_id", "row_id", "view", "condition", "level", "series_id", "instance_number", "x", "y",
                 "true_series_id", "true_instance_number", "true_x", "true_y", "same_image", "distance_mm", "hit",
                 "problem")


def _text(value: Any) -> Any:
    """Ids may come as JSON numbers (``4003253``); they are compared as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Id = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Node(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictedPoint(_Node):
    """One point behind a predicted row: ``x, y`` (column, row) pixels of frame ``frame`` (0-based;
    0 for a single-frame file) of ``file``."""

    row_id: str
    view: str
    series_id: Id
    instance_number: int | None = None
    file: str
    frame: int = Field(default=0, ge=0)
    x: Finite
    y: Finite

    @field_validator("row_id")
    @classmethod
    def _known_row(cls, value: str) -> str:
        from spinectx.metrics.rsna import parse_row_id

        parse_row_id(value)  # ValueError names the id
        return value


class StudyPoints(_Node):
    study_id: Id
    pixel_reads: int | None = None
    problems: list[str] = []
    points: list[PredictedPoint] = []


class PredictionsFile(_Node):
    """``predictions.json`` of ``spinectx-predict`` (RSNA mode); fields beyond these are kept."""

    input: str | None = None
    series: str | None = None
    studies: list[StudyPoints]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        got = "" if err["type"] == "missing" else f", got {json.dumps(err['input'], default=str)[:60]}"
        parts.append(f"{where or 'top level'}: {err['msg'].removeprefix('Value error, ')}{got}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f"; … {more} more" if more > 0 else "")


def validate_predictions(predictions: dict | PredictionsFile, source: str | Path = "predictions") -> PredictionsFile:
    """``predictions`` (the parsed JSON) checked against the format, every file it names included.

    Raises:
        DataError: naming ``source``: a field missing or of the wrong kind, a row id that is not
            ``<study>_<condition>_<level>``, a row id whose study is not its study's, or (naming the
            file) a point's file that does not exist.
    """
    if isinstance(predictions, PredictionsFile):
        model = predictions
    else:
        try:
            model = PredictionsFile.model_validate(predictions)
        except ValidationError as exc:
            raise DataError(source, f"not a predictions.json of spinectx-predict: {_describe(exc)}") from None
    from spinectx.metrics.rsna import parse_row_id

    for study in model.studies:
        for p in study.points:
            if parse_row_id(p.row_id)[0] != study.study_id:
                raise DataError(source, f"study {study.study_id}: row {p.row_id} belongs to another study")
            if not Path(p.file).is_file():
                raise DataError(p.file, f"image of row {p.row_id} (named by {source}) not found")
    return model


def load_predictions(path: str | Path) -> dict:
    """Read ``predictions.json`` and check it (:func:`validate_predictions`) → the parsed JSON.

    Raises:
        DataError: naming the file: missing, not UTF-8 JSON, not of the format, or naming an image
            that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found (the predictions.json spinectx-predict wrote)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    validate_predictions(raw, path)
    return raw


def read_coordinates(path: str | Path) -> pd.DataFrame:
    """Kaggle's ``train_label_coordinates.csv`` → DataFrame with study_id, series_id (text),
    instance_number (int), condition, level (CSV spelling), x, y (float pixels), in file order.

    Raises:
        DataError: naming the file: missing, unreadable, a column missing, or a row with an unknown
            condition or level or a non-numeric instance/coordinate (naming its line).
    """
    import pandas as pd

    from spinectx.data.rsna import CONDITIONS, LEVELS, read_csv_columns

    path = Path(path)
    frame = read_csv_columns(path, COORDINATE_COLUMNS)
    frame = frame[list(COORDINATE_COLUMNS)].apply(lambda col: col.str.strip())
    for i, row in enumerate(frame.itertuples(index=False)):
        if row.condition not in CONDITIONS or row.level not in LEVELS:
            raise DataError(path, f"line {i + 2}: unknown condition/level {row.condition!r} {row.level!r}")
    numbers = frame[["instance_number", "x", "y"]].apply(pd.to_numeric, errors="coerce")
    bad = ~numbers.apply(lambda col: col.map(math.isfinite)).all(axis=1)
    if bad.any():
        line = int(bad.to_numpy().argmax()) + 2
        raise DataError(path, f"line {line}: instance_number, x and y must be numbers")
    frame[["x", "y"]] = numbers[["x", "y"]].astype(float)
    frame["instance_number"] = numbers["instance_number"].astype(int)
    return frame


class _Headers:
    """Header look-ups for one call, each file read once: the predicted image (file + frame) and the
    true one (study folder + series + InstanceNumber)."""

    def __init__(self) -> None:
        self._files: dict[str, list[SliceHeader]] = {}
        self._series: dict[Path, dict[int, SliceHeader]] = {}

    def file(self, path: str) -> list[SliceHeader]:
        from spinectx.data.dicom import read_headers

        if path not in self._files:
            self._files[path] = read_headers(path)
        return self._files[path]

    def frame(self, path: str, frame: int) -> SliceHeader:
        headers = self.file(path)
        if len(headers) == 1 and frame == 0:
            return headers[0]
        for h in headers:
            if h.frame == frame:
                return h
        raise DataError(path, f"frame {frame} asked of a file of {len(headers)} frame(s)")

    def instance(self, series_dir: Path, number: int) -> SliceHeader:
        """The image of ``series_dir`` whose DICOM InstanceNumber is ``number`` (its first frame);
        ``<number>.dcm`` is tried first, the whole folder only when that file is not it."""
        guess = series_dir / f"{number}.dcm"
        if guess.is_file():
            for h in self.file(str(guess)):
                if h.instance_number == number and h.frame in (None, 0):
                    return h
        if series_dir not in self._series:
            if not series_dir.is_dir():
                raise DataError(series_dir, "series folder not found")
            found: dict[int, SliceHeader] = {}
            for path in sorted(p for p in series_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
                try:
                    headers = self.file(str(path))
                except DataError:
                    continue
                for h in headers:
                    if h.instance_number is not None and h.frame in (None, 0):
                        found.setdefault(h.instance_number, h)
            self._series[series_dir] = found
        if number not in self._series[series_dir]:
            raise DataError(series_dir, f"no image with InstanceNumber {number}")
        return self._series[series_dir][number]


def _truth_by_row(coordinates: pd.DataFrame) -> dict[str, dict]:
    """{row id: the first true point of that study, condition and level}; rows whose condition or
    level is not Kaggle's are left out."""
    from spinectx.data.rsna import CONDITIONS, LEVELS, row_id

    out: dict[str, dict] = {}
    for rec in coordinates.to_dict("records"):
        condition, level = str(rec["condition"]).strip(), str(rec["level"]).strip()
        if condition in CONDITIONS and level in LEVELS:
            out.setdefault(row_id(str(rec["study_id"]).strip(), condition, level), rec)
    return out


def point_errors(predictions: dict, coordinates: pd.DataFrame, threshold_mm: float = 6.0,
                 source: str | Path = "predictions") -> pd.DataFrame:
    """Distance between each predicted point and the true point of its row, in patient space.

    ``predictions``: the parsed predictions.json (:func:`load_predictions`); ``coordinates``: a
    DataFrame with the columns of train_label_coordinates.csv (:func:`read_coordinates`). For every
    predicted row whose study has a true point for the same condition and level (the first such row
    when repeated), both points are placed in patient space with their image's position,
    orientation and spacing (:func:`~spinectx.data.geometry.pixel_to_patient`) and their Euclidean
    distance (mm) is taken: a point on another slice than the truth's counts the slice gap too.
    The true image is the file of the truth's series (in the study folder holding the predicted
    files) whose DICOM InstanceNumber is the truth's instance number.

    Returns:
        One row per such predicted row, columns :data:`ERROR_COLUMNS`: ``condition``/``level`` in
        row-id spelling, x/y in pixels, ``same_image`` (same series and instance), ``distance_mm``
        (NaN when an image could not be read or found or lacks its geometry; ``problem`` says why) and ``hit``
        (``distance_mm`` ≤ ``threshold_mm``).

    Raises:
        DataError: ``predictions`` is not of the format or names a file that does not exist
            (:func:`validate_predictions`; ``source`` names it in the message).
    """
    import numpy as np
    import pandas as pd

    from spinectx.data.geometry import pixel_to_patient
    from spinectx.metrics.rsna import parse_row_id

    model = validate_predictions(predictions, source)
    truth = _truth_by_row(coordinates)
    headers = _Headers()
    rows = []
    for study in model.studies:
        for p in study.points:
            t = truth.get(p.row_id)
            if t is None:
                continue
            _, condition, level = parse_row_id(p.row_id)
            true_series, true_instance = str(t["series_id"]).strip(), int(t["instance_number"])
            distance, problem = math.nan, ""
            try:
                predicted = pixel_to_patient(headers.frame(p.file, p.frame), (p.x, p.y))
                study_dir = Path(p.file).absolute().parents[1]  # <study>/<series>/<file>
                true_header = headers.instance(study_dir / true_series, true_instance)
                actual = pixel_to_patient(true_header, (float(t["x"]), float(t["y"])))
                distance = float(np.linalg.norm(predicted - actual))
            except DataError as exc:
                problem = str(exc)
            rows.append({
                "study_id": study.study_id, "row_id": p.row_id, "view": p.view, "condition": condition,
                "level": level, "series_id": p.series_id, "instance_number": p.instance_number, "x": p.x, "y": p.y,
                "true_series_id": true_series, "true_instance_number": true_instance, "true_x": float(t["x"]),
                "true_y": float(t["y"]),
                "same_image": p.series_id == true_series and p.instance_number == true_instance,
                "distance_mm": round(distance, 4) if math.isfinite(distance) else math.nan,
                "hit": bool(math.isfinite(distance) and distance <= threshold_mm), "problem": problem,
            })
    return pd.DataFrame(rows, columns=list(ERROR_COLUMNS))


def hit_rates(errors: pd.DataFrame) -> pd.DataFrame:
    """Per view of :func:`point_errors`' table (and ``all``): ``points`` (rows with a distance),
    ``hits``, ``hit_rate`` (hits / points; NaN without points), ``median_mm``, ``mean_mm`` and
    ``unmeasured`` (rows whose distance could not be taken). Indexed by view, in first-seen order."""
    import pandas as pd

    def summary(part: pd.DataFrame) -> dict:
        measured = part[part["distance_mm"].notna()]
        n = len(measured)
        return {"points": n, "hits": int(measured["hit"].sum()),
                "hit_rate": float(measured["hit"].mean()) if n else math.nan,
                "median_mm": float(measured["distance_mm"].median()) if n else math.nan,
                "mean_mm": float(measured["distance_mm"].mean()) if n else math.nan,
                "unmeasured": int(len(part) - n)}

    views = list(dict.fromkeys(errors["view"]))
    table = {view: summary(errors[errors["view"] == view]) for view in views}
    table["all"] = summary(errors)
    return pd.DataFrame.from_dict(table, orient="index")
