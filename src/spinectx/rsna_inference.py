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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spinectx.data.dicom import read_frame
from spinectx.data.errors import DataError
from spinectx.data.geometry import nearest_slice, patient_side, pixel_to_patient
from spinectx.data.rsna import LEVELS, SERIES_OF_VIEW, level_snake
from spinectx.data.study import index_subfolders
from spinectx.inference import input_spacing, input_to_frame, stack_input


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


#: slices per network call (several slices of one stack go through the network together)
BATCH = 8


def predict_slices(module, slices, indices, read=read_frame, batch: int = BATCH) -> list[SlicePrediction]:
    """Run ``module`` on the slices ``indices`` of a stack (``slices``: headers in slice order), each
    prepared for its checkpoint's input size and slice count, ``batch`` slices per network call;
    ``read`` decodes a FrameRef (e.g. a :class:`FrameMemo`). → one :class:`SlicePrediction` per
    index, in the order given.

    Raises:
        DataError: a slice does not decode, the checkpoint's head is not multiclass, or (crops in
            mm) a slice has no usable PixelSpacing.
    """
    size = int(module.hparams.get("input_size") or 0)
    channels = int(module.hparams.get("input_slices") or 1)
    indices = list(indices)
    out: list[SlicePrediction] = []
    for start in range(0, len(indices), batch):
        chunk = indices[start:start + batch]
        prepared = [stack_input([h.ref for h in slices], i, size, channels, read) for i in chunk]
        images = torch.stack([image for image, _, _ in prepared])
        spacing = None  # mm per input pixel, for a two-stage pair cropping mm windows
        if getattr(module, "size_mm", None) is not None:
            spacing = torch.stack([input_spacing(slices[i].pixel_spacing, shape, size, slices[i].path)
                                   for i, (_, shape, _) in zip(chunk, prepared)]).to(module.device)
        with torch.no_grad():
            decoded = module.predict_keypoints(images.to(module.device), spacing=spacing)
        if decoded.class_prob is None:
            raise DataError("model.class_head", "an RSNA prediction needs a multiclass checkpoint (three severities)")
        keypoints = decoded.keypoints.float().cpu().numpy()
        score, class_prob = decoded.score.float().cpu().numpy(), decoded.class_prob[..., :3].float().cpu().numpy()
        for j, (i, (_, shape, _)) in enumerate(zip(chunk, prepared)):
            out.append(SlicePrediction(slices[i], input_to_frame(keypoints[j], shape, size), score[j], class_prob[j]))
    return out


def predict_slice(module, slices, index: int, read=read_frame) -> SlicePrediction:
    """:func:`predict_slices` of one slice."""
    return predict_slices(module, slices, [index], read)[0]


def _point(row: str, view: str, h, xy) -> dict:
    return {"row_id": row, "view": view, "series_id": Path(h.path).parent.name, "instance_number": h.instance_number,
            "file": str(Path(h.ref.path).resolve()), "frame": h.ref.frame or 0,
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


def _decodable(module, slices, indices, memo, problems: list[str]) -> list[SlicePrediction]:
    """:func:`predict_slices` of the ``indices`` whose slice decodes; each slice that does not is
    left out and named in ``problems`` (one bad file costs that slice, not the study)."""
    good = []
    for i in indices:
        try:
            memo(slices[i].ref)
            good.append(i)
        except DataError as exc:
            problems.append(f"{exc} (slice left out)")
    return predict_slices(module, slices, good, memo) if good else []


def _spinal(result: StudyResult, module, stacks: list, memo, rows: dict[str, str]) -> dict[str, np.ndarray]:
    """Spinal rows from the largest Sagittal T2/STIR stack → the level points in patient mm (LPS)."""
    stack = max(stacks, key=lambda s: len(s.slices))
    mid = len(stack.slices) // 2
    candidates = sorted({max(mid - 1, 0), mid, min(mid + 1, len(stack.slices) - 1)})
    tried = _decodable(module, stack.slices, candidates, memo, result.problems)
    if not tried:
        raise DataError(Path(stack.slices[mid].path).parent, "none of the middle Sagittal T2/STIR slices decodes")
    best = max(tried, key=lambda p: float(p.score.mean()))
    names = list(module.landmarks.names)
    points = {}
    for lv, row in rows.items():
        k = names.index(lv)
        result.rows[row] = best.class_prob[k].tolist()
        result.points.append(_point(row, "spinal", best.header, best.keypoints[k]))
        points[lv] = pixel_to_patient(best.header, best.keypoints[k])
    return points


def _foraminal(result: StudyResult, module, stacks: list, memo, rows: dict[tuple[str, str], str],
               level_points: dict[str, np.ndarray], study_dir: Path) -> None:
    """Foraminal rows: per patient side and level, the Sagittal T1 slice where the localiser is surest."""
    stack = max(stacks, key=lambda s: len(s.slices))
    if level_points:
        midline = float(np.mean([p[0] for p in level_points.values()]))
    else:
        middle = stack.slices[len(stack.slices) // 2]
        midline = float(pixel_to_patient(middle, ((middle.cols - 1) / 2, (middle.rows - 1) / 2))[0])
    names = list(module.landmarks.names)
    best: dict[tuple[str, str], tuple[float, SlicePrediction, int]] = {}
    for pred in _decodable(module, stack.slices, range(len(stack.slices)), memo, result.problems):
        side = patient_side(pred.header, midline)
        for lv in LEVELS:
            k = names.index(lv)
            if (side, lv) not in best or pred.score[k] > best[(side, lv)][0]:
                best[(side, lv)] = (float(pred.score[k]), pred, k)
    for key, row in rows.items():
        if key not in best:
            result.reasons[row] = f"no decodable Sagittal T1 slice on the patient's {key[0]} in {study_dir}"
            continue
        _, pred, k = best[key]
        result.rows[row] = pred.class_prob[k].tolist()
        result.points.append(_point(row, "foraminal", pred.header, pred.keypoints[k]))


def _subarticular(result: StudyResult, module, stacks: list, memo, rows: dict[tuple[str, str], str],
                  level_points: dict[str, np.ndarray], study_dir: Path) -> None:
    """Subarticular rows: each level's spinal point onto its nearest Axial T2 slice (any stack)."""
    names = list(module.landmarks.names)
    picks = {}
    for lv in LEVELS:
        level_rows = [rows[(s, lv)] for s in ("left", "right")]
        if lv not in level_points:
            why = "no spinal prediction to place the level on the axial series"
        elif (pick := nearest_slice(stacks, level_points[lv])) is None:
            why = f"level {lv} lies outside every Axial T2 stack of {study_dir}"
        else:
            picks[lv] = pick
            continue
        for r in level_rows:
            result.reasons[r] = why
    predicted: dict[tuple[int, int], SlicePrediction] = {}  # (stack, slice) → prediction; one call per stack
    for stack in {id(p.stack): p.stack for p in picks.values()}.values():
        wanted = sorted({p.index for p in picks.values() if p.stack is stack})
        for pred in _decodable(module, stack.slices, wanted, memo, result.problems):
            predicted[(id(stack), stack.slices.index(pred.header))] = pred
    for lv, pick in picks.items():
        pred = predicted.get((id(pick.stack), pick.index))
        for s in ("left", "right"):
            r = rows[(s, lv)]
            if pred is None:
                result.reasons[r] = f"the Axial T2 slice of level {lv} does not decode: {pick.stack.slices[pick.index].ref}"
                continue
            k = names.index(s)
            result.rows[r] = pred.class_prob[k].tolist()
            result.points.append(_point(r, "subarticular", pred.header, pred.keypoints[k]))


def predict_study(study_dir: str | Path, modules: Mapping[str, object],
                  descriptions: Mapping[str, str] | None = None) -> StudyResult:
    """Predict the rows of one study with the views' ``modules`` (view → LandmarkModule; a view
    left out leaves its rows to the prior) — see the module docstring. A view that fails (its
    slices do not decode) costs that view's rows (and, for the spinal view, the subarticular rows
    it places), each with the reason; the other views are still predicted."""
    study_dir = Path(study_dir)
    result = StudyResult(study_dir.name)
    stacks, result.problems = read_study_stacks(study_dir, dict(descriptions or {}))
    sid = result.study_id
    memo = FrameMemo()
    sides = ("left", "right")
    rows = {
        "spinal": {lv: f"{sid}_spinal_canal_stenosis_{level_snake(lv)}" for lv in LEVELS},
        "foraminal": {(s, lv): f"{sid}_{s}_neural_foraminal_narrowing_{level_snake(lv)}" for s in sides for lv in LEVELS},
        "subarticular": {(s, lv): f"{sid}_{s}_subarticular_stenosis_{level_snake(lv)}" for s in sides for lv in LEVELS},
    }
    level_points: dict[str, np.ndarray] = {}
    for view in ("spinal", "foraminal", "subarticular"):
        found = stacks.get(SERIES_OF_VIEW[view])
        if view not in modules or not found:
            if view not in modules:
                why = f"no {view} model given"
            elif result.problems:
                why = (f"no readable {SERIES_OF_VIEW[view]} series in {study_dir} ({len(result.problems)} problem(s) "
                       f"reading the study; first: {result.problems[0]})")
            else:
                why = f"no {SERIES_OF_VIEW[view]} series in {study_dir}"
            for r in rows[view].values():
                result.reasons[r] = why
            continue
        try:
            if view == "spinal":
                level_points = _spinal(result, modules[view], found, memo, rows[view])
            elif view == "foraminal":
                _foraminal(result, modules[view], found, memo, rows[view], level_points, study_dir)
            else:
                _subarticular(result, modules[view], found, memo, rows[view], level_points, study_dir)
        except DataError as exc:
            result.problems.append(str(exc))
            for r in rows[view].values():
                if r not in result.rows:
                    result.reasons[r] = f"{view} view failed: {exc}"
    result.pixel_reads = len(memo)
    return result


# ------------------------------------------------------------------ many studies → a submission
def _is_dicom(path: Path) -> bool:
    """A file that is DICOM: a ``.dcm`` name, or the ``DICM`` preamble marker (files without a
    suffix). Hidden files (``.DS_Store``) never are."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _holds_dicom(folder: Path) -> bool:
    return any(_is_dicom(p) for p in folder.iterdir())


def study_folders(input_dir: str | Path, known_studies: Iterable[str] = ()) -> list[Path]:
    """The study folders of ``input_dir``: the folder itself when it is one study (its name is one of
    ``known_studies``, or its sub-folders hold DICOM files directly), else its sub-folders (Kaggle
    ``test_images/<study>/<series>/*.dcm``), in name order. Hidden and stray non-DICOM files are
    ignored when telling the two apart.

    Raises:
        DataError: ``input_dir`` is missing, not a folder, a series folder (DICOM files directly
            inside), or holds no study folder.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise DataError(root, "not a folder (give test_images/ or one study folder)")
    if _holds_dicom(root):
        raise DataError(root, "holds DICOM files directly: this is a series folder; give its study folder "
                              "(<study>/<series>/*.dcm) or the folder of study folders")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if not subfolders:
        raise DataError(root, "no study folder inside (expected <study>/<series>/*.dcm)")
    if root.name in set(map(str, known_studies)) or any(_holds_dicom(p) for p in subfolders):
        return [root]
    return subfolders


@dataclass
class Prediction:
    """Study-level predictions of many studies: ``submission`` (every row, sorted; SPEC §6),
    ``from_prior`` (the rows that took the prior, with their reason), ``studies`` (per-study
    results) and ``problems`` (input problems not tied to a row)."""

    submission: object
    from_prior: list[dict]
    studies: list[StudyResult]
    problems: list[str]


def view_priors(modules: Mapping[str, object]) -> tuple[dict[str, list[float]], list[str]]:
    """The training priors kept in the views' checkpoints → ({label column: 3 probabilities},
    problems). A view without a stored prior (a checkpoint older than the prior) is left out: its
    columns fall back to uniform, and a problem says so."""
    from spinectx.data.rsna_submission import view_prior_columns

    prior: dict[str, list[float]] = {}
    problems = []
    for view, module in modules.items():
        if getattr(module, "class_prior", None) is None:
            problems.append(f"the {view} checkpoint stores no training prior: its unpredicted rows get 1/3 each")
            continue
        prior.update(view_prior_columns(view, module.landmarks.names, module.class_prior))
    return prior, problems


def predict_studies(input_dir: str | Path, modules: Mapping[str, object], series_csv: str | Path | None = None,
                    studies: Iterable[str] | None = None, progress=None,
                    fallback_prior: Mapping[str, Sequence[float]] | None = None) -> Prediction:
    """Every study of ``input_dir`` (:func:`study_folders`) through :func:`predict_study`, assembled
    into the submission (:func:`~spinectx.data.rsna_submission.assemble_submission`).

    ``series_csv`` (study_id, series_id, series_description) names the series; its studies without a
    folder still get their 25 rows (the prior, reason "study folder missing"). ``studies``: only these
    study ids (e.g. a fold's held-out studies). A study that fails to read (a slice that does not
    decode, …) takes the prior for all its rows with the reason; the run goes on. ``progress(i, n,
    study_id)`` is called before each study. The prior of a row is the one stored in its view's
    checkpoint; ``fallback_prior`` (label column → 3 probabilities) serves views without a
    checkpoint, else they are uniform.

    Raises:
        DataError: the input folder or the CSV cannot be used (:func:`study_folders`,
            :func:`~spinectx.data.rsna.read_series_descriptions`).
    """
    from spinectx.data.rsna import read_series_descriptions
    from spinectx.data.rsna_submission import assemble_submission

    problems: list[str] = []
    described = read_series_descriptions(series_csv, problems) if series_csv else {}
    found = study_folders(input_dir, described)
    folders = {p.name: p for p in found}
    one_study = found == [Path(input_dir)]
    wanted = None if studies is None else [str(s) for s in studies]
    if wanted is not None:
        ids = wanted
    elif one_study:
        ids = list(folders)  # one study folder: that study alone
        if described and found[0].name not in described:
            problems.append(f"{series_csv}: study {found[0].name} (the folder given) is not listed; series types "
                            "come from the files' SeriesDescription")
    else:
        ids = list(dict.fromkeys([*folders, *described]))
    prior, more = view_priors(modules)
    problems += more
    prior = {**dict(fallback_prior or {}), **prior}
    results, predicted, reasons = [], {}, {}
    for i, study in enumerate(ids):
        if progress is not None:
            progress(i, len(ids), study)
        if study not in folders:
            problems.append(f"{input_dir}: study {study} has no folder; its 25 rows take the prior")
            result = StudyResult(study, problems=[f"no folder for study {study} in {input_dir}"])
        else:
            try:
                result = predict_study(folders[study], modules, described.get(study, {}))
            except DataError as exc:
                result = StudyResult(study, problems=[str(exc)])
        if not result.rows and not result.reasons:
            why = result.problems[0] if result.problems else "not predicted"
            result.reasons = {r: why for r in _study_row_ids(study)}
        results.append(result)
        predicted.update(result.rows)
        reasons.update(result.reasons)
        problems += result.problems
    frame, from_prior = assemble_submission(ids, predicted, prior, reasons)
    return Prediction(frame, from_prior, results, problems)


def _study_row_ids(study: str) -> list[str]:
    from spinectx.metrics.rsna import row_ids

    return list(row_ids([study]))


def write_points(path: str | Path, prediction: Prediction, **context) -> Path:
    """``predictions.json``: ``context`` (input, series, checkpoints, tta …) and per study its
    points (row_id, view, series_id, instance_number, file, frame, x, y — pixels of that file's
    frame, column/row as in train_label_coordinates.csv), pixel reads and problems. Written through
    a temporary file renamed into place."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in context.items()},
            "studies": [{"study_id": r.study_id, "pixel_reads": r.pixel_reads, "problems": r.problems,
                         "points": r.points} for r in prediction.studies]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=1))
    tmp.replace(path)
    return path
