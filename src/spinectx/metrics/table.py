"""The paper's table metric (SPEC §4) as a torchmetrics Metric, exact across DDP processes.

For each annotated ground-truth landmark: *located* when the Euclidean distance between the
prediction of the same identification and the truth is ≤ ``threshold_mm`` (default 6 mm), with
pixel differences scaled by the frame's pixel spacing (dy, dx).

- ``L-<Group>``: located fraction over the group's annotated landmarks;
- ``C-<Group>``: ROC-AUC of P(abnormal) over the group's *located* landmarks (0 when only one
  class is present);
- ``Score`` = mean over groups of L × mean over groups of C.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def roc_auc(score: torch.Tensor, target: torch.Tensor) -> float:
    """ROC-AUC of ``score`` for binary ``target`` (Mann–Whitney U with tied ranks averaged).

    Returns 0.0 when only one class is present (the convention of SPEC §4).
    """
    score = score.double().flatten()
    target = target.flatten() > 0.5
    n_pos = int(target.sum())
    n_neg = int(target.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        return 0.0
    order = torch.argsort(score)
    sorted_scores = score[order]
    ranks = torch.empty_like(score)
    # average ranks (1-based) over runs of equal scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1) / 2
    ranks[order] = avg_rank[inverse]
    u = ranks[target].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


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
    every group and ``Score`` (fractions in [0, 1], as tensors).
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
        l_values, c_values = [], []
        for g, title in enumerate(self.group_titles):
            in_group = group == g
            n = int(in_group.sum())
            l_g = float(located[in_group].float().mean()) if n else 0.0
            sel = in_group & located & torch.isfinite(abnormal)
            c_g = roc_auc(prob[sel], abnormal[sel])
            out[f"L-{title}"] = torch.tensor(l_g)
            out[f"C-{title}"] = torch.tensor(c_g)
            l_values.append(l_g)
            c_values.append(c_g)
        out["Score"] = torch.tensor(sum(l_values) / len(l_values) * sum(c_values) / len(c_values))
        return out

