"""Study-level RSNA 2024 prediction: one study folder (``<study_id>/<series_id>/*.dcm``) and the
three views' models → class probabilities for the study's 25 rows, and the points behind them.

- **spinal**: the Sagittal T2/STIR stack with most slices; of its middle three slices, the one
  where the localiser is surest (mean location score) gives the 5 level points and severities.
- **foraminal**: each Sagittal T1 slice is put on the patient's left or right of the midline from
  patient coordinates (:func:`~spinectx.data.geometry.patient_side`; the midline is the spinal
  points' mean x, else the stack's middle); per side and level, the slice with the surest point
  gives the severity.
- **subarticular**: each level's 3-D point (the spinal prediction through the T2 geometry) goes
  to the nearest slice of any Axial T2 stack (:func:`~spinectx.data.geometry.nearest_slice`); that
  slice gives left and right.

Rows that cannot be predicted are returned with the reason (the caller fills them with the
checkpoint's prior, :func:`~spinectx.data.rsna_submission.assemble_submission`). Each slice is
prepared as validation prepares it (:func:`~spinectx.inference.stack_input`); headers are read
once per file and pixels only for the slices used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spinectx.data.dicom import read_frame
from spinectx.data.errors import DataError
from spinectx.data.geometry import nearest_slice, patient_side, pixel_to_patient
from spinectx.data.study import index_subfolders
from spinectx.inference import input_to_frame, stack_input

LEVELS = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
DESCRIPTIONS = {"spinal": "Sagittal T2/STIR", "foraminal": "Sagittal T1", "subarticular": "Axial T2"}


def _snake(level: str) -> str:
    return level.lower().replace("/", "_")


@dataclass
class SlicePrediction:
    """One slice through one view's model: keypoints [K, 2] (x, y) in the frame's pixels, location
    scores [K], class probabilities [K, 3] (the module's landmark order), the slice's header."""

    header: object
    keypoints: np.ndarray
    score: np.ndarray
    class_prob: np.ndarray


@dataclass
class StudyResult:
    """What :func:`predict_study` found: ``rows`` row_id → [3] probabilities, ``points`` (one per
    predicted row: row_id, series_id, instance_number, x, y), ``reasons`` row_id → why it was not
    predicted, ``problems`` (study-level), ``pixel_reads`` (slices decoded)."""

    study_id: str
    rows: dict[str, list[float]] = field(default_factory=dict)
    points: list[dict] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    pixel_reads: int = 0


class FrameMemo:
    """Decoded frames of one study, each decoded once (``len`` = frames decoded)."""

    def __init__(self):
        self._frames: dict = {}

    def __call__(self, ref) -> np.ndarray:
        if ref not in self._frames:
            self._frames[ref] = read_frame(ref)
        return self._frames[ref]

    def __len__(self) -> int:
        return len(self._frames)


def predict_slice(module, slices, index: int, read=read_frame) -> SlicePrediction:
    """Run ``module`` on slice ``index`` of a stack, prepared for its checkpoint's input size and
    slice count; ``read`` decodes a FrameRef (e.g. a :class:`FrameMemo`)."""
    size = int(module.hparams.get("input_size") or 0)
    channels = int(module.hparams.get("input_slices") or 1)
    image, shape, _ = stack_input([h.ref for h in slices], index, size, channels, read)
    with torch.no_grad():
        decoded = module.predict_keypoints(image[None].to(module.device))
    if decoded.class_prob is None:
        raise DataError("model.class_head", "an RSNA prediction needs a multiclass checkpoint (three severities)")
    keypoints = input_to_frame(decoded.keypoints[0].float().cpu().numpy(), shape, size)
    return SlicePrediction(slices[index], keypoints, decoded.score[0].float().cpu().numpy(),
                           decoded.class_prob[0, :, :3].float().cpu().numpy())


def _point(row: str, h, xy) -> dict:
    return {"row_id": row, "series_id": Path(h.path).parent.name, "instance_number": h.instance_number,
            "x": round(float(xy[0]), 2), "y": round(float(xy[1]), 2)}


def read_study_stacks(study_dir: Path, descriptions: Mapping[str, str]) -> tuple[dict[str, list], list[str]]:
    """Series folders of one study → ({series description: [stacks]}, problems). The description
    comes from ``descriptions`` (series_id → text), else from the files' SeriesDescription."""
    out: dict[str, list] = {}
    problems: list[str] = []
    for series_dir, idx in index_subfolders(study_dir, problems):
        for stack in idx.stacks:
            out.setdefault(descriptions.get(series_dir.name) or stack.description, []).append(stack)
    return out, problems


def predict_study(study_dir: str | Path, modules: Mapping[str, object],
                  descriptions: Mapping[str, str] | None = None) -> StudyResult:
    """Predict the rows of one study with the views' ``modules`` (view → LandmarkModule; a view
    left out leaves its rows to the prior) — see the module docstring."""
    study_dir = Path(study_dir)
    result = StudyResult(study_dir.name)
    stacks, result.problems = read_study_stacks(study_dir, dict(descriptions or {}))
    sid = result.study_id
    memo = FrameMemo()
    level_points: dict[str, np.ndarray] = {}

    def missing(view: str, rows: list[str]) -> None:
        why = (f"no {DESCRIPTIONS[view]} series in {study_dir}" if not stacks.get(DESCRIPTIONS[view])
               else f"no {view} model given")
        for r in rows:
            result.reasons[r] = why

    spinal_rows = [f"{sid}_spinal_canal_stenosis_{_snake(lv)}" for lv in LEVELS]
    if "spinal" in modules and stacks.get(DESCRIPTIONS["spinal"]):
        module = modules["spinal"]
        stack = max(stacks[DESCRIPTIONS["spinal"]], key=lambda s: len(s.slices))
        mid = len(stack.slices) // 2
        tried = []
        for i in sorted({max(mid - 1, 0), mid, min(mid + 1, len(stack.slices) - 1)}):
            tried.append(predict_slice(module, stack.slices, i, memo))
        best = max(tried, key=lambda p: float(p.score.mean()))
        names = list(module.landmarks.names)
        for lv, row in zip(LEVELS, spinal_rows):
            k = names.index(lv)
            result.rows[row] = best.class_prob[k].tolist()
            result.points.append(_point(row, best.header, best.keypoints[k]))
            level_points[lv] = pixel_to_patient(best.header, best.keypoints[k])
    else:
        missing("spinal", spinal_rows)

    sides = ("left", "right")
    foraminal_rows = {(s, lv): f"{sid}_{s}_neural_foraminal_narrowing_{_snake(lv)}" for s in sides for lv in LEVELS}
    if "foraminal" in modules and stacks.get(DESCRIPTIONS["foraminal"]):
        module = modules["foraminal"]
        stack = max(stacks[DESCRIPTIONS["foraminal"]], key=lambda s: len(s.slices))
        if level_points:
            midline = float(np.mean([p[0] for p in level_points.values()]))
        else:
            middle = stack.slices[len(stack.slices) // 2]
            midline = float(pixel_to_patient(middle, ((middle.cols - 1) / 2, (middle.rows - 1) / 2))[0])
        names = list(module.landmarks.names)
        best: dict[tuple[str, str], tuple[float, SlicePrediction, int]] = {}
        for i, h in enumerate(stack.slices):
            side = patient_side(h, midline)
            pred = predict_slice(module, stack.slices, i, memo)
            for lv in LEVELS:
                k = names.index(lv)
                if (side, lv) not in best or pred.score[k] > best[(side, lv)][0]:
                    best[(side, lv)] = (float(pred.score[k]), pred, k)
        for key, row in foraminal_rows.items():
            if key not in best:
                result.reasons[row] = f"no Sagittal T1 slice on the patient's {key[0]} in {study_dir}"
                continue
            _, pred, k = best[key]
            result.rows[row] = pred.class_prob[k].tolist()
            result.points.append(_point(row, pred.header, pred.keypoints[k]))
    else:
        missing("foraminal", list(foraminal_rows.values()))

    sub_rows = {(s, lv): f"{sid}_{s}_subarticular_stenosis_{_snake(lv)}" for s in sides for lv in LEVELS}
    if "subarticular" in modules and stacks.get(DESCRIPTIONS["subarticular"]):
        module = modules["subarticular"]
        names = list(module.landmarks.names)
        for lv in LEVELS:
            rows = {s: sub_rows[(s, lv)] for s in sides}
            if lv not in level_points:
                for r in rows.values():
                    result.reasons[r] = "no spinal prediction to place the level on the axial series"
                continue
            pick = nearest_slice(stacks[DESCRIPTIONS["subarticular"]], level_points[lv])
            if pick is None:
                for r in rows.values():
                    result.reasons[r] = f"level {lv} lies outside every Axial T2 stack of {study_dir}"
                continue
            pred = predict_slice(module, pick.stack.slices, pick.index, memo)
            for s, r in rows.items():
                k = names.index(s)
                result.rows[r] = pred.class_prob[k].tolist()
                result.points.append(_point(r, pred.header, pred.keypoints[k]))
    else:
        missing("subarticular", list(sub_rows.values()))
    result.pixel_reads = len(memo)
    return result
