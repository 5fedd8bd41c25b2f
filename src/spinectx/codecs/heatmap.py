"""Plain heatmap codec: one Gaussian heatmap per landmark, decoded by argmax + sub-cell refinement.

Grid and keypoint conventions: :mod:`spinectx.codecs.base`. The target Gaussian is sampled at the
cell centres and centred on the continuous position of the point, so its peak value is 1 only
when the point sits exactly on a cell centre.

Network output layout: [B, (1 + n)·K, h, w] = (heatmap K | n blocks of class logits K), n =
``classes.n_logits`` (1 for the binary head).

Decoding fits a parabola per axis to ``log(heatmap)`` at the argmax cell and its two neighbours;
the log of a Gaussian is a parabola, so the refinement is exact for a Gaussian-shaped map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spinectx.codecs.base import Decoded, KeypointCodec
from spinectx.codecs.classes import ClassCodec


@dataclass
class HeatmapTargets:
    """Training targets for a batch: ``heatmap`` [B, K, h, w] (Gaussian of peak 1 at the point,
    zero for invalid landmarks), ``peak_index`` [B, K] (flat index of the cell containing the
    point) and ``valid`` [B, K] bool (landmark annotated and finite)."""

    heatmap: torch.Tensor
    peak_index: torch.Tensor
    valid: torch.Tensor


class HeatmapCodec(KeypointCodec):
    """Encode keypoints → Gaussian heatmaps; decode heatmaps → keypoints + scores.

    Args:
        stride: input pixels per grid cell. The model sets it; configs do not.
        sigma: Gaussian sigma of the target heatmap, in *input pixels* (``sigma / stride`` cells).
        classes: the class head (set by the model; default binary).
    """

    loc_blocks = 1
    channels_per_landmark = 2
    #: floor applied to heatmap values before the log of the sub-cell refinement
    log_eps: float = 1e-10

    def __init__(self, stride: int = 4, sigma: float = 8.0, classes: ClassCodec | None = None):
        super().__init__(stride, classes)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"HeatmapCodec(stride={self.stride}, sigma={self.sigma})"

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int]) -> HeatmapTargets:
        """Keypoints [B, K, 2] (x, y input px; NaN allowed where not visible), visible [B, K] bool
        → :class:`HeatmapTargets` on a grid of ``image_hw / stride``."""
        h, w = self.grid_size(image_hw)
        device = keypoints.device
        valid, pts = self.valid_points(keypoints, visible)
        # distances in input pixels from each cell centre (= sample position) to the point
        dy = pts[..., 1, None] - self.cell_centres(h, device)  # [B, K, h]
        dx = pts[..., 0, None] - self.cell_centres(w, device)  # [B, K, w]
        gauss_y = torch.exp(-0.5 * (dy / self.sigma) ** 2)
        gauss_x = torch.exp(-0.5 * (dx / self.sigma) ** 2)
        heatmap = gauss_y[..., :, None] * gauss_x[..., None, :]  # [B, K, h, w]
        heatmap = heatmap * valid[..., None, None]
        return HeatmapTargets(heatmap=heatmap, peak_index=self.peak_index(pts, (h, w)), valid=valid)

    def _refine(self, logmap: torch.Tensor, row: torch.Tensor, col: torch.Tensor, axis: int) -> torch.Tensor:
        """Sub-cell shift [B, K] along ``axis`` (0 = rows, 1 = columns) of the parabola through
        ``logmap`` [B, K, h, w] at (row, col) and its two neighbours on that axis; 0 where a
        neighbour is off the grid or the parabola does not open downwards."""
        h, w = logmap.shape[-2:]
        n = h if axis == 0 else w
        pos = row if axis == 0 else col
        prev_pos, next_pos = (pos - 1).clamp(0, n - 1), (pos + 1).clamp(0, n - 1)

        def at(p: torch.Tensor) -> torch.Tensor:
            idx = p * w + col if axis == 0 else row * w + p
            return self.gather(logmap, idx)

        l_prev, l_mid, l_next = at(prev_pos), at(pos), at(next_pos)
        curvature = l_prev - 2 * l_mid + l_next
        inside = (pos > 0) & (pos < n - 1)
        ok = inside & (curvature < 0)
        shift = 0.5 * (l_prev - l_next) / torch.where(ok, curvature, torch.ones_like(curvature))
        return torch.where(ok, shift.clamp(-1.0, 1.0), torch.zeros_like(shift))

    def decode(self, output: torch.Tensor) -> Decoded:
        """Network output [B, (1 + n)·K, h, w] → :class:`Decoded`: argmax cell refined by a per-axis
        parabola on the log-heatmap; ``score`` = heatmap at the argmax cell; ``prob`` and
        ``class_prob`` from the class logits at the argmax cell."""
        heatmap = self.split(output)[0].float()
        w = heatmap.shape[-1]
        score, idx = heatmap.flatten(2).max(-1)  # [B, K]
        row, col = idx // w, idx % w
        logmap = heatmap.clamp(min=self.log_eps).log()
        u = col.float() + self._refine(logmap, row, col, axis=1)
        v = row.float() + self._refine(logmap, row, col, axis=0)
        keypoints = self.to_pixels(torch.stack([u, v], -1))
        prob, class_prob = self.decode_classes(output, idx)
        return Decoded(keypoints=keypoints, score=score, prob=prob, class_prob=class_prob)

    def targets_as_output(self, targets: HeatmapTargets, class_logit: torch.Tensor | None = None) -> torch.Tensor:
        """Pack targets in the network-output layout [B, (1 + n)·K, h, w] (for round-trip checks);
        ``class_logit`` [B, n·K, h, w] defaults to zeros."""
        logit = self.class_block(targets.heatmap, class_logit)
        return torch.cat([targets.heatmap, logit], dim=1)
