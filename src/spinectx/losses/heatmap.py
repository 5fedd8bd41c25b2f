"""Plain heatmap loss: heatmap MSE + the shared class term."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spinectx.codecs.heatmap import HeatmapCodec, HeatmapTargets
from spinectx.losses.classification import ClassLoss


class HeatmapLoss(nn.Module):
    """Loss of the plain heatmap head.

    ``heatmap``: MSE between predicted and target heatmaps, summed over grid cells and averaged
    over annotated, in-frame landmarks (the same reduction as
    :class:`~spinectx.losses.coarse_fine.CoarseFineLoss`; invalid landmarks contribute nothing).
    ``class``: the shared class term (:class:`~spinectx.losses.classification.ClassLoss`) at the
    true peak cell. Computed in float32 whatever the output dtype.

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
        heatmap_weight, class_weight: loss weights.
    """

    codec_class = HeatmapCodec

    def __init__(self, groups: Sequence[int], heatmap_weight: float = 1.0, class_weight: float = 0.1):
        super().__init__()
        self.classification = ClassLoss(groups)
        self.heatmap_weight = float(heatmap_weight)
        self.class_weight = float(class_weight)

    def forward(
        self, output: torch.Tensor, targets: HeatmapTargets, labels: torch.Tensor, codec: HeatmapCodec,
        tags: torch.Tensor | None = None, class_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """output [B, (1 + n)·K, h, w]; labels [B, K] abnormal in {0, 1} or NaN; tags [B, K, C]
        multi-hot class tags (needed by the multiclass head); class_logits [B, K, n_logits]
        from a context head, replacing the output's class blocks (None: read at the true cell) →
        dict of scalar losses (``loss`` is the weighted total; the components are detached)."""
        heatmap = codec.split(output)[0].float()
        valid = targets.valid  # [B, K]
        n_valid = valid.sum().clamp(min=1)
        se = (heatmap - targets.heatmap.float()) ** 2
        loss_heatmap = torch.where(valid, se.sum((-2, -1)), torch.zeros_like(se[..., 0, 0])).sum() / n_valid

        loss_class = self.classification(output, codec, targets.peak_index, labels, valid, tags, class_logits)

        total = self.heatmap_weight * loss_heatmap + self.class_weight * loss_class
        return {"loss": total, "heatmap": loss_heatmap.detach(), "class": loss_class.detach()}
