"""RSNA 2024 submissions (SPEC §6): the competition's CSV of 25 rows per study.

A study-level prediction gives class probabilities for the rows it could predict; everything else
(a series missing, a level outside every axial stack, non-finite model output) takes the training
class prior stored in the view's checkpoint and is listed, with its reason, in a sidecar
``<output stem>.problems.json``. Every row of every study is written, sorted by ``row_id``, each row
normalised to sum 1 — what the competition requires.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spinectx.metrics.rsna import CLASSES, LEVELS, SUBMISSION_COLUMNS, parse_row_id, row_ids

#: the label columns (condition_level) of each view's landmarks, by landmark identification
_VIEW_CONDITIONS = {
    "spinal": ("spinal_canal_stenosis",),
    "foraminal": ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"),
    "subarticular": ("left_subarticular_stenosis", "right_subarticular_stenosis"),
}


def view_prior_columns(view: str, landmark_names: Sequence[str], prior) -> dict[str, list[float]]:
    """The training prior of one view's checkpoint ([K, ≥3] over its landmarks, in the order of
    ``landmark_names``) as ``{label column: [p normal_mild, p moderate, p severe]}``.

    ``spinal`` and ``foraminal`` landmarks are levels (``L1/L2`` …): the foraminal prior, trained on
    both sides' samples, serves both sides. ``subarticular`` landmarks are ``left``/``right``: the
    prior, pooled over levels, serves every level of its side.

    Raises:
        ValueError: an unknown view, or landmarks that are not the view's.
    """
    if view not in _VIEW_CONDITIONS:
        raise ValueError(f"unknown view {view!r}; views are {list(_VIEW_CONDITIONS)}")
    prior = np.asarray(prior, dtype=np.float64)[:, : len(CLASSES)]
    names = list(landmark_names)
    out: dict[str, list[float]] = {}
    if view == "subarticular":
        if sorted(names) != ["left", "right"]:
            raise ValueError(f"the subarticular prior needs landmarks left/right, got {names}")
        for condition in _VIEW_CONDITIONS[view]:
            side = condition.split("_", 1)[0]
            for level in LEVELS:
                out[f"{condition}_{level}"] = prior[names.index(side)].tolist()
        return out
    snake = {n: n.lower().replace("/", "_") for n in names}
    if sorted(snake.values()) != sorted(LEVELS):
        raise ValueError(f"the {view} prior needs the landmarks L1/L2 … L5/S1, got {names}")
    for condition in _VIEW_CONDITIONS[view]:
        for name in names:
            out[f"{condition}_{snake[name]}"] = prior[names.index(name)].tolist()
    return out


def _usable(values) -> np.ndarray | None:
    p = np.asarray(values, dtype=np.float64).reshape(-1)
    if p.shape != (len(CLASSES),) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        return None
    return p / p.sum()


def assemble_submission(
    study_ids: Iterable,
    predicted: Mapping[str, Sequence[float]],
    prior: Mapping[str, Sequence[float]],
    reasons: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Every row of ``study_ids`` (25 each, sorted by ``row_id``): the model's probabilities where
    ``predicted`` (row_id → 3 values, normalised here) holds usable ones, else ``prior`` (label
    column → 3 values; uniform when the column is absent).

    Returns (submission DataFrame ``row_id, normal_mild, moderate, severe``, problems): one
    ``{"row_id", "reason"}`` per row that took the prior — ``reasons[row_id]`` when given, "no
    prediction" otherwise, or why the model's values were unusable.

    Raises:
        ValueError: ``predicted`` holds a row_id that is malformed or of a study not in ``study_ids``.
    """
    ids = row_ids(str(s) for s in dict.fromkeys(str(s) for s in study_ids))
    wanted = set(ids)
    foreign = [r for r in predicted if r not in wanted]
    if foreign:
        for r in foreign:
            parse_row_id(r)  # a malformed one raises with its own message
        raise ValueError(f"predictions for {len(foreign)} row(s) of studies not asked for: {foreign[:5]}")
    reasons = dict(reasons or {})
    uniform = [1.0 / len(CLASSES)] * len(CLASSES)
    rows, problems = [], []
    for r in sorted(ids):
        p = _usable(predicted[r]) if r in predicted else None
        if p is None:
            study, condition, level = parse_row_id(r)
            if r in predicted:
                reason = f"model output unusable ({list(np.asarray(predicted[r], dtype=float).reshape(-1))})"
            else:
                reason = reasons.get(r, "no prediction")
            p = _usable(prior.get(f"{condition}_{level}", uniform))
            if p is None:
                raise ValueError(f"prior of {condition}_{level} is not 3 non-negative finite values: "
                                 f"{prior.get(f'{condition}_{level}')}")
            problems.append({"row_id": r, "reason": reason})
        rows.append((r, *p.tolist()))
    return pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS)), problems


def write_submission(frame: pd.DataFrame, problems: list[dict], path: str | Path) -> tuple[Path, Path]:
    """Write the submission CSV and its sidecar ``<stem>.problems.json`` (``{"rows_from_prior": N,
    "problems": [...]}``), each through a temporary file renamed into place → (csv, sidecar)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_name(f"{path.stem}.problems.json")
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(json.dumps({"rows_from_prior": len(problems), "problems": problems}, indent=2))
    tmp.replace(sidecar)
    return path, sidecar

