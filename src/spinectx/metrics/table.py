"""The paper's table metric (SPEC §4) as a torchmetrics Metric, exact across DDP processes.

For each annotated ground-truth landmark: *located* when the Euclidean distance between the
prediction of the same identification and the truth is ≤ ``threshold_mm`` (default 6 mm), with
pixel differences scaled by the frame's pixel spacing (dy, dx).

- ``L-<Group>``: located fraction over the group's annotated landmarks; NaN when the group has no
  annotated landmark.
- ``C-<Group>``: ROC-AUC of P(abnormal) over the group's *located* landmarks of known class (and
  with a probability); NaN (undefined, with a logged warning) when they do not hold both classes,
  among them when none is located.
- ``Score`` = mean over groups of L × mean over groups of C, over the groups with at least one
  annotated landmark. The paper's convention (SPEC §4) is kept for the Score: an undefined AUC
  counts as 0 there. NaN when no group has an annotated landmark.

So a one-class AUC shows as NaN (``n/a`` in tables, null in JSON) instead of a 0 that looks like
a result, while the Score, and with it checkpoint selection on ``val/Score``, stays the paper's
number and finite whenever anything is annotated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from sklearn.metrics import roc_auc_score
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

log = logging.getLogger("spinectx.metrics")


def roc_auc(score: torch.Tensor, target: torch.Tensor) -> float:
    """ROC-AUC of ``score`` for binary ``target`` (> 0.5 = positive), both of any shape with the
    same number of elements; tied scores count half (scikit-learn's ``roc_auc_score``).

    Returns NaN when the AUC is undefined: fewer than two classes present (no point at all
    included). The Score's convention of counting that as 0 is :class:`TableMetric`'s business.
    """
    positive = (target.flatten() > 0.5).cpu().numpy()
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, score.detach().double().flatten().cpu().numpy()))


def landmark_distances_mm(pred: torch.Tensor, truth: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """Euclidean distances in mm. pred, truth: [B, K, 2] (x, y) pixels; spacing: [B, 2] (dy, dx) mm.

    A missing prediction (NaN) gives an infinite distance."""
    dxy = (pred.double() - truth.double()) * spacing.double().flip(-1)[:, None, :]  # (dx, dy) order
    dist = dxy.norm(dim=-1)
    return torch.where(torch.isnan(dist), torch.full_like(dist, float("inf")), dist)


def _cat(state, dtype=torch.float32) -> torch.Tensor:
    """A cat state as one tensor: a list before a distributed sync (maybe empty), a tensor after."""
    if isinstance(state, torch.Tensor):
        return state
    return dim_zero_cat(state) if state else torch.zeros(0, dtype=dtype)


class TableMetric(Metric):
    """Localisation rate and classification AUC per landmark group, and the paper's Score.

    Args:
        groups: group index of each landmark, length K (e.g. ``LandmarkSet.group_of``).
        group_titles: display name per group index (``("Vertebra", "Disc")``) used in keys.
        threshold_mm: localisation threshold.

    ``update(pred_keypoints [B,K,2], prob [B,K], keypoints [B,K,2], annotated [B,K],
    labels [B,K], spacing [B,2])``; ``compute()`` → dict with ``L-<title>``, ``C-<title>`` for
    every group and ``Score`` (fractions in [0, 1], as 0-d tensors; NaN where undefined, see the
    module docstring, with one logged warning per call naming the groups and counts). After
    ``compute()``, ``undefined`` maps each NaN key to the reason.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, groups: Sequence[int], group_titles: Sequence[str], threshold_mm: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("groups", torch.as_tensor(list(groups), dtype=torch.long), persistent=False)
        self.group_titles = tuple(group_titles)
        self.threshold_mm = float(threshold_mm)
        for name in ("distance", "group", "abnormal", "prob"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.undefined: dict[str, str] = {}  # NaN key → why, filled by compute()

    def update(
        self,
        pred_keypoints: torch.Tensor,
        prob: torch.Tensor,
        keypoints: torch.Tensor,
        annotated: torch.Tensor,
        labels: torch.Tensor,
        spacing: torch.Tensor,
    ) -> None:
        dist = landmark_distances_mm(pred_keypoints, keypoints, spacing)
        keep = annotated.bool() & torch.isfinite(keypoints).all(-1)
        group = self.groups.to(dist.device).expand_as(dist)
        self.distance.append(dist[keep].float())
        self.group.append(group[keep])
        self.abnormal.append(labels[keep].float())
        self.prob.append(prob[keep].float())

    def compute(self) -> dict[str, torch.Tensor]:
        dist, abnormal, prob = (_cat(s) for s in (self.distance, self.abnormal, self.prob))
        group = _cat(self.group, torch.long)
        located = dist <= self.threshold_mm
        out: dict[str, torch.Tensor] = {}
        undefined: dict[str, str] = {}
        l_values, c_values = [], []
        for g, title in enumerate(self.group_titles):
            in_group = group == g
            if not bool(in_group.any()):
                out[f"L-{title}"] = out[f"C-{title}"] = torch.tensor(math.nan)
                undefined[f"L-{title}"] = undefined[f"C-{title}"] = f"no annotated {title} landmark (left out of the Score)"
                continue
            l_g = float(located[in_group].float().mean())
            sel = in_group & located & torch.isfinite(abnormal) & torch.isfinite(prob)
            c_g = roc_auc(prob[sel], abnormal[sel])
            if math.isnan(c_g):
                n_sel, n_pos = int(sel.sum()), int((abnormal[sel] > 0.5).sum())
                undefined[f"C-{title}"] = (
                    f"the {n_sel} located {title} landmarks of known class ({n_pos} abnormal, {n_sel - n_pos} normal) "
                    "hold fewer than two classes (counted as 0 in the Score)"
                )
            out[f"L-{title}"] = torch.tensor(l_g)
            out[f"C-{title}"] = torch.tensor(c_g)
            l_values.append(l_g)
            c_values.append(0.0 if math.isnan(c_g) else c_g)  # SPEC §4: one class present → 0
        if l_values:
            out["Score"] = torch.tensor(sum(l_values) / len(l_values) * sum(c_values) / len(c_values))
        else:
            out["Score"] = torch.tensor(math.nan)
            undefined["Score"] = "no annotated landmark at all"
        self.undefined = undefined
        if undefined:
            log.warning("table metric undefined (NaN): %s", "; ".join(f"{k}: {why}" for k, why in undefined.items()))
        return out
