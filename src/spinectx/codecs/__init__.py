"""Keypoint codecs: keypoints ⇄ training targets, one codec object per model."""

from spinectx.codecs.base import Decoded, KeypointCodec
from spinectx.codecs.classes import CLASS_HEADS, ClassCodec, ClassTargets
from spinectx.codecs.coarse_fine import CoarseFineCodec, CoarseFineTargets
from spinectx.codecs.heatmap import HeatmapCodec, HeatmapTargets
from spinectx.codecs.integral import IntegralCodec, IntegralTargets

__all__ = [
    "CLASS_HEADS",
    "ClassCodec",
    "ClassTargets",
    "CoarseFineCodec",
    "CoarseFineTargets",
    "Decoded",
    "HeatmapCodec",
    "HeatmapTargets",
    "IntegralCodec",
    "IntegralTargets",
    "KeypointCodec",
]
