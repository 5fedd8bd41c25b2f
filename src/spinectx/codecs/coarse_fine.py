"""Coarse-to-fine keypoint codec of CCF-Net (SPEC §3): grid heatmap + in-cell offsets.

Grid and keypoint conventions: :mod:`spinectx.codecs.base`. Offsets are
``(point − cell centre) / s``, i.e. in cells.

Network output layout: [B, (3 + n)·K, h, w] = (heatmap K | y-offset K | x-offset K | n blocks of class
logits K), n = ``classes.n_logits`` (1 for the binary head: [B, 4K, h, w], the paper's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spinectx.codecs.base import Decoded, KeypointCodec
from spinectx.codecs.classes import ClassCodec


@dataclass
class CoarseFineTargets:
    """Training targets for a batch; every tensor is [B, K, h, w] except ``peak_index`` [B, K]
    (flat index of the cell containing the point) and ``valid`` [B, K] (landmark inside the frame
    and annotated)."""

    heatmap: torch.Tensor
    offset_y: torch.Tensor
    offset_x: torch.Tensor
    offset_mask: torch.Tensor
    peak_index: torch.Tensor
    valid: torch.Tensor


class CoarseFineCodec(KeypointCodec):
    """Encode keypoints → grid targets; decode network outputs → keypoints + scores.

    Args:
        stride: input pixels per grid cell (16 for CCF-Net with MSC, 32 without). The model sets
            it; configs do not.
        sigma: Gaussian sigma of the coarse heatmap, in input pixels (SPEC: 16).
        offset_threshold: offsets are supervised where the target heatmap is ≥ this fraction of
            its peak (SPEC: 0.6).
        classes: the class head (set by the model; default binary).
    """

    loc_blocks = 3
    channels_per_landmark = 4

    def __init__(self, stride: int = 16, sigma: float = 16.0, offset_threshold: float = 0.6,
                 classes: ClassCodec | None = None):
        super().__init__(stride, classes)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        self.offset_threshold = float(offset_threshold)

    def __repr__(self) -> str:
        return f"CoarseFineCodec(stride={self.stride}, sigma={self.sigma}, offset_threshold={self.offset_threshold})"

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int]) -> CoarseFineTargets:
        """Keypoints [B, K, 2] (x, y input px; NaN allowed where not visible), visible [B, K] bool
        → :class:`CoarseFineTargets` on a grid of ``image_hw / stride``."""
        h, w = self.grid_size(image_hw)
        device = keypoints.device
        valid, pts = self.valid_points(keypoints, visible)
        cy = self.cell_centres(h, device)  # [h]
        cx = self.cell_centres(w, device)  # [w]
        dy = pts[..., 1, None] - cy  # [B, K, h] input px
        dx = pts[..., 0, None] - cx  # [B, K, w]
        gauss_y = torch.exp(-0.5 * (dy / self.sigma) ** 2)
        gauss_x = torch.exp(-0.5 * (dx / self.sigma) ** 2)
        heatmap = gauss_y[..., :, None] * gauss_x[..., None, :]  # [B, K, h, w], continuous peak 1
        heatmap = heatmap * valid[..., None, None]
        offset_y = (dy / self.stride)[..., :, None].expand(-1, -1, h, w)
        offset_x = (dx / self.stride)[..., None, :].expand(-1, -1, h, w)
        peak = heatmap.flatten(2).amax(-1, keepdim=True)[..., None]
        offset_mask = (heatmap >= self.offset_threshold * peak) & valid[..., None, None]
        return CoarseFineTargets(
            heatmap=heatmap,
            offset_y=offset_y.contiguous(),
            offset_x=offset_x.contiguous(),
            offset_mask=offset_mask,
            peak_index=self.peak_index(pts, (h, w)),
            valid=valid,
        )

    def decode(self, output: torch.Tensor) -> Decoded:
        """Network output [B, (3 + n)·K, h, w] → :class:`Decoded` (argmax cell + its offsets; class
        probabilities from the class logits at that cell)."""
        heatmap, off_y, off_x = (t.float() for t in self.split(output)[:3])
        b, k, h, w = heatmap.shape
        score, idx = heatmap.flatten(2).max(-1)  # [B, K]
        row, col = idx // w, idx % w
        x = self.to_pixels(col.float() + self.gather(off_x, idx))
        y = self.to_pixels(row.float() + self.gather(off_y, idx))
        prob, class_prob = self.decode_classes(output, idx)
        return Decoded(keypoints=torch.stack([x, y], -1), score=score, prob=prob, class_prob=class_prob)

    def targets_as_output(self, targets: CoarseFineTargets, class_logit: torch.Tensor | None = None) -> torch.Tensor:
        """Pack targets in the network-output layout [B, (3 + n)·K, h, w] (for round-trip checks);
        ``class_logit`` [B, n·K, h, w] defaults to zeros."""
        logit = self.class_block(targets.heatmap, class_logit)
        return torch.cat([targets.heatmap, targets.offset_y, targets.offset_x, logit], dim=1)
