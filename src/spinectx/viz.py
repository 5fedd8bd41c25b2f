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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.4 * rows), squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=float(np.percentile(images[i], 99.5)) or 1.0)
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
        decoded = module.predict_keypoints(torch.stack([s["image"] for s in samples]).to(module.device))
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
