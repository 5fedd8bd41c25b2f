"""The classification term every head shares: class-balanced BCE of the class logit at the
cell holding the true point, balanced separately per landmark group (SPEC §3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def balanced_bce(logit: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy over the masked entries (any shape, same for all).

    Positives and negatives each contribute half of the loss (mean BCE within each class), so the
    rarer class weighs as much as the common one; a class absent from the batch contributes 0.
    """
    mask = mask & torch.isfinite(target)
    target = torch.nan_to_num(target, nan=0.0)
    bce = F.binary_cross_entropy_with_logits(logit.float(), target.float(), reduction="none")
    total = logit.new_zeros((), dtype=torch.float32)
    for cls_mask in (mask & (target > 0.5), mask & (target <= 0.5)):
        n = cls_mask.sum()
        if n > 0:
            total = total + 0.5 * (bce * cls_mask).sum() / n
    return total


class GroupBalancedBCE(nn.Module):
    """Mean over landmark groups of :func:`balanced_bce` of the class logit at the true cell.

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
    """

    def __init__(self, groups: Sequence[int]):
        super().__init__()
        self.register_buffer("groups", torch.as_tensor(list(groups), dtype=torch.long), persistent=False)

    def forward(self, logit_map: torch.Tensor, peak_index: torch.Tensor, labels: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """logit_map [B, K, h, w]; peak_index [B, K] flat cell index; labels [B, K] in {0, 1} or
        NaN; valid [B, K] bool → scalar."""
        logit = logit_map.float().flatten(2).gather(-1, peak_index[..., None])[..., 0]  # [B, K]
        group = self.groups.to(logit.device).expand_as(labels)
        losses = [balanced_bce(logit, labels, valid & (group == g)) for g in torch.unique(self.groups)]
        return torch.stack(losses).mean()
