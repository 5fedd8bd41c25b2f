"""Losses, one per codec family; every one adds the shared classification term (binary or multiclass head)."""

from spinectx.losses.classification import ClassLoss, GroupBalancedBCE, balanced_bce, class_balanced_ce
from spinectx.losses.coarse_fine import CoarseFineLoss
from spinectx.losses.heatmap import HeatmapLoss
from spinectx.losses.integral import IntegralLoss

__all__ = ["ClassLoss", "CoarseFineLoss", "GroupBalancedBCE", "HeatmapLoss", "IntegralLoss", "balanced_bce",
           "class_balanced_ce"]
