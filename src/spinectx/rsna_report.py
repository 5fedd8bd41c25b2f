"""The RSNA 2024 cross-validated report (``make reproduce-rsna`` → ``spinectx-report-rsna``).

A sweep of ``experiment=rsna`` holds one job per (view, fold). For every fold with checkpoints, the
fold's held-out studies (``split.json`` of its jobs; the three views share the fold's studies, see
:class:`~spinectx.data.SpineDataModule`) are predicted study by study with that fold's three
checkpoints (:func:`~spinectx.rsna_inference.predict_studies`), exactly as ``spinectx-predict`` does on
``test_images/``. The folds' predictions together form ``submission.csv``, scored against the
held-out studies' rows of ``train.csv`` with the competition metric (SPEC §6,
:func:`~spinectx.cli.score.score_rsna` — the code of ``spinectx-score``). Written into ``out``:

- ``submission.csv``, ``submission.problems.json``, ``predictions.json`` (as ``spinectx-predict``);
- ``held_out_train.csv``: the ground truth scored (train.csv rows of the predicted studies);
- ``score.json``: the model's score and its parts, the class-prior baseline scored the same way
  (every row at its condition and level's frequency over the fold's training studies in train.csv,
  Laplace-smoothed; ``prior_submission.csv``), the localisation hit rates
  (validation on the labelled slice, from the jobs' ``metrics.json``; study level in 3-D from
  ``predictions.json`` against ``train_label_coordinates.csv``), per-level and confusion tables;
- ``per_level.csv``: weighted log loss per condition and level, model beside prior;
- ``confusion.csv``: per condition group, rows = truth × columns = predicted class (argmax);
- ``calibration.png``: per class, mean predicted probability vs observed frequency in bins;
- ``points.png`` and ``point_errors.csv``: the points behind the rows of 4 studies on their slices
  with the true ones, and every row's distance to its true point in patient space (mm);
- ``summary.md``: all of it as Markdown, with the commands that reproduce each number.

A job without a checkpoint or ``split.json`` (failed, unfinished) is listed, never silently dropped;
a fold missing a view gives that view's rows the baseline's training frequencies (listed in the
problems sidecar).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from spinectx.data.errors import ConfigError, DataError
from spinectx.data.rsna import VIEWS
from spinectx.metrics.rsna import CLASSES, EPS, GROUPS, TERMS

log = logging.getLogger(__name__)



@dataclass
class ViewJob:
    """One (view, fold) job of a sweep: its folder, best checkpoint, held-out studies, data root
    and validation metrics (``metrics.json``'s ``evaluation``); ``problem`` says why it is unusable."""

    path: Path
    view: str | None = None
    fold: int | None = None
    checkpoint: Path | None = None
    held_out: list[str] = field(default_factory=list)
    data_root: Path | None = None
    evaluation: dict = field(default_factory=dict)
    problem: str | None = None


def read_view_job(job_dir: Path) -> ViewJob:
    """A :class:`ViewJob` from a job folder (``split.json``, ``metrics.json``, ``checkpoints/``)."""
    job = ViewJob(job_dir)
    split_file, metrics_file, error_file = job_dir / "split.json", job_dir / "metrics.json", job_dir / "error.txt"
    config = job_dir / ".hydra" / "config.yaml"
    if config.is_file() and not (OmegaConf.load(config).get("data") or {}).get("view"):
        job.problem = "not an RSNA 2024 job (its data has no view: data=tianchi or synthetic TianChi)"
        return job
    failed = error_file.is_file() and not (split_file.is_file() and split_file.stat().st_mtime > error_file.stat().st_mtime)
    if failed:  # (a job that failed and then finished on a rerun counts as finished)
        job.problem = f"failed: {error_line(error_file.read_text())} (traceback in {error_file})"
        return job
    if not split_file.is_file():
        job.problem = "unfinished (no split.json: training did not end)"
        return job
    split = json.loads(split_file.read_text())
    job.view, job.fold = split.get("view"), int(split.get("fold", 0))
    job.held_out, job.data_root = [str(s) for s in split.get("held_out", [])], Path(split["data_root"])
    if job.view not in VIEWS:
        job.problem = f"not an RSNA view job (view {job.view!r})"
        return job
    if metrics_file.is_file():
        payload = json.loads(metrics_file.read_text())
        job.evaluation = dict(payload.get("evaluation") or {})
    best = job.evaluation.get("checkpoint")
    # the job folder's own copy first (by file name): a copied or moved sweep must not read the
    # original's files, nor fall back to last.ckpt while its best checkpoint is there
    candidates = [job_dir / "checkpoints" / Path(best).name] if best else []
    if best and Path(best).resolve().is_relative_to(job_dir.resolve()):
        candidates.append(Path(best))  # saved elsewhere inside the job folder
    candidates.append(job_dir / "checkpoints" / "last.ckpt")
    job.checkpoint = next((c for c in candidates if c.is_file()), None)
    if job.checkpoint is None:
        job.problem = "no checkpoint"
    elif best and job.checkpoint.name != Path(best).name:
        log.warning("%s: its best checkpoint %s is gone; using %s", job_dir, Path(best).name, job.checkpoint)
    return job


def error_line(traceback_text: str) -> str:
    """The line of a traceback that names the exception (``TypeError: …``; of chained exceptions the
    first, the root cause), else its last line."""
    lines = [ln.strip() for ln in traceback_text.strip().splitlines() if ln.strip()]
    named = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit): ", ln)]
    return (named[0] if named else lines[-1] if lines else "see error.txt")[:300]


def find_view_jobs(sweep: str | Path) -> list[ViewJob]:
    """Every job folder below ``sweep`` (those with ``.hydra/config.yaml``), read.

    Raises:
        DataError: ``sweep`` is not a folder, or holds no job.
    """
    root = Path(sweep)
    if not root.is_dir():
        raise DataError(root, "sweep folder not found (run make reproduce-rsna, or give sweep=logs/rsna/sweep)")
    jobs = [read_view_job(c.parent.parent) for c in sorted(root.rglob(".hydra/config.yaml"))]
    if not jobs:
        raise DataError(root, "no job folder (.hydra/config.yaml) below it")
    return jobs


def folds_of(jobs: list[ViewJob]) -> dict[int, dict[str, ViewJob]]:
    """Usable jobs by fold and view (a later job of the same fold and view replaces an earlier one).

    Raises:
        DataError: the folds' held-out studies overlap, or the jobs of a fold disagree on its
            held-out studies or data root (the views would not be one cross-validation).
    """
    out: dict[int, dict[str, ViewJob]] = {}
    for job in jobs:
        if job.problem is None:
            out.setdefault(job.fold, {})[job.view] = job
    for fold, views in out.items():
        first = next(iter(views.values()))
        for job in views.values():
            if job.data_root != first.data_root:
                raise DataError(job.path, f"fold {fold}: data root {job.data_root} differs from {first.data_root} "
                                          f"({first.path}); one report covers one dataset")
    seen: dict[str, int] = {}
    for fold, views in sorted(out.items()):
        for study in set().union(*(set(j.held_out) for j in views.values())):
            if seen.setdefault(study, fold) != fold:
                raise DataError(views[next(iter(views))].path,
                                f"study {study} is held out by folds {seen[study]} and {fold}: these jobs do not come "
                                "from one k-fold split (different num_folds or seed?)")
    return out


# ------------------------------------------------------------------ tables
def row_losses(submission: pd.DataFrame, solution: pd.DataFrame) -> pd.DataFrame:
    """Per scored row (truth not blank): condition, level, group, truth, weight, the submitted
    probabilities (clipped to [ε, 1−ε] and renormalised, SPEC §6) and the row's −log p(truth)."""
    merged = solution[solution["truth"].notna()].merge(submission, on="row_id", how="inner")
    probs = np.clip(merged[list(CLASSES)].to_numpy(np.float64), EPS, 1 - EPS)
    probs /= probs.sum(axis=1, keepdims=True)
    merged[list(CLASSES)] = probs
    truth = merged["truth"].map(CLASSES.index).to_numpy()
    merged["nll"] = -np.log(probs[np.arange(len(merged)), truth])
    return merged


def per_level_table(model: pd.DataFrame, prior: pd.DataFrame) -> pd.DataFrame:
    """Weighted log loss per condition × level (SPEC §6's weights, the any-severe term aside), model
    (``row_losses`` of the model) beside the prior, with the scored row count."""
    def weighted(frame):
        return frame.groupby(["condition", "level"]).apply(
            lambda g: float((g["weight"] * g["nll"]).sum() / g["weight"].sum()), include_groups=False)

    table = pd.DataFrame({"rows": model.groupby(["condition", "level"]).size(),
                          "model": weighted(model), "prior": weighted(prior)}).reset_index()
    table["ratio"] = table["model"] / table["prior"]
    return table


def confusion_table(model: pd.DataFrame) -> pd.DataFrame:
    """Per condition group, counts of truth (rows) × predicted class (argmax of the probabilities)."""
    from sklearn.metrics import confusion_matrix

    rows = []
    for group in GROUPS:
        part = model[model["group"] == group]
        predicted = np.asarray(CLASSES)[part[list(CLASSES)].to_numpy().argmax(axis=1)] if len(part) else []
        matrix = confusion_matrix(part["truth"], predicted, labels=list(CLASSES)) if len(part) else np.zeros((3, 3), int)
        for truth, counts in zip(CLASSES, matrix):
            rows.append({"group": group, "truth": truth, **{f"predicted_{c}": int(n) for c, n in zip(CLASSES, counts)}})
    return pd.DataFrame(rows)


def calibration_points(model: pd.DataFrame, bins: int = 5) -> dict[str, dict[str, list[float]]]:
    """Per class (one against the rest, all scored rows): mean predicted probability and observed
    frequency in ``bins`` quantile bins (scikit-learn's ``calibration_curve``)."""
    from sklearn.calibration import calibration_curve

    out = {}
    for c in CLASSES:
        y = (model["truth"] == c).to_numpy()
        if y.all() or not y.any():
            continue
        observed, predicted = calibration_curve(y, model[c].to_numpy(), n_bins=bins, strategy="quantile")
        out[c] = {"predicted": predicted.tolist(), "observed": observed.tolist(), "rows": int(len(y)),
                  "frequency": float(y.mean())}
    return out


def plot_calibration(points: dict, path: Path) -> Path:
    """``calibration.png``: predicted vs observed frequency per class, the diagonal for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="perfect calibration")
    for c, p in points.items():
        ax.plot(p["predicted"], p["observed"], marker="o", label=f"{c} (observed {100 * p['frequency']:.0f} %)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("RSNA held-out rows: calibration")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ the report
def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def build_rsna_report(sweep: str | Path, out: str | Path, device: str = "cpu", tta: bool | None = None,
                      data_root: str | Path | None = None) -> dict:
    """Predict every fold's held-out studies, score and write ``out`` (module docstring) → the
    ``score.json`` payload. ``data_root``: only the jobs trained on that folder (needed when the
    sweep holds jobs of several datasets).

    Raises:
        DataError: no usable job in ``sweep`` (the jobs' problems are named), folds that are not one
            cross-validation (:func:`folds_of`), or the data root's CSVs are missing.
    """
    from spinectx.cli.score import score_rsna
    from spinectx.data.rsna_submission import write_submission
    from spinectx.inference import load_module
    from spinectx.metrics.rsna import (parse_row_id, prior_submission, read_submission_csv, read_train_csv,
                                       solution_from_train)
    from spinectx.rsna_inference import Prediction, predict_studies, write_points

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is a file; give the folder the report goes to")
    if data_root is not None and not Path(data_root).is_dir():
        raise ConfigError(f"data_root={data_root}: no such folder (the Kaggle-layout folder the sweep trained on)")
    jobs = find_view_jobs(sweep)
    roots = sorted({str(j.data_root) for j in jobs if j.problem is None})
    if data_root is not None:
        wanted = Path(data_root).resolve()
        for j in jobs:
            if j.problem is None and j.data_root != wanted:
                j.problem = f"another dataset ({j.data_root})"
    elif len(roots) > 1:
        raise DataError(sweep, f"jobs of {len(roots)} datasets ({', '.join(roots)}); choose one with data_root=")
    folds = folds_of(jobs)
    skipped = [f"{j.path}: {j.problem}" for j in jobs if j.problem]
    for s in skipped:
        log.warning("job left out: %s", s)
    if not folds:
        raise DataError(sweep, "no finished RSNA view job: " + "; ".join(skipped[:3]))
    root = next(iter(next(iter(folds.values())).values())).data_root
    train_csv, series_csv = root / "train.csv", root / "train_series_descriptions.csv"

    train = read_train_csv(train_csv)
    frames, from_prior, studies, problems, priors, checkpoints = [], [], [], [], [], {}
    for fold, views in sorted(folds.items()):
        held_out = sorted(set().union(*(set(j.held_out) for j in views.values())))
        # the class-prior baseline: each condition and level at its frequency over the fold's training
        # studies (every study of train.csv not held out), Laplace-smoothed as the checkpoints' priors
        prior_frame = prior_submission(train[~train["study_id"].astype(str).isin(held_out)], held_out, pseudo_count=1.0)
        priors.append(prior_frame)
        fold_prior = {f"{c}_{lv}": list(p) for r, *p in prior_frame.itertuples(index=False)
                      for _, c, lv in [parse_row_id(r)]}
        modules = {v: load_module(j.checkpoint, device=device, tta=tta) for v, j in views.items()}
        checkpoints[fold] = {v: str(j.checkpoint) for v, j in views.items()}
        log.info("fold %d: %d held-out studies, views %s", fold, len(held_out), sorted(views))

        def progress(i, n, study, fold=fold):
            if i % 10 == 0:
                log.info("fold %d: study %d/%d (%s)", fold, i + 1, n, study)

        pred = predict_studies(root / "train_images", modules, series_csv, studies=held_out, progress=progress,
                               fallback_prior=fold_prior)
        missing = [v for v in VIEWS if v not in views]
        if missing:
            problems.append(f"fold {fold}: no finished job for view(s) {missing}: their rows take the training "
                            "frequencies of train.csv")
        frames.append(pred.submission)
        from_prior += pred.from_prior
        studies += pred.studies
        problems += pred.problems
    submission = pd.concat(frames).sort_values("row_id", kind="stable").reset_index(drop=True)
    prediction = Prediction(submission, from_prior, studies, problems)
    csv_path, _ = write_submission(submission, from_prior, out / "submission.csv")
    write_points(out / "predictions.json", prediction, input=str(root / "train_images"), series=str(series_csv),
                 checkpoints=checkpoints, tta=tta)

    # the ground truth of the predicted studies, scored with spinectx-score's code
    predicted_ids = sorted({r.study_id for r in studies})
    held = train[train["study_id"].astype(str).isin(predicted_ids)]
    truth_path = out / "held_out_train.csv"
    held.to_csv(truth_path, index=False)
    score = score_rsna(csv_path, truth_path)
    prior_frame = pd.concat(priors).sort_values("row_id", kind="stable").reset_index(drop=True)
    prior_path = out / "prior_submission.csv"
    prior_frame.to_csv(prior_path, index=False, float_format="%.6g")
    prior_score = score_rsna(prior_path, truth_path)

    solution = solution_from_train(held)
    model_rows = row_losses(read_submission_csv(csv_path), solution)
    prior_rows = row_losses(prior_frame, solution)
    per_level = per_level_table(model_rows, prior_rows)
    per_level.to_csv(out / "per_level.csv", index=False, float_format="%.6g")
    confusion = confusion_table(model_rows)
    confusion.to_csv(out / "confusion.csv", index=False)
    calibration = calibration_points(model_rows)
    plot_calibration(calibration, out / "calibration.png")
    hit_rates = localisation(folds, out / "predictions.json", root, out)

    payload = {
        "sweep": str(Path(sweep).resolve()), "data_root": str(root), "folds": sorted(folds),
        "studies": len(predicted_ids), "rows": len(submission), "rows_from_prior": len(from_prior),
        "model": {k: score.get(k) for k in (*TERMS, "score")},
        "prior": {k: prior_score.get(k) for k in (*TERMS, "score")},
        "ratio": {k: _ratio(score.get(k), prior_score.get(k)) for k in (*TERMS, "score")},
        "per_condition": score.get("per_condition"), "prior_per_condition": prior_score.get("per_condition"),
        "localisation": hit_rates, "calibration": calibration,
        "pixel_reads_per_study": float(np.mean([r.pixel_reads for r in studies])) if studies else None,
        "jobs_left_out": skipped, "problems": problems,
    }
    (out / "score.json").write_text(json.dumps(payload, indent=2, default=_json_default))
    (out / "summary.md").write_text(summary_markdown(payload, per_level, confusion, sweep, out))
    return payload


def _ratio(a, b):
    return None if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0 else a / b


def _json_default(value):
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def localisation(folds: dict, predictions: Path, root: Path, out: Path) -> dict:
    """Hit rates per view: the validation hit rate (labelled slice, ≤ 6 mm; mean over folds, from
    ``metrics.json``) and the study-level one of the points behind the submission, in 3-D patient
    space against ``train_label_coordinates.csv`` (:func:`~spinectx.metrics.rsna_points.point_errors`,
    written to ``point_errors.csv``), with the median error in mm."""
    from spinectx.metrics.rsna_points import hit_rates, load_predictions, point_errors, read_coordinates

    rates: dict[str, dict] = {}
    for view in VIEWS:
        values = [j.evaluation.get("hit_rate") for v in folds.values() for name, j in v.items() if name == view]
        values = [float(x) for x in values if x is not None]
        rates[view] = {"validation_hit_rate": float(np.mean(values)) if values else None}
    coordinates = root / "train_label_coordinates.csv"
    if not coordinates.is_file():
        return rates
    from spinectx.viz import draw_study_points

    points, truth = load_predictions(predictions), read_coordinates(coordinates)
    draw_study_points(points, out / "points.png", 4, truth)
    errors = point_errors(points, truth, source=predictions)
    errors.to_csv(out / "point_errors.csv", index=False, float_format="%.4g")
    if len(errors):
        for view, row in hit_rates(errors).iterrows():
            if view in rates:
                rates[view].update(study_hit_rate_3d=row["hit_rate"], study_points=int(row["points"]),
                                   study_median_mm=row["median_mm"])
    return rates


def summary_markdown(payload: dict, per_level: pd.DataFrame, confusion: pd.DataFrame, sweep, out: Path) -> str:
    """``summary.md``: score and parts beside the prior, localisation, per-level, confusion."""
    lines = [
        "# RSNA 2024 — cross-validated report", "",
        f"Sweep `{sweep}`, data `{payload['data_root']}`, fold(s) {payload['folds']}: "
        f"{payload['studies']} held-out studies, {payload['rows']} rows ({payload['rows_from_prior']} from the prior). "
        "Weighted log loss, lower is better (SPEC §6). Rescore: "
        f"`spinectx-score pred={out}/submission.csv gt={out}/held_out_train.csv out={out}/rescore.json`.", "",
        "| term | model | class prior | model / prior |", "|---|---:|---:|---:|",
    ]
    for k in (*TERMS, "score"):
        lines.append(f"| {k} | {_fmt(payload['model'].get(k))} | {_fmt(payload['prior'].get(k))} | "
                     f"{_fmt(payload['ratio'].get(k), 2)} |")
    lines += ["", "## Localisation (hit rate ≤ 6 mm)", "",
              "Validation: the held-out samples' labelled slice, in-plane. Study level: the point behind each "
              "submitted row (the slice the pipeline chose) against the true point, in 3-D patient space "
              "(`point_errors.csv`; a point on another slice counts the slice gap).", "",
              "| view | validation | study level, 3-D | median error (mm) | points |", "|---|---:|---:|---:|---:|"]
    for view, rates in payload["localisation"].items():
        lines.append(f"| {view} | {_pct(rates.get('validation_hit_rate'))} | {_pct(rates.get('study_hit_rate_3d'))} | "
                     f"{_fmt(rates.get('study_median_mm'), 2)} | {rates.get('study_points', 'n/a')} |")
    lines += ["", "## Per condition and level (weighted log loss)", "", _markdown(per_level), "",
              "## Confusion (rows = truth, columns = predicted class)", "", _markdown(confusion), "",
              "Calibration: `calibration.png` (per class, predicted vs observed frequency). Where the model "
              "looked: `points.png` (4 studies, true points in green).", ""]
    if payload["jobs_left_out"]:
        lines += ["## Jobs left out", ""] + [f"- {s}" for s in payload["jobs_left_out"]] + [""]
    return "\n".join(lines)


def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f} %"


