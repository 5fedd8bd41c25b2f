"""CCF-Net loss (SPEC §3): heatmap MSE + SmoothL1 offsets near the peak + class-balanced BCE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spinectx.codecs.coarse_fine import CoarseFineCodec, CoarseFineTargets
from spinectx.losses.classification import ClassLoss


class CoarseFineLoss(nn.Module):
    """Loss of the coarse-to-fine head.

    ``heatmap``: MSE between predicted and target coarse heatmaps, summed over grid cells and
    averaged over annotated, in-frame landmarks (the sum keeps the loss independent of the grid
    size). ``offset``: SmoothL1 on the x and y offsets (in cells) where the target heatmap is near
    its peak, averaged over those cells, weighted per axis. ``class``: the shared class term at the
    true peak cell (:mod:`spinectx.losses.classification`: group-balanced BCE for the binary head,
    per-group cross-entropy + flag BCE for the multiclass head).

    Args:
        heatmap_weight, offset_weight, class_weight: loss weights.
        groups: group index of each landmark [K] (from the data's landmark set).
        offset_beta: SmoothL1 transition point, in cells (1.0 = PyTorch's default; smaller is
            closer to L1, whose constant gradient refines sub-cell offsets faster).
    """

    codec_class = CoarseFineCodec

    def __init__(
        self,
        groups: Sequence[int],
        heatmap_weight: float = 1.0,
        offset_weight: float = 2.0,
        class_weight: float = 0.1,
        offset_beta: float = 1.0,
    ):
        super().__init__()
        self.classification = ClassLoss(groups)
        self.heatmap_weight = float(heatmap_weight)
        self.offset_weight = float(offset_weight)
        self.class_weight = float(class_weight)
        self.offset_beta = float(offset_beta)

    def forward(
        self, output: torch.Tensor, targets: CoarseFineTargets, labels: torch.Tensor, codec: CoarseFineCodec,
        tags: torch.Tensor | None = None, class_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """output [B, (3 + n)·K, h, w]; labels [B, K] abnormal in {0, 1} or NaN; tags [B, K, C]
        multi-hot class tags (needed by the multiclass head); class_logits [B, K, n_logits]
        from a context head, replacing the output's class blocks (None: read at the true cell) →
        dict of scalar losses (``loss`` is the weighted total)."""
        heatmap, off_y, off_x = (t.float() for t in codec.split(output)[:3])
        valid = targets.valid  # [B, K]
        n_valid = valid.sum().clamp(min=1)
        se = (heatmap - targets.heatmap) ** 2
        loss_heatmap = (se.sum((-2, -1)) * valid).sum() / n_valid

        mask = targets.offset_mask
        n_off = mask.sum().clamp(min=1)
        l_y = (F.smooth_l1_loss(off_y, targets.offset_y, reduction="none", beta=self.offset_beta) * mask).sum() / n_off
        l_x = (F.smooth_l1_loss(off_x, targets.offset_x, reduction="none", beta=self.offset_beta) * mask).sum() / n_off
        loss_offset = l_y + l_x

        loss_class = self.classification(output, codec, targets.peak_index, labels, valid, tags, class_logits)

        total = self.heatmap_weight * loss_heatmap + self.offset_weight * loss_offset + self.class_weight * loss_class
        return {"loss": total, "heatmap": loss_heatmap.detach(), "offset": loss_offset.detach(), "class": loss_class.detach()}
