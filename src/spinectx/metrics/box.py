"""Stage 1 as the RSNA 2024 seed reported it (SPEC §7): the share of levels whose predicted centre
falls inside a ``box_px`` × ``box_px`` box centred on the true point (the seed's YOLOv8 boxes were
16 × 16 px).

Pixels are those of the frame the points are given in, x = column, y = row, unless ``scale`` maps
them to another frame (``spinectx-eval`` gives points in network-input pixels and a scale to the
original image's pixels, the frame the seed's labels and boxes lived in). Inside means
``|dx| ≤ box_px / 2`` and ``|dy| ≤ box_px / 2`` (the box's border counts as inside).
"""

from __future__ import annotations

import numpy as np


def box_hits(pred: np.ndarray, truth: np.ndarray, box_px: float = 16.0, scale: np.ndarray | None = None) -> np.ndarray:
    """pred, truth [N, K, 2] (x, y) px → float [N, K]: 1 inside the box, 0 outside, NaN where the
    truth is missing (NaN) — a missing prediction (NaN) with a truth counts as outside. ``scale``
    (broadcastable to [N, K, 2], (x, y)): box pixels per pixel of ``pred`` / ``truth``.

    Raises:
        ValueError: shapes that differ or are not [..., 2], or ``box_px`` not > 0.
    """
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.shape[-1] != 2:
        raise ValueError(f"box_hits expects pred and truth of the same shape [..., 2], got {pred.shape} and {truth.shape}")
    if not box_px > 0:
        raise ValueError(f"box_px must be > 0, got {box_px}")
    half = box_px / 2.0
    diff = np.abs(pred - truth) * (1.0 if scale is None else np.asarray(scale, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        inside = (diff <= half).all(-1)
    known = np.isfinite(truth).all(-1)
    return np.where(known, inside.astype(np.float64), np.nan)


def box_hit_rate(pred: np.ndarray, truth: np.ndarray, box_px: float = 16.0, scale: np.ndarray | None = None) -> float | None:
    """Share of annotated points inside the box (:func:`box_hits`) over all of ``pred``; None without any."""
    hits = box_hits(pred, truth, box_px, scale)
    return float(np.nanmean(hits)) if np.isfinite(hits).any() else None
