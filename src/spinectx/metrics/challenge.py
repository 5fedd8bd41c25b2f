"""The TianChi 2020 challenge metric (SPEC §4): a confusion matrix with two extra rows, macro-F1.

Classes are ``<group>_<class>`` for every group and class of the landmark set's vocabularies, in
the set's order (TianChi: ``vertebra_v1, vertebra_v2, disc_v1 .. disc_v5``).

Conventions:

* **Rows = prediction, columns = ground truth.** Rows are the classes followed by ``wrong`` and
  ``not_hit``; columns are the classes. ``confusion[row][col]`` counts ground-truth tags.
* **One column count per ground-truth tag.** Every annotated ground-truth landmark contributes one
  count to the column of each of its tags (a ``v3,v5`` disc counts in column ``disc_v3`` and in
  column ``disc_v5``). Landmarks missing from the ground truth, or annotated without a tag, count
  nowhere; predictions for them are ignored.
* **The row** of a count: ``not_hit`` for every tag of a landmark without prediction (no location
  or no class); ``wrong`` for every tag when the prediction lies farther than ``threshold_mm``
  (distance > 6 mm; exactly 6 mm is a hit, as in the table metric); otherwise the *predicted
  classes* are matched to the tags:
  - a tag the prediction also carries counts on the diagonal;
  - each other tag counts in the row of a predicted class the truth does not carry, taken in the
    prediction's order and each used once; when none is left, in the row of the prediction's first
    class (its exclusive class, for a multiclass model's ``"v3,v5"``);
  - a predicted class matched to no tag (e.g. ``v5`` predicted on a plain ``v3`` disc) is a false
    positive: it adds 1 to ``extra[class]``, which counts in that class's precision denominator
    (no column: there is no ground-truth tag to put it under).
  So a ``v3,v5`` disc predicted ``v3`` gives one hit (row ``disc_v3``, column ``disc_v3``) and one
  confusion (row ``disc_v3``, column ``disc_v5``): it adds to v5's recall denominator and to v3's
  precision denominator; predicted ``v3,v5`` it gives two hits; a ``v2`` disc predicted ``v3,v5``
  gives row ``disc_v3`` in column ``disc_v2`` and one ``extra`` v5. With one predicted class per
  landmark (binary models: threshold + most frequent abnormal class) ``extra`` stays empty and
  every tag counts in the predicted class's row.
* precision = diagonal / (row sum over the class columns + ``extra``), recall = diagonal / column
  sum (which includes ``wrong`` and ``not_hit``), F1 = 2PR / (P + R); each is 0 where undefined
  (empty row or column). ``support`` = column sum. macro-F1 = mean of the F1 of *all* classes,
  including classes absent from the ground truth (their F1 is 0).
* **Undefined macro-F1.** When no class has support (the ground truth locates landmarks but tags
  none of them, or locates none), there is nothing to average: ``macro_f1`` is None and
  ``undefined["macro_f1"]`` says why; the per-class values stay 0 as above. Reports show ``n/a``.

Distances are Euclidean in mm: pixel differences of the annotated frame × its spacing (dy, dx),
computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinectx.data.landmarks import LandmarkSet

WRONG = "wrong"
NOT_HIT = "not_hit"

__all__ = ["NOT_HIT", "WRONG", "challenge_classes", "challenge_metric", "distances_mm"]


def challenge_classes(landmarks: LandmarkSet) -> list[str]:
    """``<group>_<class>`` for every class of every group, in the landmark set's order."""
    return [f"{g.name}_{c}" for g in landmarks.groups for c in g.classes]


def distances_mm(pred: np.ndarray, truth: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """[N, K] Euclidean distances in mm between (x, y) pixel positions [N, K, 2], with spacing
    [N, 2] = (dy, dx) mm. NaN in either position gives +inf."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    delta = (pred - truth) * spacing[:, None, ::-1]  # (dx, dy) mm
    dist = np.hypot(delta[..., 0], delta[..., 1])
    return np.where(np.isnan(dist), np.inf, dist)


def _codes(value) -> list[str]:
    """Predicted classes: ``None``/``""`` → []; ``"v3,v5"`` or ``("v3", "v5")`` → ``["v3", "v5"]``."""
    if value is None:
        return []
    codes = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(c.strip() for c in codes if c.strip()))


def _match(truth: list[str], predicted: list[str]) -> tuple[list[str], list[str]]:
    """(the predicted class each tag of ``truth`` counts under, the predicted classes matched to
    no tag) by the module docstring's rule; ``predicted`` is not empty."""
    spare = [c for c in predicted if c not in truth]
    rows = []
    for tag in truth:
        if tag in predicted:
            rows.append(tag)
        elif spare:
            rows.append(spare.pop(0))
        else:
            rows.append(predicted[0])
    return rows, spare


def challenge_metric(
    pred_keypoints,
    pred_tags: Sequence[Sequence],
    gt_keypoints,
    gt_tags: Sequence[Sequence[Sequence[str]]],
    spacing,
    landmarks: LandmarkSet,
    threshold_mm: float = 6.0,
) -> dict:
    """The challenge's confusion matrix and macro-F1 (conventions in the module docstring).

    Args:
        pred_keypoints: [N, K, 2] predicted (x, y) pixels; NaN = no prediction.
        pred_tags: N lists of K predicted classes: a code (``"v2"``), several (``"v3,v5"`` or
            ``("v3", "v5")``), or ``None``/``""`` = no class.
        gt_keypoints: [N, K, 2] ground-truth (x, y) pixels; NaN = not annotated.
        gt_tags: N lists of K tuples of ground-truth class codes (``("v3", "v5")``).
        spacing: [N, 2] (dy, dx) mm of each study's annotated frame.
        landmarks: the landmark set (order of K, class vocabularies).
        threshold_mm: farther than this is ``wrong``.

    Returns:
        ``{"macro_f1": float | None, "per_class": {class: {precision, recall, f1, support}},
        "confusion": {row: {col: count}}, "extra": {class: count}, "classes": [...], "rows": [...],
        "undefined": {...}}``;
        ``macro_f1`` is None when no class has support, with the reason in
        ``undefined["macro_f1"]`` (``undefined`` is empty otherwise).

    Raises:
        ValueError: shapes that do not match, or a class code outside its group's vocabulary.
    """
    pred_kp = np.asarray(pred_keypoints, dtype=np.float64)
    gt_kp = np.asarray(gt_keypoints, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    n, k = len(gt_tags), len(landmarks)
    if pred_kp.shape != (n, k, 2) or gt_kp.shape != (n, k, 2) or spacing.shape != (n, 2):
        raise ValueError(
            f"expected pred/gt keypoints [{n}, {k}, 2] and spacing [{n}, 2]; got {pred_kp.shape}, {gt_kp.shape}, {spacing.shape}"
        )
    if len(pred_tags) != n or any(len(t) != k for t in pred_tags) or any(len(t) != k for t in gt_tags):
        raise ValueError(f"pred_tags and gt_tags need {n} lists of {k} entries")

    classes = challenge_classes(landmarks)
    rows = classes + [WRONG, NOT_HIT]
    col_of = {c: i for i, c in enumerate(classes)}
    wrong_row, not_hit_row = len(classes), len(classes) + 1
    group_names = [landmarks.groups[g].name for g in landmarks.group_of]

    dist = distances_mm(pred_kp, gt_kp, spacing)
    hit = dist <= threshold_mm
    gt_present = np.isfinite(gt_kp).all(-1)
    pred_present = np.isfinite(pred_kp).all(-1)

    def code_index(code: str, j: int, what: str) -> int:
        key = f"{group_names[j]}_{code}"
        if key not in col_of:
            group = landmarks.groups[landmarks.group_of[j]]
            raise ValueError(f"{what} class {code!r} of {landmarks.names[j]} is not one of {list(group.classes)}")
        return col_of[key]

    confusion = np.zeros((len(rows), len(classes)), dtype=np.int64)
    extra = np.zeros(len(classes), dtype=np.int64)
    for i in range(n):
        for j in range(k):
            truth = [c for c in gt_tags[i][j] if c] if gt_present[i, j] else []
            if not truth:
                continue
            columns = [code_index(c, j, "ground-truth") for c in truth]
            predicted = _codes(pred_tags[i][j]) if pred_present[i, j] else []
            for code in predicted:
                code_index(code, j, "predicted")
            if not predicted:
                row_of = [not_hit_row] * len(truth)
            elif not hit[i, j]:
                row_of = [wrong_row] * len(truth)
            else:
                matched, spare = _match(truth, predicted)
                row_of = [code_index(c, j, "predicted") for c in matched]
                for code in spare:
                    extra[code_index(code, j, "predicted")] += 1
            for row, col in zip(row_of, columns):
                confusion[row, col] += 1

    diag = np.diagonal(confusion[: len(classes)]).astype(np.float64)
    row_sum = confusion[: len(classes)].sum(1).astype(np.float64) + extra
    col_sum = confusion.sum(0).astype(np.float64)
    precision = np.divide(diag, row_sum, out=np.zeros_like(diag), where=row_sum > 0)
    recall = np.divide(diag, col_sum, out=np.zeros_like(diag), where=col_sum > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(diag), where=denom > 0)
    per_class = {
        c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(col_sum[i])}
        for i, c in enumerate(classes)
    }
    undefined = {}
    if not col_sum.any():
        located = int(gt_present.sum())
        undefined["macro_f1"] = (
            f"no ground-truth class to score: {located} annotated landmark(s) in {n} stud(ies), none with a class tag"
            if located else f"no annotated ground-truth landmark in {n} stud(ies)"
        )
    return {
        "macro_f1": None if undefined else float(f1.mean()),
        "per_class": per_class,
        "confusion": {r: {c: int(confusion[ri, ci]) for ci, c in enumerate(classes)} for ri, r in enumerate(rows)},
        "extra": {c: int(extra[ci]) for ci, c in enumerate(classes)},
        "classes": classes,
        "rows": rows,
        "undefined": undefined,
    }
