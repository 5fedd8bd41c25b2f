"""Overlay figures: a frame with true and predicted landmarks, classes and probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def overlay_grid(
    images: Sequence[np.ndarray],
    truth: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
    prob: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    names: Sequence[str],
    titles: Sequence[str],
    path: str | Path,
    columns: int = 4,
    classes: Sequence[Sequence[str]] | None = None,
) -> Path:
    """Save a grid of overlays as PNG.

    Each image [H, W] gets ground truth (green circles) and predictions (crosses coloured by
    P(abnormal): blue normal → red abnormal), a line joining each pair, and a label
    ``name p=0.87 (gt 1)``, or ``name v3,v5 p=0.87 (gt 1)`` when ``classes`` gives the predicted
    class strings per image and landmark (multiclass head). Points are (x, y) pixels of that image.
    """
    plt, fig, axes = _grid(len(images), columns)
    cmap = plt.get_cmap("coolwarm")
    for i in range(len(images)):
        ax = axes.flat[i]
        _show(ax, images[i])
        for k, name in enumerate(names):
            gx, gy = truth[i][k]
            px, py = pred[i][k]
            p = float(prob[i][k])
            if np.isfinite(gx) and np.isfinite(gy):
                ax.plot(gx, gy, "o", mfc="none", mec="lime", ms=7, mew=1.4)
                ax.plot([gx, px], [gy, py], "-", color="yellow", lw=0.8)
            ax.plot(px, py, "x", color=cmap(p), ms=7, mew=2)
            gt = labels[i][k]
            gt_txt = "?" if not np.isfinite(gt) else str(int(gt))
            predicted_class = f" {classes[i][k]}" if classes is not None and classes[i][k] else ""
            ax.text(px + 6, py, f"{name}{predicted_class} p={p:.2f} (gt {gt_txt})", color=cmap(p), fontsize=6,
                    va="center", bbox={"facecolor": "black", "alpha": 0.4, "pad": 0.5, "lw": 0})
        ax.set_title(titles[i], fontsize=8)
    fig.suptitle("green o: truth   x: prediction (colour = P(abnormal))   label: name p (gt abnormal)", fontsize=9)
    return _save(plt, fig, path)


def _grid(n: int, columns: int):
    """(pyplot, figure, axes [rows, columns]) for ``n`` panels of the overlay style (Agg), every
    axis off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return plt, fig, axes


def _show(ax, image: np.ndarray) -> None:
    """An image [H, W] in grey, windowed from 0 to its 99.5th percentile."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=float(np.percentile(image, 99.5)) or 1.0)


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_predictions(module, dataset, path: Path, n: int, predicted: tuple | None = None) -> Path | None:
    """Save true vs predicted landmarks of the first ``n`` samples of ``dataset`` (evaluation
    transform) to ``path``; None when there is nothing to draw. ``predicted``: (keypoints [N, K, 2]
    input px, prob [N, K][, class_prob [N, K, C] or None]) already computed for the dataset's
    samples in order; else ``module`` predicts the ``n`` samples. With class probabilities
    (multiclass head) the labels show the predicted classes."""
    import torch

    if dataset is None or len(dataset) == 0 or n <= 0:
        return None
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    if predicted is None:
        was_training = module.training
        module.eval()
        spacing = torch.stack([s["spacing"] for s in samples]).to(module.device)  # mm crops of a two-stage pair
        decoded = module.predict_keypoints(torch.stack([s["image"] for s in samples]).to(module.device), spacing=spacing)
        module.train(was_training)
        predicted = (decoded.keypoints.float().cpu().numpy(), decoded.prob.float().cpu().numpy(),
                     None if decoded.class_prob is None else decoded.class_prob.float().cpu().numpy())
    keypoints, prob = predicted[:2]
    class_prob = predicted[2] if len(predicted) > 2 else None
    classes = None
    if class_prob is not None:
        from spinectx.data.submission import tags_from_class_prob

        classes = [tags_from_class_prob(p, module.landmarks) for p in np.asarray(class_prob[: len(samples)])]
    return overlay_grid(
        images=[s["image"][s["image"].shape[0] // 2].numpy() for s in samples],  # the centre slice of 2.5-D input
        truth=[s["keypoints"].numpy() for s in samples],
        pred=np.asarray(keypoints[: len(samples)]),
        prob=np.asarray(prob[: len(samples)]),
        labels=[s["labels"].numpy() for s in samples],
        names=module.landmarks.names,
        titles=[s["study_uid"][-24:] for s in samples],
        path=path,
        classes=classes,
    )


def _short_label(condition: str, level: str) -> str:
    """``left_neural_foraminal_narrowing``/``Left Neural Foraminal Narrowing``, ``l4_l5``/``L4/L5``
    → ``L4/L5 L``; spinal canal rows have no side."""
    side = {"left": " L", "right": " R"}.get(condition.strip().lower().split("_")[0].split(" ")[0], "")
    return level.strip().upper().replace("_", "/") + side


def draw_study_points(predictions: dict, path: str | Path, studies: int = 4, truth=None) -> Path | None:
    """Save where a study-level RSNA prediction looked: for the first ``studies`` studies of
    ``predictions`` that have points, one panel per image (file + frame) their points lie on.

    ``predictions``: the parsed ``predictions.json`` of ``spinectx-predict`` (see
    :mod:`spinectx.metrics.rsna_points`); each point's x, y are (column, row) pixels of its file's
    frame. Predicted points are red crosses labelled with level and side (``L4/L5 L``); with
    ``truth`` (a DataFrame in train_label_coordinates.csv columns: study_id, series_id,
    instance_number, condition, level, x, y) the true points of the same series and instance are
    green circles (labelled on the left), joined by a yellow line to the prediction of the same
    row. Panel titles: study, series description (from the file ``predictions["series"]`` names,
    else the image's SeriesDescription), instance number. Returns ``path``, or None when there is
    nothing to draw (``studies`` ≤ 0 or no study has points).

    Raises:
        DataError: ``predictions`` is not of the format, or an image it names is missing or cannot
            be decoded (naming the file).
    """
    from spinectx.data.dicom import FrameRef, read_frame, read_headers
    from spinectx.data.errors import DataError
    from spinectx.metrics.rsna import parse_row_id
    from spinectx.metrics.rsna_points import validate_predictions

    model = validate_predictions(predictions)
    chosen = [s for s in model.studies if s.points][: max(int(studies), 0)]
    if not chosen:
        return None
    descriptions: dict[str, dict[str, str]] = {}
    if model.series and Path(model.series).is_file():
        from spinectx.data.rsna import read_series_descriptions

        try:
            descriptions = read_series_descriptions(model.series, [])
        except DataError:
            descriptions = {}
    if truth is not None:
        truth = truth.assign(study_id=truth["study_id"].astype(str).str.strip(),
                             series_id=truth["series_id"].astype(str).str.strip(),
                             instance_number=truth["instance_number"].astype(float))
    panels = []  # (study, points on one image)
    for study in chosen:
        groups: dict[tuple[str, int], list] = {}
        for p in study.points:
            groups.setdefault((p.file, p.frame), []).append(p)
        panels += [(study.study_id, key, pts) for key, pts in groups.items()]

    plt, fig, axes = _grid(len(panels), 4)
    for ax, (study_id, (file, frame), points) in zip(axes.flat, panels):
        headers = read_headers(file)
        header = headers[0] if len(headers) == 1 else next((h for h in headers if h.frame == frame), headers[0])
        image = read_frame(FrameRef(file, header.frame))
        _show(ax, image)
        offset = 0.02 * image.shape[1]
        series_id = points[0].series_id
        instance = points[0].instance_number if points[0].instance_number is not None else header.instance_number
        predicted_at = {}
        for p in points:
            _, condition, level = parse_row_id(p.row_id)
            predicted_at[(condition, level)] = (p.x, p.y)
            ax.plot(p.x, p.y, "x", color="red", ms=7, mew=2)
            ax.text(p.x + offset, p.y, _short_label(condition, level), color="red", fontsize=6, va="center",
                    bbox={"facecolor": "black", "alpha": 0.4, "pad": 0.5, "lw": 0})
        if truth is not None and instance is not None:
            here = truth[(truth.study_id == study_id) & (truth.series_id == series_id)
                         & (truth.instance_number == float(instance))]
            for t in here.itertuples(index=False):
                ax.plot(t.x, t.y, "o", mfc="none", mec="lime", ms=7, mew=1.4)
                key = (_snake(t.condition), _snake(t.level))
                if key in predicted_at:
                    px, py = predicted_at[key]
                    ax.plot([t.x, px], [t.y, py], "-", color="yellow", lw=0.8)
                ax.text(t.x - offset, t.y, _short_label(t.condition, t.level), color="lime", fontsize=6, va="center",
                        ha="right", bbox={"facecolor": "black", "alpha": 0.4, "pad": 0.5, "lw": 0})
        description = descriptions.get(study_id, {}).get(series_id) or header.description or "?"
        where = f"instance {instance}" + (f" frame {header.frame}" if header.frame is not None else "")
        ax.set_title(f"study {study_id} · {description} · {where}", fontsize=8)
    truth_note = "   green o: true point (same series and instance)" if truth is not None else ""
    fig.suptitle(f"red x: predicted point{truth_note}   label: level + side (L/R)", fontsize=9)
    return _save(plt, fig, path)


def _snake(text: str) -> str:
    """``Left Neural Foraminal Narrowing`` → ``left_neural_foraminal_narrowing``; ``L4/L5`` → ``l4_l5``."""
    return str(text).strip().lower().replace("/", "_").replace(" ", "_")
