"""Keypoint codecs: keypoints ⇄ training targets, one codec object per model."""

from spinectx.codecs.coarse_fine import CoarseFineCodec, CoarseFineTargets, Decoded

__all__ = ["CoarseFineCodec", "CoarseFineTargets", "Decoded"]
