"""Predictions in the challenge's annotation JSON format (SPEC §2), written and read back.

A submission file is an annotation file: a list of studies, each with ``studyUid``, ``version`` and
``data[0]`` = the predicted frame (``seriesUid``, ``instanceUid``) whose ``annotation[0].data.point``
list holds one point per predicted landmark::

    {"coord": [x, y], "zIndex": 5, "tag": {"identification": "L4-L5", "disc": "v3,v5"}, "prob": 0.83,
     "probs": {"v1": 0.17, "v2": 0.2, "v3": 0.6, "v4": 0.03, "v5": 0.7}}

``coord`` is (x, y) = (column, row) pixels of the frame, at full float precision. ``prob`` is an
extra field (not in the challenge format): the model's P(abnormal), which the table metric's AUC
needs. Files without it are still read: P(abnormal) is then derived from the class probabilities
when the point has them, else from the tags (1.0 for an abnormal tag, 0.0 for the normal one), and
the derivation is reported. ``probs`` (another extra field, written for multiclass models) holds the
class probabilities over the group's vocabulary: exclusive classes from the softmax (they sum to 1),
flags (``v5``) from their own sigmoid.

Tags from class probabilities (:func:`tags_from_class_prob`, multiclass models): the most probable
exclusive class, plus each flag whose probability is ≥ ``flag_threshold`` (0.5): ``"v3,v5"``.

Tags from probabilities (:func:`tags_from_prob`): a binary model only knows P(abnormal), while the
challenge wants one class per landmark. Below ``threshold`` the group's normal class is written;
otherwise the group's *abnormal tag*: by default the most frequent non-normal class of the training
data (:data:`TIANCHI_CLASS_COUNTS`, SPEC §1 — vertebra ``v2``; disc ``v2`` bulge, 300 against
285 protrusions), and for a group those counts do not cover, the first non-normal class of its
vocabulary. Both can be overridden per group (``abnormal_tags={"disc": "v3"}``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinectx.data.annotation import parse_annotations
from spinectx.data.landmarks import LandmarkSet

__all__ = [
    "SUBMISSION_VERSION",
    "TIANCHI_CLASS_COUNTS",
    "StudyPrediction",
    "abnormal_from_class_prob",
    "abnormal_tags",
    "json_ready",
    "read_submission",
    "tags_from_class_prob",
    "tags_from_prob",
    "write_json_atomic",
    "write_submission",
]

SUBMISSION_VERSION = "v0.1"

#: Released class counts of the 201 TianChi training studies (SPEC §1), per group and class.
#: Only the ranking of the non-normal classes matters here (it picks the default abnormal tag).
TIANCHI_CLASS_COUNTS: dict[str, dict[str, int]] = {
    "vertebra": {"v1": 191, "v2": 814},
    "disc": {"v1": 574, "v2": 300, "v3": 285, "v4": 47, "v5": 64},
}


@dataclass
class StudyPrediction:
    """The prediction for one study.

    Attributes:
        study_uid, series_uid, instance_uid: the study and the frame the coordinates refer to.
        keypoints: [K, 2] (x, y) pixels of that frame, in the landmark set's order; NaN = no prediction.
        prob: [K] P(abnormal); NaN where there is no prediction.
        z_index: slice index of the frame in its series (written as every point's ``zIndex``).
        tags: per landmark the predicted class codes (``()`` = none). ``None`` when the prediction
            only has probabilities: :func:`write_submission` then derives them with
            :func:`tags_from_prob`. :func:`read_submission` always fills them.
        prob_from_tags: True when (some of) ``prob`` was derived from the tags because the file
            had no ``prob`` (nor ``probs``) for those points.
        class_prob: [K, C] class probabilities in each group's vocabulary order (C =
            ``landmarks.max_classes``, padding 0; NaN where unknown) from a multiclass model, or
            None. When given and ``tags`` is None, :func:`write_submission` derives the tags with
            :func:`tags_from_class_prob`.
    """

    study_uid: str
    series_uid: str
    instance_uid: str
    keypoints: np.ndarray
    prob: np.ndarray
    z_index: int | None = None
    tags: list[tuple[str, ...]] | None = None
    prob_from_tags: bool = False
    class_prob: np.ndarray | None = None


def abnormal_tags(
    landmarks: LandmarkSet,
    overrides: Mapping[str, str] | None = None,
    class_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, str]:
    """The class written for an abnormal landmark, per group name.

    Default: the most frequent non-normal class of ``class_counts`` (default
    :data:`TIANCHI_CLASS_COUNTS`) among the group's classes; for a group the counts do not cover,
    the first non-normal class of its vocabulary (the normal class if it is the only one).

    Raises:
        ValueError: an override names an unknown group or a class outside the group's vocabulary.
    """
    counts = TIANCHI_CLASS_COUNTS if class_counts is None else class_counts
    out: dict[str, str] = {}
    for group in landmarks.groups:
        candidates = [c for c in group.classes if c != group.normal]
        group_counts = counts.get(group.name, {})
        counted = [c for c in candidates if c in group_counts]
        if counted:
            # max() keeps the first of equal counts, i.e. vocabulary order breaks ties
            out[group.name] = max(counted, key=lambda c: group_counts[c])
        else:
            out[group.name] = candidates[0] if candidates else group.normal
    for name, tag in (overrides or {}).items():
        group = next((g for g in landmarks.groups if g.name == name), None)
        if group is None:
            raise ValueError(f"abnormal tag for unknown group {name!r}; groups: {[g.name for g in landmarks.groups]}")
        if tag not in group.classes:
            raise ValueError(f"abnormal tag {tag!r} for group {name!r} is not one of its classes {list(group.classes)}")
        out[name] = str(tag)
    return out


def tags_from_prob(
    prob: Sequence[float] | np.ndarray,
    landmarks: LandmarkSet,
    threshold: float = 0.5,
    abnormal: Mapping[str, str] | None = None,
) -> list[str]:
    """Per landmark the tag string for P(abnormal): the group's normal class when
    ``prob < threshold``, else its abnormal tag (:func:`abnormal_tags`, with ``abnormal``
    overriding per group). A NaN probability gives ``""`` (no tag).
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    if prob.shape[0] != len(landmarks):
        raise ValueError(f"prob has {prob.shape[0]} values for {len(landmarks)} landmarks")
    chosen = abnormal_tags(landmarks, abnormal)
    out = []
    for k, p in enumerate(prob):
        group = landmarks.groups[landmarks.group_of[k]]
        if math.isnan(p):
            out.append("")
        else:
            out.append(group.normal if p < threshold else chosen[group.name])
    return out


def tags_from_class_prob(
    class_prob: Sequence[Sequence[float]] | np.ndarray,
    landmarks: LandmarkSet,
    flag_threshold: float = 0.5,
) -> list[str]:
    """Per landmark the tag string of a multiclass prediction: the exclusive class of highest
    probability (the first on ties), then each flag of probability ≥ ``flag_threshold``, joined in
    vocabulary order (``"v3,v5"``). ``class_prob`` [K, C] in each group's vocabulary order; a row
    with a NaN among its classes gives ``""`` (no tag).

    Raises:
        ValueError: ``class_prob`` is not [K, C ≥ the largest vocabulary].
    """
    class_prob = np.asarray(class_prob, dtype=np.float64)
    if class_prob.ndim != 2 or class_prob.shape[0] != len(landmarks) or class_prob.shape[1] < landmarks.max_classes:
        raise ValueError(f"class_prob has shape {class_prob.shape}; expected [{len(landmarks)}, {landmarks.max_classes}]")
    out = []
    for k, row in enumerate(class_prob):
        group = landmarks.groups[landmarks.group_of[k]]
        values = dict(zip(group.classes, row[: len(group.classes)]))
        if any(math.isnan(v) for v in values.values()):
            out.append("")
            continue
        best = max(group.exclusive, key=lambda c: values[c])  # max keeps the first of equal values
        out.append(",".join(c for c in group.classes if c == best or (c in group.flags and values[c] >= flag_threshold)))
    return out


def abnormal_from_class_prob(class_prob: np.ndarray, landmarks: LandmarkSet) -> np.ndarray:
    """P(abnormal) [K] = 1 − P(normal) · Π_flags (1 − P(flag)) from class_prob [K, C]
    (vocabulary order; NaN propagates), as the multiclass head computes it."""
    class_prob = np.asarray(class_prob, dtype=np.float64)
    out = np.empty(len(landmarks))
    for k in range(len(landmarks)):
        group = landmarks.groups[landmarks.group_of[k]]
        p = dict(zip(group.classes, class_prob[k]))
        out[k] = 1.0 - p[group.normal] * np.prod([1.0 - p[f] for f in group.flags])
    return out


def json_ready(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts, lists
    and tuples: strict JSON has no NaN (``json.dump`` would write the invalid token ``NaN``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json_atomic(path: str | Path, payload, indent: int | None = None) -> None:
    """Strict JSON (non-finite floats written as null, see :func:`json_ready`) via a temporary file
    in the same folder + rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_ready(payload), indent=indent, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_shapes(pred: StudyPrediction, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    kp = np.asarray(pred.keypoints, dtype=np.float64)
    prob = np.asarray(pred.prob, dtype=np.float64).reshape(-1)
    if kp.shape != (n, 2) or prob.shape != (n,):
        raise ValueError(
            f"study {pred.study_uid}: keypoints {kp.shape} / prob {prob.shape} do not match {n} landmarks ([K, 2] / [K])"
        )
    if pred.class_prob is not None and np.shape(pred.class_prob) != (n, c):
        raise ValueError(f"study {pred.study_uid}: class_prob {np.shape(pred.class_prob)} is not [{n}, {c}] (K × classes)")
    if pred.tags is not None and len(pred.tags) != n:
        raise ValueError(f"study {pred.study_uid}: {len(pred.tags)} tag entries for {n} landmarks")
    return kp, prob


def write_submission(
    path: str | Path,
    predictions: Sequence[StudyPrediction],
    landmarks: LandmarkSet,
    threshold: float = 0.5,
    abnormal: Mapping[str, str] | None = None,
) -> Path:
    """Write ``predictions`` as a challenge annotation file with an extra ``prob`` per point (and
    ``probs``, the class probabilities, for predictions that carry ``class_prob``).

    Landmarks without a predicted location (NaN) are left out. Tags come from
    ``prediction.tags`` when given, else from the class probabilities
    (:func:`tags_from_class_prob`) when the prediction has them, else from P(abnormal)
    (:func:`tags_from_prob`: ``threshold``, ``abnormal``). The file is replaced atomically.
    Returns the path.

    Raises:
        ValueError: two predictions for one study uid (a study is never written twice), shapes
            that do not match the landmark set, or a tag outside a group's vocabulary.
    """
    path = Path(path)
    n = len(landmarks)
    seen: dict[str, int] = {}
    for i, pred in enumerate(predictions):
        if pred.study_uid in seen:
            raise ValueError(
                f"study {pred.study_uid} is predicted twice (predictions {seen[pred.study_uid]} and {i}); "
                "a submission holds one entry per study"
            )
        seen[pred.study_uid] = i
    studies = []
    for pred in predictions:
        kp, prob = _check_shapes(pred, n, landmarks.max_classes)
        class_prob = None if pred.class_prob is None else np.asarray(pred.class_prob, dtype=np.float64)
        if pred.tags is not None:
            tag_values = [",".join(landmarks.parse_tags(name, t)) for name, t in zip(landmarks.names, pred.tags)]
        elif class_prob is not None:
            tag_values = tags_from_class_prob(class_prob, landmarks)
        else:
            tag_values = tags_from_prob(prob, landmarks, threshold, abnormal)
        points = []
        for k, name in enumerate(landmarks.names):
            if not np.isfinite(kp[k]).all():
                continue
            point = {"coord": [float(kp[k, 0]), float(kp[k, 1])]}
            if pred.z_index is not None:
                point["zIndex"] = int(pred.z_index)
            point["tag"] = {"identification": name, landmarks.group(name).name: tag_values[k]}
            point["prob"] = float(prob[k]) if math.isfinite(prob[k]) else None
            if class_prob is not None:
                classes = landmarks.group(name).classes
                point["probs"] = {c: float(v) if math.isfinite(v) else None for c, v in zip(classes, class_prob[k])}
            points.append(point)
        studies.append(
            {
                "studyUid": pred.study_uid,
                "version": SUBMISSION_VERSION,
                "data": [
                    {
                        "seriesUid": pred.series_uid,
                        "instanceUid": pred.instance_uid,
                        "annotation": [{"data": {"point": points}}],
                    }
                ],
            }
        )
    write_json_atomic(path, studies)
    return path


def _class_probs(value, classes: Sequence[str]) -> list[float] | str | None:
    """A point's ``probs`` field → probabilities in ``classes`` order; None when absent; a string
    saying what is wrong when it is not a mapping of every class to a number in [0, 1]."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"{value!r} is not a mapping class → probability"
    missing = [c for c in classes if c not in value]
    unknown = [c for c in value if c not in classes]
    if missing or unknown:
        return f"{dict(value)!r} must give exactly the classes {list(classes)} (missing {missing}, unknown {unknown})"
    out = []
    for c in classes:
        v = value[c]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            return f"{c}={v!r} is not a number in [0, 1]"
        out.append(float(v))
    return out


def read_submission(
    path: str | Path,
    landmarks: LandmarkSet,
    problems: list[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, StudyPrediction]:
    """Read a submission (or any annotation file) → {study uid: StudyPrediction}.

    Structure and tags are parsed by :func:`~spinectx.data.annotation.parse_annotations` (same
    rules, same errors naming the file). Per point: ``probs`` (class probabilities) when it maps
    every class of the group to a number in [0, 1] → that row of ``class_prob`` (a study none of
    whose points has them gets ``class_prob`` None). ``prob`` when it is a number in [0, 1]; else
    P(abnormal) is derived from ``probs`` when present (:func:`abnormal_from_class_prob`), else from
    the tags (1.0 abnormal, 0.0 normal; ``prob_from_tags`` is set). A point without a tag gets it
    from ``probs`` (:func:`tags_from_class_prob`), else from ``prob`` (:func:`tags_from_prob`,
    ``threshold``); a point with none of the three counts as normal. Everything unusual (identifications
    outside the landmark set, derived values, bad probabilities, and every problem of the parser,
    among them repeated studies: the first entry counts) is appended to ``problems``, each
    naming the file.

    Raises:
        AnnotationError: unreadable file, malformed JSON or a structure that is not the challenge's.
    """
    path = Path(path)
    problems = [] if problems is None else problems
    parsed = parse_annotations(path, landmarks, classes_required=False)  # a point may carry a prob instead
    problems.extend(parsed.problems)
    if parsed.skipped_identifications:
        problems.append(
            f"{path}: identifications outside the landmark set skipped: {dict(sorted(parsed.skipped_identifications.items()))}"
        )
    default_tags = abnormal_tags(landmarks)
    n = len(landmarks)
    out: dict[str, StudyPrediction] = {}
    derived: Counter = Counter()
    for study in parsed.studies:
        problems.extend(study.problems)
        kp = np.full((n, 2), np.nan, dtype=np.float64)
        prob = np.full(n, np.nan, dtype=np.float64)
        tags: list[tuple[str, ...]] = [() for _ in range(n)]
        class_prob = np.full((n, landmarks.max_classes), np.nan, dtype=np.float64)
        z_values = []
        from_tags = False
        for name, point in study.points.items():
            k = landmarks.index[name]
            group = landmarks.group(name)
            kp[k] = point.coord
            tags[k] = point.tags
            if point.z_index is not None:
                z_values.append(point.z_index)
            row = _class_probs(point.extra.get("probs"), group.classes)
            if isinstance(row, str):
                problems.append(f"{path}: study {study.study_uid} {name}: probs {row}; ignored")
            elif row is not None:
                class_prob[k, : len(row)] = row
                class_prob[k, len(row):] = 0.0
            value = point.extra.get("prob")
            p = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
            if value is not None and not (0.0 <= p <= 1.0):
                problems.append(f"{path}: study {study.study_uid} {name}: prob {value!r} is not a number in [0, 1]; ignored")
                p = math.nan
            has_probs = isinstance(row, list)
            if not point.tags and has_probs:
                tags[k] = tuple(tags_from_class_prob(class_prob, landmarks)[k].split(","))
                derived["tag from probs"] += 1
            if not math.isfinite(p) and has_probs:
                p = float(abnormal_from_class_prob(class_prob, landmarks)[k])
                derived["prob from probs"] += 1
            if math.isfinite(p):
                prob[k] = p
                if not tags[k]:
                    tags[k] = (group.normal if p < threshold else default_tags[group.name],)
                    derived["tag from prob"] += 1
            elif point.tags:
                prob[k] = landmarks.encode_tags(name, point.tags)[0]
                from_tags = True
                derived["prob from tags"] += 1
            else:
                prob[k] = 0.0
                tags[k] = (group.normal,)
                from_tags = True
                derived["neither tag nor prob (counted as normal)"] += 1
        out[study.study_uid] = StudyPrediction(
            study_uid=study.study_uid,
            series_uid=study.series_uid,
            instance_uid=study.instance_uid,
            keypoints=kp,
            prob=prob,
            z_index=Counter(z_values).most_common(1)[0][0] if z_values else None,
            tags=tags,
            prob_from_tags=from_tags,
            class_prob=class_prob if np.isfinite(class_prob).all(-1).any() else None,
        )
    for what, count in derived.items():
        if what == "prob from probs":
            problems.append(f"{path}: {count} point(s) without 'prob': P(abnormal) derived from 'probs' "
                            "(1 − P(normal) · Π (1 − P(flag)))")
        elif what == "tag from probs":
            problems.append(f"{path}: {count} point(s) without a tag: tag derived from 'probs' (most probable class, "
                            "flags ≥ 0.5)")
        elif what == "prob from tags":
            problems.append(f"{path}: {count} point(s) without 'prob': P(abnormal) derived from the tags (1 abnormal, 0 normal)")
        elif what == "tag from prob":
            problems.append(f"{path}: {count} point(s) without a tag: tag derived from 'prob' (threshold {threshold})")
        else:
            problems.append(f"{path}: {count} point(s) with {what}")
    return out

