"""Integral (soft-argmax) regression loss: L1 on the expected coordinates + the shared class term."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spinectx.codecs.integral import IntegralCodec, IntegralTargets
from spinectx.losses.classification import ClassLoss


class IntegralLoss(nn.Module):
    """Loss of the integral-regression head (Qin et al. 2020, arXiv:2001.00170).

    ``coord``: L1 distance between the soft-argmax point (:meth:`IntegralCodec.expectation` of the
    heatmap logits) and the true point, in cells, summed over x and y and averaged over
    annotated, in-frame landmarks. ``class``:
    :class:`~spinectx.losses.classification.ClassLoss` (the shared class term) at the *true*
    cell (``targets.peak_index``), not at the predicted one. Computed in float32 whatever the
    output dtype.

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
        coord_weight, class_weight: loss weights.
    """

    codec_class = IntegralCodec

    def __init__(self, groups: Sequence[int], coord_weight: float = 1.0, class_weight: float = 0.1):
        super().__init__()
        self.classification = ClassLoss(groups)
        self.coord_weight = float(coord_weight)
        self.class_weight = float(class_weight)

    def forward(
        self, output: torch.Tensor, targets: IntegralTargets, labels: torch.Tensor, codec: IntegralCodec,
        tags: torch.Tensor | None = None, class_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """output [B, (1 + n)·K, h, w]; labels [B, K] abnormal in {0, 1} or NaN; tags [B, K, C]
        multi-hot class tags (needed by the multiclass head); class_logits [B, K, n_logits]
        from a context head, replacing the output's class blocks (None: read at the true cell) →
        dict of scalar losses (``loss`` is the weighted total; the components are detached)."""
        logits = codec.split(output)[0].float()
        valid = targets.valid  # [B, K]
        n_valid = valid.sum().clamp(min=1)
        coords, _ = codec.expectation(logits)  # [B, K, 2] cells
        err = (coords - targets.coords.float()).abs().sum(-1)  # [B, K]
        loss_coord = torch.where(valid, err, torch.zeros_like(err)).sum() / n_valid

        loss_class = self.classification(output, codec, targets.peak_index, labels, valid, tags, class_logits)

        total = self.coord_weight * loss_coord + self.class_weight * loss_class
        return {"loss": total, "coord": loss_coord.detach(), "class": loss_class.detach()}
