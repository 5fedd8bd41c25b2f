"""Integral (soft-argmax) regression loss: L1 on the expected coordinates + the shared
class-balanced BCE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spinectx.codecs.integral import IntegralCodec, IntegralTargets
from spinectx.losses.classification import GroupBalancedBCE


class IntegralLoss(nn.Module):
    """Loss of the integral-regression head (Qin et al. 2020, arXiv:2001.00170).

    ``coord``: L1 distance between the soft-argmax point (:meth:`IntegralCodec.expectation` of the
    heatmap logits) and the true point, in cells, summed over x and y and averaged over
    annotated, in-frame landmarks. ``class``:
    :class:`~spinectx.losses.classification.GroupBalancedBCE` of the class logit at the *true*
    cell (``targets.peak_index``), not at the predicted one. Computed in float32 whatever the
    output dtype.

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
        coord_weight, class_weight: loss weights.
    """

    codec_class = IntegralCodec

    def __init__(self, groups: Sequence[int], coord_weight: float = 1.0, class_weight: float = 0.1):
        super().__init__()
        self.classification = GroupBalancedBCE(groups)
        self.coord_weight = float(coord_weight)
        self.class_weight = float(class_weight)

    def forward(
        self, output: torch.Tensor, targets: IntegralTargets, labels: torch.Tensor, codec: IntegralCodec
    ) -> dict[str, torch.Tensor]:
        """output [B, 2K, h, w]; labels [B, K] abnormal in {0, 1} or NaN → dict of scalar losses
        (``loss`` is the weighted total; the components are detached)."""
        logits, class_logit = (t.float() for t in codec.split(output))
        valid = targets.valid  # [B, K]
        n_valid = valid.sum().clamp(min=1)
        coords, _ = codec.expectation(logits)  # [B, K, 2] cells
        err = (coords - targets.coords.float()).abs().sum(-1)  # [B, K]
        loss_coord = torch.where(valid, err, torch.zeros_like(err)).sum() / n_valid

        loss_class = self.classification(class_logit, targets.peak_index, labels, valid)

        total = self.coord_weight * loss_coord + self.class_weight * loss_class
        return {"loss": total, "coord": loss_coord.detach(), "class": loss_class.detach()}
