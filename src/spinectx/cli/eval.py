"""spinectx-eval ckpt_path=CKPT [data overrides]: evaluate a checkpoint on a fold or on a split.

Writes into the run directory:
- ``metrics.json``: the table metric (SPEC §4; keys as in training, fractions) computed by the same
  validation step as in training, plus ``challenge`` (TianChi macro-F1, per class, confusion matrix);
- ``per_landmark.csv``: per identification the number of annotated points, hit rate (≤ 6 mm), mean
  and median error in mm, the AUC of P(abnormal) over its located points, and the level prior's
  P(abnormal) (its training frequency);
- ``metrics.json``'s ``level_prior``: per group the model's AUC beside the level prior's over the
  same located points (:mod:`spinectx.metrics.level_prior`), so a model that only learned the level
  cannot hide;
- ``confusion.png``: the challenge confusion matrix; ``overlays.png``: N studies with true and
  predicted points, predicted class and P(abnormal).
Runs under any ``trainer=`` (``ddp_cpu``/``ddp`` included: each study is evaluated once).

``spinectx-eval points=predictions.json [coordinates=train_label_coordinates.csv]`` (no checkpoint)
checks where a study-level RSNA prediction looked (:func:`evaluate_points`): ``points.png`` (the
images of ``overlay_studies`` studies with their predicted points, and the true ones), and with the
coordinates ``point_errors.csv`` (per row: distance in mm in patient space, hit ≤ ``threshold_mm``).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.eval")


def _auc(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


@torch.no_grad()
def collect(module, dataset, batch_size: int = 8) -> dict[str, np.ndarray | list]:
    """Predictions and ground truth of every sample of ``dataset`` (evaluation transform):
    keypoints [N, K, 2] (input px), prob [N, K], class_prob [N, K, C] (multiclass head; None for the
    binary one), truth [N, K, 2], labels [N, K], spacing [N, 2] (dy, dx of the resized frame),
    frame_spacing [N, 2] (dy, dx of the original frame), tags (N lists of K tuples), study_uid; truth
    is NaN where not annotated."""
    module.eval()
    out: dict[str, list] = {k: [] for k in ("keypoints", "prob", "class_prob", "truth", "labels", "spacing")}
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        spacing = torch.stack([s["spacing"] for s in samples]).to(module.device)  # mm crops of a two-stage pair
        decoded = module.predict_keypoints(torch.stack([s["image"] for s in samples]).to(module.device), spacing=spacing)
        out["keypoints"].append(decoded.keypoints.float().cpu().numpy())
        out["prob"].append(decoded.prob.float().cpu().numpy())
        if decoded.class_prob is not None:
            out["class_prob"].append(decoded.class_prob.float().cpu().numpy())
        for key, field in (("truth", "keypoints"), ("labels", "labels"), ("spacing", "spacing")):
            out[key].append(np.stack([s[field].numpy() for s in samples]))
    arrays = {k: np.concatenate(v) if v else None for k, v in out.items()}
    records = dataset.records[: len(dataset)]
    arrays["frame_spacing"] = np.asarray([r.pixel_spacing for r in records], dtype=np.float64).reshape(-1, 2)
    arrays["tags"] = [list(r.tags) for r in records]
    arrays["study_uid"] = [r.study_uid for r in records]
    return arrays


def usable_points(c: dict, threshold_mm: float) -> np.ndarray:
    """[N, K] bool: located (≤ ``threshold_mm``) and tagged — the points an AUC is taken over (SPEC §4)."""
    diff = (c["keypoints"] - c["truth"]) * c["spacing"][:, None, ::-1]
    dist = np.linalg.norm(diff, axis=-1)
    return np.isfinite(dist) & (dist <= threshold_mm) & np.isfinite(c["labels"])


BOX_PX = 16.0  # the RSNA 2024 seed's stage-1 boxes (SPEC §7), in pixels of the original image


def frame_px_scale(c: dict) -> np.ndarray:
    """[N, 1, 2] (x, y): original-frame pixels per network-input pixel of each sample of :func:`collect`."""
    return (c["spacing"] / c["frame_spacing"])[:, None, ::-1]


def per_landmark_rows(c: dict, names: list[str], threshold_mm: float, prior: np.ndarray | None = None) -> list[dict]:
    """One row per identification: annotated count, hit rate, errors (mm), the model's AUC and, with
    the level ``prior`` [K] (:func:`spinectx.metrics.level_prior.level_prior`), its P(abnormal)."""
    from spinectx.metrics.box import box_hits
    from spinectx.metrics.table import roc_auc

    boxed = box_hits(c["keypoints"], c["truth"], BOX_PX, frame_px_scale(c))  # [N, K]
    diff = (c["keypoints"] - c["truth"]) * c["spacing"][:, None, ::-1]  # (x, y) px × (dx, dy) mm/px
    dist = np.linalg.norm(diff, axis=-1)  # [N, K] mm, NaN where not annotated
    rows = []
    for k, name in enumerate(names):
        d = dist[:, k]
        annotated = np.isfinite(d)
        hit = annotated & (d <= threshold_mm)
        labels = c["labels"][:, k]
        usable = hit & np.isfinite(labels)
        auc = roc_auc(torch.from_numpy(c["prob"][usable, k]), torch.from_numpy(labels[usable])) if usable.any() else float("nan")
        rows.append({
            "identification": name,
            "annotated": int(annotated.sum()),
            "hit_rate": round(float(hit.sum() / max(annotated.sum(), 1)), 4),
            "box16_rate": round(float(np.nansum(boxed[:, k]) / max(annotated.sum(), 1)), 4),
            "mean_error_mm": round(float(d[annotated].mean()), 3) if annotated.any() else "",
            "median_error_mm": round(float(np.median(d[annotated])), 3) if annotated.any() else "",
            "auc": round(auc, 4) if np.isfinite(auc) else "",
            "abnormal": int(np.nansum(labels[annotated])),
        })
        if prior is not None:  # its AUC per identification is 0.5 by construction: the group AUC tells
            rows[-1]["level_prior_p_abnormal"] = round(float(prior[k]), 4)
    return rows


def plot_confusion(challenge: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = challenge["rows"], challenge["classes"]
    matrix = np.array([[challenge["confusion"][r][c] for c in cols] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 1.0 + 0.6 * len(rows)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("ground truth")
    ax.set_ylabel("prediction")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    macro = challenge["macro_f1"]
    ax.set_title(f"challenge confusion matrix, macro-F1 {'n/a' if macro is None else f'{macro:.3f}'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_points(cfg: DictConfig) -> dict:
    """``points=`` mode: overlays of ``cfg.points`` (predictions.json) into ``points.png`` and, with
    ``cfg.coordinates``, ``point_errors.csv`` and the hit rate per view (printed). Returns
    {"points_png": path or None, "point_errors": path or None, "hit_rates": {view: {...}}}.

    Raises:
        DataError: predictions.json or the coordinates file missing or malformed, or an image the
            predictions name missing or undecodable (naming the file).
        ConfigError: a bad ``threshold_mm`` or ``overlay_studies``.
    """
    from spinectx.data.errors import config_float, config_int
    from spinectx.metrics.rsna_points import hit_rates, load_predictions, point_errors, read_coordinates
    from spinectx.viz import draw_study_points

    threshold_mm = config_float("threshold_mm", cfg.threshold_mm, low=0.0, what="a positive distance in mm")
    overlay_studies = config_int("overlay_studies", cfg.overlay_studies, minimum=0)
    predictions = load_predictions(cfg.points)
    truth = read_coordinates(cfg.coordinates) if cfg.get("coordinates") else None
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    drawn = draw_study_points(predictions, output_dir / "points.png", overlay_studies, truth)
    result: dict = {"points_png": str(drawn) if drawn else None, "point_errors": None, "hit_rates": {}}
    if truth is not None:
        errors = point_errors(predictions, truth, threshold_mm, source=cfg.points)
        errors.to_csv(output_dir / "point_errors.csv", index=False)
        rates = hit_rates(errors)
        result["point_errors"] = str(output_dir / "point_errors.csv")
        result["hit_rates"] = rates.to_dict(orient="index")
        print(f"point hit rate (≤ {threshold_mm:g} mm in patient space) per view:")
        print(rates.to_string(float_format=lambda v: f"{v:.3f}"))
        if rates.loc["all", "unmeasured"]:
            log.warning("%d row(s) without a distance (see the problem column of point_errors.csv)",
                        int(rates.loc["all", "unmeasured"]))
    written = [name for name, done in (("points.png", drawn), ("point_errors.csv", truth is not None)) if done]
    log.info("wrote %s to %s", ", ".join(written) or "nothing (no study has points)", output_dir)
    return result


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt_path`` (or, with ``points=``, a predictions.json: :func:`evaluate_points`);
    returns the metrics.json payload (on rank 0; {} elsewhere).

    Raises:
        ConfigError: neither ``ckpt_path`` nor ``points`` given, ``coordinates`` without ``points``,
            or a bad setting.
    """
    from spinectx.data.errors import ConfigError

    if cfg.get("points"):
        if cfg.get("ckpt_path"):
            log.warning("points= given: checking its points; ckpt_path=%s is not evaluated", cfg.ckpt_path)
        return evaluate_points(cfg)
    if cfg.get("coordinates"):
        raise ConfigError("coordinates= is used with points=predictions.json only; give points= too, or leave it out")
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: missing; give ckpt_path=... on the command line (the checkpoint to evaluate), "
                          "or points=predictions.json (with coordinates=train_label_coordinates.csv) to check the "
                          "points of a spinectx-predict RSNA run")
    from spinectx.data.submission import tags_from_class_prob, tags_from_prob
    from spinectx.inference import load_module
    from spinectx.lit.callbacks import METRIC_KEYS, write_json_atomic
    from spinectx.metrics.challenge import challenge_metric
    from spinectx.metrics.box import box_hit_rate
    from spinectx.metrics.level_prior import group_aucs, level_prior
    from spinectx.viz import draw_predictions

    from spinectx.data.folds import check_folds

    from spinectx.data.errors import config_float, config_int

    output_dir = Path(cfg.paths.output_dir)
    # bad settings fail before the model loads
    check_folds(cfg.data.num_folds, cfg.data.fold, cfg.data.fraction)
    threshold_mm = config_float("threshold_mm", cfg.threshold_mm, low=0.0, what="a positive distance in mm")
    overlay_studies = config_int("overlay_studies", cfg.overlay_studies, minimum=0)
    module = load_module(cfg.ckpt_path, tta=cfg.tta, classifier_ckpt=cfg.get("classifier_ckpt"))
    size = cfg.data.image_size or module.hparams.get("input_size")
    if not size:
        raise ValueError(f"{cfg.ckpt_path}: the checkpoint does not record its input size; pass data.image_size=")
    with open_dict(cfg):
        cfg.data.image_size = int(size)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup("validate")
    if cfg.all_studies:
        datamodule.val_set = datamodule.all_studies()
    what = f"all {len(datamodule.val_set)} studies of {datamodule.splits}" if cfg.all_studies else \
        f"held-out fold {cfg.data.fold} ({len(datamodule.val_set)} studies)"
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    validated = trainer.validate(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return {}
    table = {k.removeprefix("val/"): float(v) for k, v in validated[0].items() if k.startswith("val/")}

    c = collect(module, datamodule.val_set, int(cfg.data.get("val_batch_size") or cfg.data.batch_size))
    # multiclass head: the predicted classes; binary head: threshold + the most frequent abnormal class
    pred_tags = ([tags_from_class_prob(p, module.landmarks) for p in c["class_prob"]] if c["class_prob"] is not None
                 else [tags_from_prob(p, module.landmarks) for p in c["prob"]])
    challenge = challenge_metric(c["keypoints"], pred_tags, c["truth"], c["tags"], c["spacing"], module.landmarks,
                                 threshold_mm)
    prior = level_prior(datamodule.train_set.records, module.landmarks)  # the fold's training samples
    rows = per_landmark_rows(c, list(module.landmarks.names), threshold_mm, prior)
    groups = group_aucs(c["prob"], c["labels"], usable_points(c, threshold_mm), prior, module.landmarks)
    for title, g in groups.items():
        log.info("C-%s: model AUC %s vs level prior AUC %s over %d located points", title, _auc(g["model_auc"]),
                 _auc(g["level_prior_auc"]), g["points"])
        if np.isfinite(g["model_auc"]) and np.isfinite(g["level_prior_auc"]) and g["model_auc"] <= g["level_prior_auc"] + 0.05:
            log.warning("C-%s: the model's AUC is not clearly above the level prior's: it may have learned the level, "
                        "not the image", title)
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "per_landmark.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_confusion(challenge, output_dir / "confusion.png")
    draw_predictions(module, datamodule.val_set, output_dir / "overlays.png", overlay_studies,
                     predicted=(c["keypoints"], c["prob"], c["class_prob"]))  # the predictions collected above
    # the table metrics in their usual order, then any others of the dataset (RSNA: logloss, rsna_score, hit_rate)
    metrics = {k: table[k] for k in METRIC_KEYS if k in table} | {k: v for k, v in table.items() if k not in METRIC_KEYS}
    result = {**metrics, "challenge": challenge, "level_prior": groups,
              "checkpoint": str(cfg.ckpt_path),
              "classifier_checkpoint": str(cfg.classifier_ckpt) if cfg.get("classifier_ckpt") else None,
              "evaluated": what, "studies": len(datamodule.val_set),
              "tta": bool(module.hparams.tta), "input_size": int(size),
              # stage 1 as the seed reported it: centre inside a 16 × 16 px box (original-image pixels) around the truth
              "box16_rate": box_hit_rate(c["keypoints"], c["truth"], BOX_PX, frame_px_scale(c))}
    write_json_atomic(output_dir / "metrics.json", result)
    from spinectx.cli.train import print_table

    macro = challenge["macro_f1"]
    print_table(table, f"{what} — macro-F1 {'n/a' if macro is None else f'{macro:.3f}'}")
    if macro is None:
        log.warning("challenge macro-F1 n/a: %s", challenge["undefined"]["macro_f1"])
    if result["box16_rate"] is not None:
        log.info("stage 1 as the seed reported it: %.1f %% of the points inside a 16 × 16 px box (original image "
                 "pixels) around the truth", 100 * result["box16_rate"])
    log.info("wrote metrics.json, per_landmark.csv, confusion.png, overlays.png to %s", output_dir)
    return result


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
@fail_cleanly("spinectx-eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
