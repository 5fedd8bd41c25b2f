"""Coarse-to-fine keypoint codec of CCF-Net (SPEC §3): grid heatmap + in-cell offsets.

Conventions (used across spinectx):
- keypoints are (x, y) = (column, row) in *input pixels*, pixel centres at integer coordinates;
- cell (i, j) of a stride-``s`` grid covers input pixels [j·s, (j+1)·s) × [i·s, (i+1)·s), so its
  centre is at ``(j·s + (s−1)/2, i·s + (s−1)/2)``;
- offsets are ``(point − cell centre) / s``, i.e. in cells.

Network output layout: [B, 4K, h, w] = (heatmap K | y-offset K | x-offset K | class logit K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


@dataclass
class Decoded:
    """Decoded predictions: ``keypoints`` [B, K, 2] (x, y) input pixels, ``score`` [B, K] heatmap
    value at the chosen cell, ``prob`` [B, K] P(abnormal) from the class logit at that cell."""

    keypoints: torch.Tensor
    score: torch.Tensor
    prob: torch.Tensor


class CoarseFineCodec:
    """Encode keypoints → grid targets; decode network outputs → keypoints + scores.

    Args:
        stride: input pixels per grid cell (16 for CCF-Net with MSC, 32 without). The model sets
            it; configs do not.
        sigma: Gaussian sigma of the coarse heatmap, in input pixels (SPEC: 16).
        offset_threshold: offsets are supervised where the target heatmap is ≥ this fraction of
            its peak (SPEC: 0.6).
    """

    channels_per_landmark = 4

    def __init__(self, stride: int = 16, sigma: float = 16.0, offset_threshold: float = 0.6):
        if stride <= 0 or sigma <= 0:
            raise ValueError(f"stride and sigma must be positive, got stride={stride}, sigma={sigma}")
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.offset_threshold = float(offset_threshold)

    def __repr__(self) -> str:
        return f"CoarseFineCodec(stride={self.stride}, sigma={self.sigma}, offset_threshold={self.offset_threshold})"

    def grid_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = image_hw
        if h % self.stride or w % self.stride:
            raise ValueError(f"image size {h}×{w} is not a multiple of the stride {self.stride}")
        return h // self.stride, w // self.stride

    def cell_centres(self, n: int, device=None) -> torch.Tensor:
        """Input-pixel coordinate of the centres of ``n`` cells along one axis: [n]."""
        return torch.arange(n, device=device, dtype=torch.float32) * self.stride + (self.stride - 1) / 2

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int]) -> CoarseFineTargets:
        """Keypoints [B, K, 2] (x, y input px; NaN allowed where not visible), visible [B, K] bool
        → :class:`CoarseFineTargets` on a grid of ``image_hw / stride``."""
        h, w = self.grid_size(image_hw)
        device = keypoints.device
        valid = visible.bool() & torch.isfinite(keypoints).all(-1)
        pts = torch.where(valid[..., None], keypoints.float(), torch.zeros_like(keypoints, dtype=torch.float32))
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
        row = (pts[..., 1] // self.stride).clamp(0, h - 1).long()
        col = (pts[..., 0] // self.stride).clamp(0, w - 1).long()
        return CoarseFineTargets(
            heatmap=heatmap,
            offset_y=offset_y.contiguous(),
            offset_x=offset_x.contiguous(),
            offset_mask=offset_mask,
            peak_index=row * w + col,
            valid=valid,
        )

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, 4K, h, w] → (heatmap, offset_y, offset_x, class_logit), each [B, K, h, w]."""
        if output.shape[1] % self.channels_per_landmark:
            raise ValueError(f"output has {output.shape[1]} channels, not a multiple of {self.channels_per_landmark}")
        return tuple(output.chunk(self.channels_per_landmark, dim=1))  # type: ignore[return-value]

    def decode(self, output: torch.Tensor) -> Decoded:
        """Network output [B, 4K, h, w] → :class:`Decoded` (argmax cell + its offsets)."""
        heatmap, off_y, off_x, logit = (t.float() for t in self.split(output))
        b, k, h, w = heatmap.shape
        score, idx = heatmap.flatten(2).max(-1)  # [B, K]
        row, col = idx // w, idx % w

        def at_peak(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(2).gather(-1, idx[..., None])[..., 0]

        x = col.float() * self.stride + (self.stride - 1) / 2 + at_peak(off_x) * self.stride
        y = row.float() * self.stride + (self.stride - 1) / 2 + at_peak(off_y) * self.stride
        return Decoded(keypoints=torch.stack([x, y], -1), score=score, prob=torch.sigmoid(at_peak(logit)))

    def targets_as_output(self, targets: CoarseFineTargets, class_logit: torch.Tensor | None = None) -> torch.Tensor:
        """Pack targets in the network-output layout [B, 4K, h, w] (for round-trip checks)."""
        logit = torch.zeros_like(targets.heatmap) if class_logit is None else class_logit
        return torch.cat([targets.heatmap, targets.offset_y, targets.offset_x, logit], dim=1)
