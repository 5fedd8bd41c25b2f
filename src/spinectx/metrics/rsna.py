"""The RSNA 2024 Lumbar Spine competition metric (SPEC §6): files, the score, and a training metric.

Rows: one per study × condition × level, ``row_id = {study_id}_{condition}_{level}`` in lower snake
case (``44036939_left_subarticular_stenosis_l1_l2``), 25 per study. A row's truth is one of
``normal_mild`` / ``moderate`` / ``severe`` (``Normal/Mild`` / ``Moderate`` / ``Severe`` in
``train.csv``) or blank; a blank row is not scored.

The score (lower is better), exactly as SPEC §6 defines it:

- sample weight 1 / 2 / 4 for a true normal_mild / moderate / severe row;
- per group ``spinal`` (spinal canal stenosis, 5 rows a study), ``foraminal`` (left and right neural
  foraminal narrowing, 10) and ``subarticular`` (left and right subarticular stenosis, 10):
  ``L_g = Σ w·(−ln p_true) / Σ w`` over the group's scored rows, the submitted probabilities first
  clipped to [ε, 1 − ε] (ε = float64 machine epsilon) and then each row renormalised to sum 1;
- ``any_severe_spinal``: per study, over its scored spinal rows: truth = any of them severe,
  prediction = the largest of their ``severe`` values as submitted (clipped to [ε, 1 − ε], not
  renormalised), weight = the largest row weight among them; the weighted binary log loss over
  those studies;
- ``score`` = the mean of the four terms; a term without any scored row is left out (and is NaN).

Plain functions (pandas/numpy) read and check the files and compute the score with breakdowns;
:class:`RSNAMetric` computes the group term (and the any-severe term) during training from the
suite's per-landmark tensors, exact across DDP processes.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torchmetrics import Metric

from spinectx.data.errors import DataError
from spinectx.metrics.table import _cat

if TYPE_CHECKING:  # pandas is imported where it is used: importing spinectx.metrics stays light
    import pandas as pd

log = logging.getLogger("spinectx.metrics")

#: float64 machine epsilon: probabilities are clipped to [EPS, 1 - EPS]
EPS = float(np.finfo(np.float64).eps)
#: the submission's class columns, in class-index order
CLASSES = ("normal_mild", "moderate", "severe")
#: train.csv's spelling of each class
TRAIN_VALUES = {"Normal/Mild": "normal_mild", "Moderate": "moderate", "Severe": "severe"}
#: sample weight of a row by its true class
CLASS_WEIGHTS = {"normal_mild": 1.0, "moderate": 2.0, "severe": 4.0}
CONDITIONS = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
GROUPS = ("spinal", "foraminal", "subarticular")
GROUP_OF_CONDITION = {
    "spinal_canal_stenosis": "spinal",
    "left_neural_foraminal_narrowing": "foraminal",
    "right_neural_foraminal_narrowing": "foraminal",
    "left_subarticular_stenosis": "subarticular",
    "right_subarticular_stenosis": "subarticular",
}
#: the four terms of the score, in the order they are reported
TERMS = GROUPS + ("any_severe_spinal",)
#: train.csv's 25 label columns ``{condition}_{level}``
LABEL_COLUMNS = tuple(f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS)
SUBMISSION_COLUMNS = ("row_id",) + CLASSES


def few(items: Sequence, limit: int = 5) -> str:
    """``a, b, c`` — or the first ``limit`` items and how many there are in all."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, … ({len(items)} in all)"


def row_ids(study_ids: Iterable) -> list[str]:
    """The 25 row ids of each study, study by study in the order given, each study's rows in
    row_id (alphabetical) order as in the competition's ``sample_submission.csv``."""
    suffixes = sorted(LABEL_COLUMNS)
    return [f"{study}_{suffix}" for study in study_ids for suffix in suffixes]


def parse_row_id(row_id: str) -> tuple[str, str, str]:
    """``(study_id, condition, level)`` of a row id.

    Raises:
        ValueError: the id does not end in ``_{condition}_{level}`` with a known condition and
            level, or has no study id before it.
    """
    match = _ROW_ID.fullmatch(str(row_id))
    if match is None:
        raise ValueError(f"not a row id {{study_id}}_{{condition}}_{{level}}: {str(row_id)!r}")
    return match.group(1), match.group(2), match.group(3)


_ROW_ID = re.compile(rf"(.+)_({'|'.join(CONDITIONS)})_({'|'.join(LEVELS)})")


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """Every cell as text (blank = ""), or a DataError naming the file."""
    import pandas as pd

    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed CSV ({what}): {str(exc).strip()}") from None


def _strip(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names and cells without surrounding blanks; a cell missing from a short line is ""."""
    frame = frame.rename(columns=lambda c: str(c).strip()).fillna("")
    return frame.apply(lambda col: col.str.strip())


def read_submission_csv(path: str | Path, problems: list[str] | None = None) -> pd.DataFrame:
    """A competition submission, checked: ``row_id, normal_mild, moderate, severe``.

    Returns a DataFrame with exactly those columns (row_id text, probabilities float64), in the
    file's row order. Other columns are ignored (reported in ``problems`` when given).

    Raises:
        DataError: naming the file and the offending row ids (the first few and how many): a
            missing file or column, a malformed CSV, no row, a blank, repeated or unknown row id
            (not ``{study_id}_{condition}_{level}``), a value that is not a number, non-finite
            (blank, NaN, inf) or negative, or a row whose values sum to 0.
    """
    path = Path(path)
    frame = _strip(_read_csv(path, "submission"))
    missing = [c for c in SUBMISSION_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; a submission has columns {','.join(SUBMISSION_COLUMNS)} "
                              f"(found: {', '.join(map(str, frame.columns)) or 'none'})")
    extra = [str(c) for c in frame.columns if c not in SUBMISSION_COLUMNS]
    if extra and problems is not None:
        problems.append(f"{path}: column(s) {', '.join(extra)} ignored")
    if frame.empty:
        raise DataError(path, "no row (a submission has 25 rows per study)")
    ids = frame["row_id"]
    blank = ids == ""
    if blank.any():
        lines = [str(i + 2) for i in np.flatnonzero(blank.to_numpy())]  # line 1 is the header
        raise DataError(path, f"blank row_id on line(s) {few(lines)}")
    repeated = ids[ids.duplicated(keep=False)].unique().tolist()
    if repeated:
        raise DataError(path, f"{len(repeated)} row_id(s) repeated: {few(repeated)}")
    unknown = [r for r in ids if _ROW_ID.fullmatch(r) is None]
    if unknown:
        raise DataError(path, f"{len(unknown)} row_id(s) not of the form {{study_id}}_{{condition}}_{{level}} "
                              f"(e.g. 44036939_left_subarticular_stenosis_l1_l2): {few(unknown)}")
    values = np.full((len(frame), len(CLASSES)), np.nan)
    not_number: set[str] = set()
    for j, column in enumerate(CLASSES):
        for i, text in enumerate(frame[column]):
            try:
                values[i, j] = float(text) if text != "" else math.nan
            except ValueError:
                not_number.add(ids.iat[i])
    checks = (
        ([r for r in ids if r in not_number], "with a value that is not a number"),
        (ids[~np.isfinite(values).all(1)].tolist(), "with a blank or non-finite value (NaN, inf)"),
        (ids[(values < 0).any(1)].tolist(), "with a negative value"),
        (ids[values.sum(1) == 0].tolist(), "whose values sum to 0 (no probability to normalise)"),
    )
    for bad, why in checks:
        if bad:
            raise DataError(path, f"{len(bad)} row(s) {why}: {few(bad)}")
    out = frame[["row_id"]].copy()
    for j, column in enumerate(CLASSES):
        out[column] = values[:, j]
    return out.reset_index(drop=True)


def read_train_csv(path: str | Path, problems: list[str] | None = None) -> pd.DataFrame:
    """The competition's ``train.csv``: ``study_id`` + the 25 columns ``{condition}_{level}``.

    Returns the wide table as in the file: ``study_id`` as text, each label cell one of
    ``Normal/Mild``, ``Moderate``, ``Severe`` or None (blank). A study without any label is kept
    (nothing of it is scored) and reported in ``problems`` when given.

    Raises:
        DataError: naming the file: a missing file, a malformed CSV, a missing or unknown column,
            a blank or repeated study_id, a value other than the three classes or blank (naming
            the studies and columns).
    """
    import pandas as pd

    path = Path(path)
    frame = _strip(_read_csv(path, "train.csv"))
    expected = ("study_id",) + LABEL_COLUMNS
    missing = [c for c in expected if c not in frame.columns]
    unknown = [str(c) for c in frame.columns if c not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {few(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {few(unknown)}")
        raise DataError(path, f"{'; '.join(parts)}; train.csv has study_id and the 25 columns {{condition}}_{{level}} "
                              f"({LABEL_COLUMNS[0]} … {LABEL_COLUMNS[-1]})")
    studies = frame["study_id"]
    if (studies == "").any():
        lines = [str(i + 2) for i in np.flatnonzero((studies == "").to_numpy())]
        raise DataError(path, f"blank study_id on line(s) {few(lines)}")
    repeated = studies[studies.duplicated(keep=False)].unique().tolist()
    if repeated:
        raise DataError(path, f"{len(repeated)} study_id(s) repeated: {few(repeated)}")
    labels = frame[list(LABEL_COLUMNS)]
    bad = ~(labels.isin(list(TRAIN_VALUES)) | (labels == ""))
    if bad.to_numpy().any():
        rows, cols = np.nonzero(bad.to_numpy())
        cells = [f"study {studies.iat[r]} {LABEL_COLUMNS[c]}={labels.iat[r, c]!r}" for r, c in zip(rows, cols)]
        raise DataError(path, f"{len(cells)} unknown value(s) (expected {', '.join(TRAIN_VALUES)} or blank): {few(cells, 3)}")
    empty = studies[(labels == "").all(axis=1)].tolist()
    if empty and problems is not None:
        problems.append(f"{path}: {len(empty)} stud(ies) without any label (not scored): {few(empty)}")
    out = frame[list(expected)].copy()
    out["study_id"] = pd.Series(studies.tolist(), index=out.index, dtype=object)
    for column in LABEL_COLUMNS:
        out[column] = pd.Series([v if v != "" else None for v in labels[column]], index=out.index, dtype=object)
    return out.reset_index(drop=True)


def solution_from_train(train: pd.DataFrame) -> pd.DataFrame:
    """The long solution table of a wide ``train.csv`` table (as :func:`read_train_csv` returns).

    Columns: ``row_id``, ``study_id``, ``condition``, ``level``, ``group`` (spinal / foraminal /
    subarticular), ``truth`` (``normal_mild`` / ``moderate`` / ``severe``, or None where blank)
    and ``weight`` (1 / 2 / 4 by the truth; 0 where blank: not scored). 25 rows per study,
    sorted by row_id.

    Raises:
        ValueError: a label column is missing or holds an unknown value.
    """
    import pandas as pd

    missing = [c for c in ("study_id",) + LABEL_COLUMNS if c not in train.columns]
    if missing:
        raise ValueError(f"train table lacks column(s) {few(missing)}")
    records = []
    for study, row in zip(train["study_id"].astype(str), train[list(LABEL_COLUMNS)].itertuples(index=False)):
        for column, value in zip(LABEL_COLUMNS, row):
            truth = _truth_of(value, study, column)
            condition, level = column[: -len(LEVELS[0]) - 1], column[-len(LEVELS[0]):]
            records.append((f"{study}_{column}", study, condition, level, GROUP_OF_CONDITION[condition], truth,
                            CLASS_WEIGHTS[truth] if truth else 0.0))
    names = ["row_id", "study_id", "condition", "level", "group", "truth", "weight"]
    columns = dict(zip(names, zip(*records))) if records else {n: () for n in names}
    frame = pd.DataFrame({
        **{n: pd.Series(list(columns[n]), dtype=object) for n in names[:-1]},  # truth: a class name or None
        "weight": pd.Series(list(columns["weight"]), dtype=np.float64),
    })
    return frame.sort_values("row_id", kind="stable").reset_index(drop=True)


def _truth_of(value, study: str, column: str) -> str | None:
    """A train.csv cell as a class name, None when blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text in TRAIN_VALUES:
        return TRAIN_VALUES[text]
    if text in CLASS_WEIGHTS:
        return text
    raise ValueError(f"study {study} {column}: unknown value {value!r} (expected {', '.join(TRAIN_VALUES)} or blank)")


def _weighted_logloss(nll: np.ndarray, weight: np.ndarray) -> float:
    """Σ w·nll / Σ w; NaN without weight."""
    total = float(weight.sum())
    return float((weight * nll).sum() / total) if total > 0 else math.nan


def rsna_score(
    submission: pd.DataFrame,
    solution: pd.DataFrame,
    problems: list[str] | None = None,
    submission_name: str | Path = "submission",
    solution_name: str | Path = "solution",
) -> dict:
    """SPEC §6's score of ``submission`` (``row_id`` + the three class columns, as
    :func:`read_submission_csv` returns) against ``solution`` (as :func:`solution_from_train`
    returns), with breakdowns.

    Returns a dict (floats; NaN where a term has no scored row, with the reason in ``undefined``):
    ``score``, ``spinal``, ``foraminal``, ``subarticular``, ``any_severe_spinal``;
    ``per_condition`` / ``per_level`` (the weighted log loss over the rows of each of the 5
    conditions / 5 levels; the any-severe term is not part of them); ``rows_scored`` (rows with a
    truth), ``rows_per_group`` (per group, and ``any_severe_spinal``: studies in that term),
    ``rows_per_condition``, ``rows_per_level``, ``studies_scored`` (studies with a scored row),
    ``ignored_rows`` / ``ignored_studies`` (submission rows, and their studies, that the solution
    does not hold: listed in ``problems``), ``undefined``.

    Raises:
        DataError: a scored row (truth not blank) has no submission row (naming them; the
            competition requires every row) — the error names ``submission_name``; the solution
            has no scored row at all — names ``solution_name``.
        ValueError: a submission value is negative or not finite, or a row sums to 0 (files read
            by :func:`read_submission_csv` never are).
    """
    problems = problems if problems is not None else []
    solution = solution.reset_index(drop=True)
    sub = submission.set_index("row_id")
    if sub.index.has_duplicates:
        raise ValueError(f"repeated row_id(s) in the submission: {few(sub.index[sub.index.duplicated()].unique().tolist())}")

    # submission rows the solution does not hold: of studies it does not hold, or stray ones
    known = set(solution["row_id"])
    extra = [r for r in sub.index if r not in known]
    solution_studies = set(solution["study_id"].astype(str))
    other_studies: dict[str, int] = {}
    stray = []
    for r in extra:
        match = _ROW_ID.fullmatch(str(r))
        if match is not None and match.group(1) not in solution_studies:
            other_studies[match.group(1)] = other_studies.get(match.group(1), 0) + 1
        else:
            stray.append(r)
    if other_studies:
        n_rows = sum(other_studies.values())
        problems.append(f"{submission_name}: {n_rows} row(s) of {len(other_studies)} stud(ies) not in {solution_name} ignored: "
                        f"{few(sorted(other_studies))}")
    if stray:
        problems.append(f"{submission_name}: {len(stray)} row(s) not in {solution_name} ignored: {few(stray)}")

    scored = solution[solution["truth"].notna()].reset_index(drop=True)
    if scored.empty:
        raise DataError(solution_name, f"nothing to score: no row with a truth among its {len(solution)} rows")
    absent = [r for r in scored["row_id"] if r not in sub.index]
    if absent:
        raise DataError(submission_name, f"{len(absent)} row(s) missing that {solution_name} scores "
                                         f"(the competition requires every row): {few(absent)}")
    submitted = set(sub.index)
    scored_studies = set(scored["study_id"].astype(str))
    unscored_absent = solution[(solution["truth"].isna()) & solution["study_id"].astype(str).isin(scored_studies)
                               & ~solution["row_id"].isin(submitted)]["row_id"].tolist()
    if unscored_absent:
        problems.append(f"{submission_name}: {len(unscored_absent)} row(s) missing whose truth is blank (not scored; "
                        f"the competition requires every row): {few(unscored_absent)}")

    raw = sub.loc[scored["row_id"], list(CLASSES)].to_numpy(dtype=np.float64)
    if not np.isfinite(raw).all() or (raw < 0).any() or (raw.sum(1) == 0).any():
        bad = scored["row_id"][~np.isfinite(raw).all(1) | (raw < 0).any(1) | (raw.sum(1) == 0)].tolist()
        raise ValueError(f"submission rows with negative or non-finite values or summing to 0: {few(bad)}")
    off = np.abs(raw.sum(1) - 1.0) > 1e-3
    if off.any():
        problems.append(f"{submission_name}: {int(off.sum())} row(s) do not sum to 1 (renormalised for the log loss, "
                        f"while any_severe_spinal takes `severe` as submitted, as SPEC §6): "
                        f"{few(scored['row_id'][off].tolist())}")
    target = scored["truth"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    weight = np.asarray([CLASS_WEIGHTS[c] for c in CLASSES])[target]
    prob = np.clip(raw, EPS, 1 - EPS)
    prob = prob / prob.sum(axis=1, keepdims=True)
    nll = -np.log(prob[np.arange(len(prob)), target])

    out: dict = {}
    undefined: dict[str, str] = {}
    rows_per_group: dict[str, int] = {}
    for group in GROUPS:
        sel = (scored["group"] == group).to_numpy()
        rows_per_group[group] = int(sel.sum())
        out[group] = _weighted_logloss(nll[sel], weight[sel])
        if not sel.any():
            undefined[group] = f"no {group} row with a truth (left out of the score)"

    # any severe spinal: per study over its scored spinal rows
    spinal = (scored["group"] == "spinal").to_numpy()
    studies = scored["study_id"].astype(str).to_numpy()[spinal]
    severe_raw = np.clip(raw[spinal, CLASSES.index("severe")], EPS, 1 - EPS)
    is_severe = target[spinal] == CLASSES.index("severe")
    uniq, inverse = np.unique(studies, return_inverse=True)
    p_any = np.full(len(uniq), -np.inf)
    np.maximum.at(p_any, inverse, severe_raw)
    y_any = np.zeros(len(uniq), dtype=bool)
    np.logical_or.at(y_any, inverse, is_severe)
    w_any = np.zeros(len(uniq))
    np.maximum.at(w_any, inverse, weight[spinal])
    bce = -np.where(y_any, np.log(p_any), np.log1p(-p_any)) if len(uniq) else np.zeros(0)
    out["any_severe_spinal"] = _weighted_logloss(bce, w_any)
    rows_per_group["any_severe_spinal"] = len(uniq)
    if not len(uniq):
        undefined["any_severe_spinal"] = "no study with a spinal row with a truth (left out of the score)"

    terms = [out[t] for t in TERMS if not math.isnan(out[t])]
    out = {"score": float(np.mean(terms)), **out}

    per: dict[str, dict] = {}
    for key, column, names in (("condition", "condition", CONDITIONS), ("level", "level", LEVELS)):
        values, counts = {}, {}
        for name in names:
            sel = (scored[column] == name).to_numpy()
            counts[name] = int(sel.sum())
            values[name] = _weighted_logloss(nll[sel], weight[sel])
            if not sel.any():
                undefined[f"per_{key}.{name}"] = f"no {name} row with a truth"
        per[key] = (values, counts)
    return {
        **out,
        "per_condition": per["condition"][0],
        "per_level": per["level"][0],
        "rows_scored": len(scored),
        "rows_per_group": rows_per_group,
        "rows_per_condition": per["condition"][1],
        "rows_per_level": per["level"][1],
        "studies_scored": int(scored["study_id"].nunique()),
        "ignored_rows": len(extra),
        "ignored_studies": len(other_studies),
        "undefined": undefined,
    }


def prior_submission(train: pd.DataFrame, study_ids: Iterable, pseudo_count: float = 0.0) -> pd.DataFrame:
    """The class-prior baseline: every row of ``study_ids`` predicted at the class frequencies of
    its condition and level in ``train``.

    ``train`` is the wide ``train.csv`` table (:func:`read_train_csv`) or the long solution
    table (:func:`solution_from_train`) of the *training* studies; blank truths do not count.
    Each row's probabilities are (count + ``pseudo_count``) / Σ (count + ``pseudo_count``) over
    the three classes: the plain training frequencies with the default 0 (a class never seen at a
    condition and level then gets 0, clipped to ε by the metric); a condition and level without
    any label in ``train`` gets a uniform row.

    Returns a submission DataFrame (``row_id, normal_mild, moderate, severe``; 25 rows per study,
    sorted by row_id; each row sums to 1).

    Raises:
        ValueError: ``pseudo_count`` is negative, or ``train`` is neither table.
    """
    import pandas as pd

    if not pseudo_count >= 0:
        raise ValueError(f"pseudo_count must be ≥ 0, got {pseudo_count!r}")
    long = train if "truth" in train.columns else solution_from_train(train)
    labelled = long[long["truth"].notna()]
    counts = {c: np.zeros(len(CLASSES)) for c in LABEL_COLUMNS}
    for condition, level, truth in zip(labelled["condition"], labelled["level"], labelled["truth"]):
        counts[f"{condition}_{level}"][CLASSES.index(truth)] += 1
    freq = {}
    for column, n in counts.items():
        n = n + pseudo_count
        freq[column] = n / n.sum() if n.sum() > 0 else np.full(len(CLASSES), 1.0 / len(CLASSES))
    ids = sorted(row_ids(str(s) for s in dict.fromkeys(study_ids)))
    rows = []
    for r in ids:
        _, condition, level = parse_row_id(r)
        rows.append([r, *freq[f"{condition}_{level}"]])
    return pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))


class RSNAMetric(Metric):
    """The competition's weighted log loss over one view's rows, during training (DDP-exact).

    Each (sample, landmark) with a class target ≥ 0 is one row of the competition: in the
    ``spinal`` view one sample is a study with its 5 levels; the ``foraminal`` view has a sample
    per side, the ``subarticular`` view a sample per level. Probabilities are clipped to
    [ε, 1 − ε] (float64 ε) and each row renormalised before the log, as SPEC §6 does.

    Args:
        any_severe: also compute the any-severe term, per *sample* over its rows with a target
            (truth = any row severe, prediction = the largest clipped ``severe`` probability,
            weight = the largest row weight); meaningful in the spinal view.
        radius_mm: a landmark is *hit* when its predicted point lies within this distance (mm)
            of its true point.
        class_weights: the sample weight of a row by its true class index (1 / 2 / 4).
        severe_index: the class index of ``severe``.

    ``update(prob [B,K,C] float, target [B,K] long, distance_mm [B,K] float)``: ``prob`` the
    class probabilities (C = ``len(class_weights)``), ``target`` the class index (−1 = blank /
    unlabelled: not a row), ``distance_mm`` the distance in mm from the predicted to the true
    point (NaN: no true point, not counted in the hit rate; inf: no prediction, a miss).

    ``compute()`` → dict of 0-d tensors: ``logloss`` (the view's group term of SPEC §6),
    ``any_severe`` (only with ``any_severe=True``), ``score`` (mean of the two, or ``logloss``),
    ``hit_rate`` (fraction of the landmarks with a true point that are hit), ``rows`` (rows with
    a target). NaN where undefined (no row with a target; no landmark with a true point), with
    the reason in ``undefined`` and a logged warning.

    Raises (``update``):
        ValueError: shapes that do not match, or a target outside −1 … C − 1.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(
        self,
        any_severe: bool = False,
        radius_mm: float = 6.0,
        class_weights: Sequence[float] = (1.0, 2.0, 4.0),
        severe_index: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        weights = [float(w) for w in class_weights]
        if len(weights) < 2 or not all(w > 0 and math.isfinite(w) for w in weights):
            raise ValueError(f"class_weights must be ≥ 2 positive numbers, got {class_weights!r}")
        if not 0 <= int(severe_index) < len(weights):
            raise ValueError(f"severe_index {severe_index} is not a class index of {len(weights)} classes")
        if not float(radius_mm) >= 0:
            raise ValueError(f"radius_mm must be ≥ 0, got {radius_mm!r}")
        self.any_severe = bool(any_severe)
        self.radius_mm = float(radius_mm)
        self.severe_index = int(severe_index)
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float64), persistent=False)
        # per row: −ln p_true and weight; per sample: any-severe loss and weight; per landmark: hit
        for name in ("nll", "weight", "severe_loss", "severe_weight", "hit"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.undefined: dict[str, str] = {}

    def update(self, prob: torch.Tensor, target: torch.Tensor, distance_mm: torch.Tensor) -> None:
        n_classes = len(self.class_weights)
        if prob.ndim != 3 or prob.shape[-1] != n_classes or tuple(target.shape) != tuple(prob.shape[:2]) \
                or tuple(distance_mm.shape) != tuple(prob.shape[:2]):
            raise ValueError(f"RSNAMetric.update: expected prob [B, K, {n_classes}], target [B, K], distance_mm [B, K]; "
                             f"got {tuple(prob.shape)}, {tuple(target.shape)}, {tuple(distance_mm.shape)}")
        target = target.long()
        if bool(((target < -1) | (target >= n_classes)).any()):
            raise ValueError(f"RSNAMetric.update: targets must be −1 (blank) or a class index 0…{n_classes - 1}, "
                             f"got values {sorted(set(target.flatten().tolist()))}")
        p = prob.detach().double().clamp(EPS, 1 - EPS)
        labelled = target >= 0
        safe = target.clamp(min=0)
        renorm = p / p.sum(-1, keepdim=True)
        nll = -renorm.gather(-1, safe[..., None]).squeeze(-1).log()
        weight = self.class_weights.to(p.device)[safe]
        self.nll.append(nll[labelled])
        self.weight.append(weight[labelled])
        if self.any_severe:
            has = labelled.any(-1)
            severe_p = torch.where(labelled, p[..., self.severe_index], torch.zeros_like(nll)).amax(-1)
            is_severe = (labelled & (target == self.severe_index)).any(-1)
            w = torch.where(labelled, weight, torch.zeros_like(weight)).amax(-1)
            loss = -torch.where(is_severe, severe_p.log(), (-severe_p).log1p())
            self.severe_loss.append(loss[has])
            self.severe_weight.append(w[has])
        dist = distance_mm.detach().double()
        has_truth = ~torch.isnan(dist)
        self.hit.append((dist[has_truth] <= self.radius_mm).double())

    def compute(self) -> dict[str, torch.Tensor]:
        nan = torch.tensor(math.nan, dtype=torch.float64)
        nll, weight = _cat(self.nll, torch.float64), _cat(self.weight, torch.float64)
        hit = _cat(self.hit, torch.float64)
        undefined: dict[str, str] = {}
        out: dict[str, torch.Tensor] = {}
        out["logloss"] = (weight * nll).sum() / weight.sum() if weight.numel() else nan
        if not weight.numel():
            undefined["logloss"] = "no row with a class target"
        parts = [out["logloss"]]
        if self.any_severe:
            s_loss, s_weight = _cat(self.severe_loss, torch.float64), _cat(self.severe_weight, torch.float64)
            out["any_severe"] = (s_weight * s_loss).sum() / s_weight.sum() if s_weight.numel() else nan
            if not s_weight.numel():
                undefined["any_severe"] = "no sample with a class target"
            parts.append(out["any_severe"])
        out["score"] = torch.stack(parts).mean()
        if "logloss" in undefined:
            undefined["score"] = undefined["logloss"]
        out["hit_rate"] = hit.mean() if hit.numel() else nan
        if not hit.numel():
            undefined["hit_rate"] = "no landmark with a true point"
        out["rows"] = torch.tensor(float(nll.numel()), dtype=torch.float64)
        self.undefined = undefined
        if undefined:
            log.warning("RSNA metric undefined (NaN): %s", "; ".join(f"{k}: {why}" for k, why in undefined.items()))
        return out
