"""The level prior: what a classifier that only learned *which* landmark it looks at predicts.

P(abnormal) of identification k = the frequency of abnormal among the training samples' tagged
landmarks k (Laplace-smoothed: (abnormal + 1) / (tagged + 2)). Per identification its AUC is 0.5 by
construction (one score for every sample); over a group (all discs, all vertebrae) it is not, because
the frequency differs by level — a model whose group AUC is not clearly above the level prior's has
learned the level, not the image (issue 14 §0).
"""

from __future__ import annotations

import numpy as np
import torch

from spinectx.data.dataset import record_targets
from spinectx.metrics.table import roc_auc


def level_prior(records, landmarks) -> np.ndarray:
    """Training records → P(abnormal) per identification [K], Laplace-smoothed (module docstring)."""
    labels = np.stack([record_targets(r, landmarks)[0] for r in records]) if records else np.full((0, len(landmarks)), np.nan)
    tagged = np.isfinite(labels)
    abnormal = np.where(tagged, labels, 0.0).sum(0)
    return (abnormal + 1.0) / (tagged.sum(0) + 2.0)


def group_aucs(prob: np.ndarray, labels: np.ndarray, usable: np.ndarray, prior: np.ndarray,
               landmarks) -> dict[str, dict]:
    """Per landmark group: the model's AUC of P(abnormal) ``prob`` [N, K] and the level prior's
    (``prior`` [K] broadcast over the samples), both over the same points ``usable`` [N, K] (e.g.
    located and tagged: SPEC §4's C-metric population), with the point count. NaN where undefined."""
    out = {}
    for g, group in enumerate(landmarks.groups):
        cols = [k for k, gk in enumerate(landmarks.group_of) if gk == g]
        mask = usable[:, cols]
        target = torch.from_numpy(labels[:, cols][mask])
        model = torch.from_numpy(prob[:, cols][mask])
        level = torch.from_numpy(np.broadcast_to(prior[cols], mask.shape)[mask].copy())
        out[group.title] = {"points": int(mask.sum()), "model_auc": roc_auc(model, target) if mask.any() else float("nan"),
                            "level_prior_auc": roc_auc(level, target) if mask.any() else float("nan")}
    return out
