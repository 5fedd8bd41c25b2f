"""spinectx-score pred=FILE gt=FILE out=FILE.json [format=auto|tianchi|rsna2024]: score a submission.

Two formats, told apart by the prediction file (``format=auto``, the default) or named with
``format=``: a JSON submission is TianChi's (below); a CSV with a ``row_id`` column is an RSNA 2024
submission, scored against the competition's ``train.csv`` (or any file of its layout) with the
competition metric (:mod:`spinectx.metrics.rsna`, SPEC §6; see :func:`score_rsna`; ``images=``,
``landmarks=`` and ``threshold_mm=`` are not used there).

TianChi: ``spinectx-score pred=FILE.json gt=FILE.json images=DIR out=FILE.json [landmarks=tianchi]``.
``pred`` is a submission in the annotation format (see :mod:`spinectx.data.submission`; ``prob``
per point optional), ``gt`` an annotation file, ``images`` the folder holding the ground truth's
study folders (any depth below it). The pixel spacing of each study is read from the header of its
annotated frame (``gt``'s ``instanceUid``); ground-truth landmarks are read with the same rules as
training (:func:`spinectx.data.records.build_index`).

Writes ``out``: the table metric under the keys of training's ``metrics.json`` (``L-<Group>``,
``C-<Group>``, ``Score``; fractions in [0, 1]; AUC from ``prob``, or from the tags where the file
has no ``prob``; null where undefined, with the reason in ``undefined``: an AUC over located
landmarks of one class, a group without annotated landmark — see :mod:`spinectx.metrics.table`),
``challenge`` (macro-F1 — null when no ground-truth landmark has a class, the reason in
``undefined["macro-F1"]`` —, per-class precision/recall/F1/support, confusion matrix
rows = prediction × columns = ground truth, see :mod:`spinectx.metrics.challenge`), ``studies``
(ground-truth studies scored), ``missing_predictions`` (how many of them had no prediction — scored
as all landmarks missed), ``gt_studies`` and ``predicted_studies`` (entries read from each file),
``problems`` (among them predictions on another instance, or on another frame of a multi-frame
file, than the annotated one). Prints a short table (``n/a`` for an undefined metric).

A study listed twice in either file counts once, by its first entry (the rule of
:func:`spinectx.data.annotation.parse_annotations`). Nothing to score — no annotated landmark in
the scorable ground truth, or no prediction for any scored study — is an error (exit status 2,
with the counts), never a table of zeros.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import INPUT_ERRORS, check_output_file, fail_cleanly

log = logging.getLogger("spinectx.score")


def load_landmarks(spec):
    """A LandmarkSet from a name of ``conf/data/landmarks/<name>.yaml``, a path to such a YAML
    file, or the mapping itself."""
    from spinectx.data.errors import DataError
    from spinectx.data.landmarks import LandmarkSet

    if isinstance(spec, Mapping):
        return LandmarkSet.from_config(spec)
    name = str(spec)
    path = Path(name) if name.endswith((".yaml", ".yml")) else Path(CONF_DIR) / "data" / "landmarks" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(CONF_DIR) / "data" / "landmarks").glob("*.yaml"))
        raise DataError(path, f"landmark set {name!r} not found (known: {known}, or give a .yaml path)")
    return LandmarkSet.from_config(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def index_images(images: str | Path, problems: list[str]):
    """Index every folder below ``images`` (itself included) that holds files, headers only.

    Returns (by study uid, by instance uid) → StudyIndex, under training's duplicates rule
    (:func:`~spinectx.data.study.unique_studies`). Folders with sub-folders and no DICOM file (a
    dataset root with its JSON files) are passed over silently; other unreadable folders and
    files are reported in ``problems``.
    """
    from spinectx.data.errors import DataError
    from spinectx.data.records import study_lookups
    from spinectx.data.study import index_folder

    images = Path(images)
    if not images.is_dir():
        raise DataError(images, "image folder not found")
    indexes = []
    for folder, subdirs, files in os.walk(images):
        subdirs.sort()  # deterministic order: ties of the duplicates rule go to the first folder
        if not any(not f.startswith(".") for f in files):
            continue
        try:
            found = index_folder(folder)
        except DataError as exc:
            if not subdirs:
                problems.append(str(exc))
            continue
        for idx in found:
            problems.extend(idx.problems)
        indexes.extend(found)
    return study_lookups(indexes, problems)


def other_frame(prediction, annotated_frame: int | None, pred: Path) -> str | None:
    """A problem line when ``prediction`` (on the annotated instance) names another frame of a
    multi-frame file than the annotated one, ``annotated_frame`` (0-based; None for a
    single-frame file: nothing to check); the submission's ``zIndex`` is the frame number there.
    None when the frames agree."""
    if annotated_frame is None or prediction.z_index == annotated_frame:
        return None
    if prediction.z_index is None:
        return (f"{pred}: study {prediction.study_uid} predicted on the multi-frame instance {prediction.instance_uid} "
                f"without zIndex (the frame number), annotated on frame {annotated_frame}; coordinates taken as pixels "
                "of the annotated frame")
    return (f"{pred}: study {prediction.study_uid} predicted on frame {prediction.z_index} of the multi-frame instance "
            f"{prediction.instance_uid}, annotated on frame {annotated_frame}; coordinates taken as pixels of the "
            "annotated frame")


def score_submission(pred: str | Path, gt: str | Path, images: str | Path, landmarks, threshold_mm: float = 6.0) -> dict:
    """The score report (see the module docstring) as a JSON-ready dict.

    Raises:
        DataError: a missing or malformed file or folder (the message names it), or nothing to
            score: no annotated landmark among the scorable ground-truth studies, or no
            prediction for any of them (the message gives the counts of ground-truth, scorable,
            predicted and common studies).
    """
    import numpy as np
    import torch

    from spinectx.data.annotation import parse_annotations
    from spinectx.data.errors import DataError
    from spinectx.data.records import _record_for  # the training loader's rules for one study
    from spinectx.data.submission import read_submission
    from spinectx.metrics.challenge import challenge_metric
    from spinectx.metrics.table import TableMetric

    pred, gt = Path(pred), Path(gt)
    for path, what in ((pred, "prediction"), (gt, "ground-truth")):
        if not path.is_file():
            raise DataError(path, f"{what} file not found")
    problems: list[str] = []
    truth = parse_annotations(gt, landmarks)
    problems.extend(truth.problems)
    predictions = read_submission(pred, landmarks, problems)
    by_study, by_instance = index_images(images, problems)
    # headers only: skip the pixel check of the annotated frame where the loader offers one
    record_kwargs = {"check_pixels": False} if "check_pixels" in inspect.signature(_record_for).parameters else {}

    n_k = len(landmarks)
    rows = {"pred_kp": [], "prob": [], "pred_tags": [], "gt_kp": [], "gt_tags": [], "labels": [], "spacing": []}
    gt_uids = {ann.study_uid for ann in truth.studies}  # one entry per study: the parser keeps the first
    missing = 0
    for ann in truth.studies:
        idx = by_instance.get(ann.instance_uid) or by_study.get(ann.study_uid)
        try:
            if idx is None:
                raise DataError(images, f"study {ann.study_uid}: no study folder holds it or its annotated instance {ann.instance_uid}")
            record = _record_for(Path(images).name, ann, idx, landmarks, **record_kwargs)
        except DataError as exc:
            problems.append(f"{exc}; study {ann.study_uid} not scored")
            continue
        problems.extend(record.problems)
        p = predictions.get(ann.study_uid)
        if p is None:
            missing += 1
            problems.append(f"{pred}: no prediction for study {ann.study_uid} of {gt}; all its landmarks count as missed")
            pred_kp, prob, pred_tags = np.full((n_k, 2), np.nan), np.full(n_k, np.nan), [None] * n_k
        else:
            if p.instance_uid != ann.instance_uid:
                problems.append(
                    f"{pred}: study {ann.study_uid} predicted on instance {p.instance_uid}, annotated on {ann.instance_uid}; "
                    "coordinates taken as pixels of the annotated frame"
                )
            else:
                frame_problem = other_frame(p, record.frame_ref.frame, pred)
                if frame_problem:
                    problems.append(frame_problem)
            pred_kp, prob = p.keypoints, p.prob
            pred_tags = [t if t else None for t in p.tags]  # all predicted classes ("v3,v5"): the metric matches them
        labels = [landmarks.encode_tags(name, record.tags[k])[0] for k, name in enumerate(landmarks.names)]
        rows["pred_kp"].append(pred_kp)
        rows["prob"].append(prob)
        rows["pred_tags"].append(pred_tags)
        rows["gt_kp"].append(record.keypoints)
        rows["gt_tags"].append(list(record.tags))
        rows["labels"].append(labels)
        rows["spacing"].append(record.pixel_spacing)
    for uid in predictions:
        if uid not in gt_uids:
            problems.append(f"{pred}: study {uid} is not in {gt}; ignored")

    n = len(rows["gt_kp"])
    counts = (f"{len(truth.studies)} ground-truth studies in {gt}, {n} of them scorable, {len(predictions)} predicted studies "
              f"in {pred}, {len(gt_uids & set(predictions))} in common")
    hint = f"; first problem: {problems[0]}" if problems else ""
    if not any(np.isfinite(kp).all(-1).any() for kp in rows["gt_kp"]):
        raise DataError(gt, f"nothing to score: no annotated ground-truth landmark ({counts}){hint}")
    if missing == n:
        raise DataError(pred, f"nothing to score: no prediction for any scored ground-truth study ({counts})")
    pred_kp = np.asarray(rows["pred_kp"], dtype=np.float64).reshape(n, n_k, 2)
    gt_kp = np.asarray(rows["gt_kp"], dtype=np.float64).reshape(n, n_k, 2)
    prob = np.asarray(rows["prob"], dtype=np.float64).reshape(n, n_k)
    labels = np.asarray(rows["labels"], dtype=np.float64).reshape(n, n_k)
    spacing = np.asarray(rows["spacing"], dtype=np.float64).reshape(n, 2)

    metric = TableMetric(landmarks.group_of, [g.title for g in landmarks.groups], threshold_mm=threshold_mm)
    metric.update(
        torch.from_numpy(pred_kp),
        torch.from_numpy(prob),
        torch.from_numpy(gt_kp),
        torch.from_numpy(np.isfinite(gt_kp).all(-1)),
        torch.from_numpy(labels),
        torch.from_numpy(spacing),
    )
    table = {key: float(value) for key, value in metric.compute().items()}
    table = {key: value if math.isfinite(value) else None for key, value in table.items()}
    challenge = challenge_metric(pred_kp, rows["pred_tags"], gt_kp, rows["gt_tags"], spacing, landmarks, threshold_mm)
    undefined = dict(metric.undefined)
    if challenge["macro_f1"] is None:
        undefined["macro-F1"] = challenge["undefined"]["macro_f1"]
    return {
        **table,
        "undefined": undefined,
        "challenge": {k: challenge[k] for k in ("macro_f1", "per_class", "confusion", "extra")},
        "studies": n,
        "missing_predictions": missing,
        "gt_studies": len(truth.studies),
        "predicted_studies": len(predictions),
        "prob_from_tags": any(p.prob_from_tags for p in predictions.values()),
        "threshold_mm": float(threshold_mm),
        "pred": str(pred),
        "gt": str(gt),
        "problems": problems,
    }


def print_report(report: dict, landmarks) -> None:
    from rich.console import Console
    from rich.table import Table

    from spinectx.lit.callbacks import percent

    console = Console()
    table = Table(title=f"{report['studies']} studies scored ({report['missing_predictions']} without prediction)")
    for key in [f"L-{g.title}" for g in landmarks.groups] + [f"C-{g.title}" for g in landmarks.groups] + ["Score", "macro-F1"]:
        table.add_column(key, justify="right")
    values = [report[f"L-{g.title}"] for g in landmarks.groups] + [report[f"C-{g.title}"] for g in landmarks.groups]
    values += [report["Score"], report["challenge"]["macro_f1"]]  # None (undefined) prints as n/a
    table.add_row(*(percent(v, digits=2) for v in values))
    console.print(table)
    for key, why in report.get("undefined", {}).items():
        console.print(f"  {key} n/a: {why}", markup=False, soft_wrap=True)
    if report["challenge"]["macro_f1"] is not None:  # else no class has support: a table of zeros says nothing
        per_class = Table(title="challenge metric per class (%)")
        for col in ("class", "precision", "recall", "F1", "support"):
            per_class.add_column(col, justify="left" if col == "class" else "right")
        for name, c in report["challenge"]["per_class"].items():
            per_class.add_row(name, f"{100 * c['precision']:.1f}", f"{100 * c['recall']:.1f}", f"{100 * c['f1']:.1f}",
                              str(c["support"]))
        console.print(per_class)
    if report["problems"]:
        console.print(f"{len(report['problems'])} problem(s), first ones:", markup=False)
        for p in report["problems"][:10]:
            console.print(f"  problem: {p}", markup=False, soft_wrap=True)


FORMATS = ("auto", "tianchi", "rsna2024")


def detect_format(pred: str | Path) -> str:
    """``tianchi`` for a JSON submission, ``rsna2024`` for a CSV whose header has ``row_id``.

    Raises:
        DataError: the file is missing, or is neither (the message says how to name the format).
    """
    from spinectx.data.errors import DataError

    pred = Path(pred)
    if not pred.is_file():
        raise DataError(pred, "prediction file not found")
    with open(pred, "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if head.startswith(("[", "{")):
        return "tianchi"
    header = [c.strip().strip('"') for c in head.splitlines()[0].split(",")] if head else []
    if "row_id" in header:
        return "rsna2024"
    raise DataError(pred, "cannot tell the submission format: neither JSON (TianChi) nor a CSV whose header has row_id "
                          "(RSNA 2024); give format=tianchi or format=rsna2024")


def score_rsna(pred: str | Path, gt: str | Path) -> dict:
    """The RSNA 2024 score report of the submission CSV ``pred`` against ``gt`` (``train.csv``'s
    layout: study_id + 25 label columns) as a JSON-ready dict: the keys of
    :func:`spinectx.metrics.rsna.rsna_score` (``score``, the four terms, ``per_condition``,
    ``per_level``, row counts, ``undefined``; NaN written as null) plus ``format``
    (``rsna2024``), ``pred``, ``gt``, ``submission_rows``, ``gt_studies``, ``problems`` (among
    them submission rows for studies not in ``gt``: ignored, listed and counted).

    Raises:
        DataError: either file missing or malformed, or refused (missing columns, repeated or
            unknown row ids, values not numbers, non-finite or negative, rows summing to 0,
            unknown labels), a row that ``gt`` scores missing from ``pred``, or nothing to score;
            the message names the file and the rows.
    """
    from spinectx.metrics.rsna import read_submission_csv, read_train_csv, rsna_score, solution_from_train

    problems: list[str] = []
    submission = read_submission_csv(pred, problems)
    train = read_train_csv(gt, problems)
    report = rsna_score(submission, solution_from_train(train), problems, submission_name=str(pred), solution_name=str(gt))
    return {
        "format": "rsna2024",
        **report,
        "submission_rows": len(submission),
        "gt_studies": len(train),
        "pred": str(pred),
        "gt": str(gt),
        "problems": problems,
    }


def print_rsna_report(report: dict) -> None:
    """The four terms and the score, then the per-condition and per-level breakdowns (weighted
    log loss, lower is better; ``n/a`` where undefined)."""
    from rich.console import Console
    from rich.table import Table

    def shown(value) -> str:
        return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"

    console = Console()
    table = Table(title=f"RSNA 2024 weighted log loss (lower is better): {report['studies_scored']} studies, "
                        f"{report['rows_scored']} rows scored")
    keys = ("spinal", "foraminal", "subarticular", "any_severe_spinal", "score")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row(*(shown(report[k]) for k in keys))
    counts = report["rows_per_group"]
    table.add_row(*(f"{counts[k]} {'studies' if k == 'any_severe_spinal' else 'rows'}" for k in keys[:-1]), "")
    console.print(table)
    for title, values, counts in (("condition", report["per_condition"], report["rows_per_condition"]),
                                  ("level", report["per_level"], report["rows_per_level"])):
        part = Table(title=f"per {title}")
        for col in (title, "log loss", "rows"):
            part.add_column(col, justify="left" if col == title else "right")
        for name, value in values.items():
            part.add_row(name, shown(value), str(counts[name]))
        console.print(part)
    for key, why in report.get("undefined", {}).items():
        console.print(f"  {key} n/a: {why}", markup=False, soft_wrap=True)
    if report["problems"]:
        console.print(f"{len(report['problems'])} problem(s), first ones:", markup=False)
        for p in report["problems"][:10]:
            console.print(f"  problem: {p}", markup=False, soft_wrap=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="score")
@fail_cleanly("spinectx-score", INPUT_ERRORS + (ValueError,))  # a bad threshold or value is bad input here
def main(cfg: DictConfig) -> None:
    from spinectx.data.errors import ConfigError, config_float
    from spinectx.data.submission import write_json_atomic

    pred, gt = cfg.pred, cfg.gt  # mandatory: named when not given
    fmt = str(cfg.get("format", "auto") or "auto")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    threshold = config_float("threshold_mm", cfg.threshold_mm, low=0.0, what="a positive distance in mm")
    out = check_output_file(cfg.out, "out")
    if fmt == "auto":
        fmt = detect_format(pred)
    if fmt == "rsna2024":
        report = score_rsna(pred, gt)
        write_json_atomic(Path(out), report, indent=2)
        print_rsna_report(report)
        log.info("wrote %s (%d rows of %d studies, %d problems)", out, report["rows_scored"], report["studies_scored"],
                 len(report["problems"]))
        return

    if cfg.get("images") is None:
        raise ConfigError("images: missing; give images=... (the folder holding the ground truth's study folders) "
                          "on the command line for a TianChi submission")
    landmarks_spec = cfg.landmarks
    if not isinstance(landmarks_spec, str):
        landmarks_spec = OmegaConf.to_container(landmarks_spec, resolve=True)
    landmarks = load_landmarks(landmarks_spec)
    report = {"format": "tianchi", **score_submission(pred, gt, cfg.images, landmarks, threshold)}
    write_json_atomic(Path(out), report, indent=2)
    print_report(report, landmarks)
    log.info("wrote %s (%d studies, %d problems)", out, report["studies"], len(report["problems"]))


if __name__ == "__main__":
    main()
