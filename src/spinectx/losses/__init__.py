"""Losses, one per codec family; every one adds the shared classification term."""

from spinectx.losses.classification import GroupBalancedBCE, balanced_bce
from spinectx.losses.coarse_fine import CoarseFineLoss
from spinectx.losses.heatmap import HeatmapLoss
from spinectx.losses.integral import IntegralLoss

__all__ = ["CoarseFineLoss", "GroupBalancedBCE", "HeatmapLoss", "IntegralLoss", "balanced_bce"]
