"""Losses, one per head family."""

from spinectx.losses.coarse_fine import CoarseFineLoss, balanced_bce

__all__ = ["CoarseFineLoss", "balanced_bce"]
