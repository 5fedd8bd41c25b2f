"""Integral (soft-argmax) regression codec (Qin et al. 2020, arXiv:2001.00170).

Grid and keypoint conventions: :mod:`spinectx.codecs.base`. The network predicts heatmap
*logits*; a spatial softmax of ``beta · logits`` turns them into a probability map whose
expectation over the cell positions is the predicted point, in cells (differentiable, so the loss
supervises coordinates directly).

Network output layout: [B, (1 + n)·K, h, w] = (heatmap logits K | n blocks of class logits K), n =
``classes.n_logits`` (1 for the binary head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spinectx.codecs.base import Decoded, KeypointCodec
from spinectx.codecs.classes import ClassCodec


@dataclass
class IntegralTargets:
    """Training targets for a batch: ``coords`` [B, K, 2] (x, y) of each point in output-grid
    cells (zero for invalid landmarks), ``valid`` [B, K] bool (annotated and finite) and
    ``peak_index`` [B, K] (flat index of the cell containing the point; where the class logit is
    supervised). ``grid_hw`` is the (h, w) of the output grid, kept so that
    :meth:`IntegralCodec.targets_as_output` can rebuild a map from coordinates alone."""

    coords: torch.Tensor
    valid: torch.Tensor
    peak_index: torch.Tensor
    grid_hw: tuple[int, int] | None = None


class IntegralCodec(KeypointCodec):
    """Encode keypoints → grid coordinates; decode heatmap logits → soft-argmax keypoints.

    Args:
        stride: input pixels per grid cell. The model sets it; configs do not.
        sigma: in *input pixels*; only used by :meth:`targets_as_output`, which builds the
            log of a normalised Gaussian of ``sigma / stride`` cells (training supervises the
            coordinates only, so the shape of the predicted map is left free).
        beta: multiplies the logits before the spatial softmax (a temperature; larger is sharper).
        classes: the class head (set by the model; default binary).
    """

    loc_blocks = 1
    channels_per_landmark = 2

    def __init__(self, stride: int = 4, sigma: float = 8.0, beta: float = 1.0, classes: ClassCodec | None = None):
        super().__init__(stride, classes)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.sigma = float(sigma)
        self.beta = float(beta)

    def __repr__(self) -> str:
        return f"IntegralCodec(stride={self.stride}, sigma={self.sigma}, beta={self.beta})"

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int]) -> IntegralTargets:
        """Keypoints [B, K, 2] (x, y input px; NaN allowed where not visible), visible [B, K] bool
        → :class:`IntegralTargets` on a grid of ``image_hw / stride``."""
        h, w = self.grid_size(image_hw)
        valid, pts = self.valid_points(keypoints, visible)
        coords = torch.where(valid[..., None], self.to_cells(pts), torch.zeros_like(pts))
        return IntegralTargets(coords=coords, valid=valid, peak_index=self.peak_index(pts, (h, w)), grid_hw=(h, w))

    def expectation(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits [B, K, h, w] → (coords [B, K, 2] (x, y) in cells, prob_map [B, K, h, w]):
        spatial softmax of ``beta · logits`` (in float32) and its expected cell position."""
        b, k, h, w = logits.shape
        prob = torch.softmax(self.beta * logits.float().flatten(2), dim=-1).view(b, k, h, w)
        cols = torch.arange(w, device=logits.device, dtype=torch.float32)
        rows = torch.arange(h, device=logits.device, dtype=torch.float32)
        x = (prob.sum(-2) * cols).sum(-1)  # marginal over columns
        y = (prob.sum(-1) * rows).sum(-1)  # marginal over rows
        return torch.stack([x, y], -1), prob

    def decode(self, output: torch.Tensor) -> Decoded:
        """Network output [B, (1 + n)·K, h, w] → :class:`Decoded`: soft-argmax point; ``score`` =
        peak of the probability map; ``prob`` and ``class_prob`` from the class logits at the cell
        nearest the point (clamped into the grid)."""
        logits = self.split(output)[0]
        coords, prob_map = self.expectation(logits)
        h, w = logits.shape[-2:]
        col = coords[..., 0].round().clamp(0, w - 1).long()
        row = coords[..., 1].round().clamp(0, h - 1).long()
        score = prob_map.flatten(2).amax(-1)
        prob, class_prob = self.decode_classes(output, row * w + col)
        return Decoded(keypoints=self.to_pixels(coords), score=score, prob=prob, class_prob=class_prob)

    def targets_as_output(self, targets: IntegralTargets, class_logit: torch.Tensor | None = None) -> torch.Tensor:
        """Pack targets in the network-output layout [B, 2K, h, w] (for round-trip checks): the log
        of a normalised Gaussian of ``sigma / stride`` cells centred at ``coords``, divided by
        ``beta`` so that the softmax in :meth:`decode` recovers that Gaussian; zeros for invalid
        landmarks; ``class_logit`` [B, n·K, h, w] defaults to zeros. The grid size is
        ``targets.grid_hw`` (set by :meth:`encode`), else that of ``class_logit``."""
        grid_hw = targets.grid_hw
        if grid_hw is None and class_logit is not None:
            grid_hw = tuple(class_logit.shape[-2:])
        if grid_hw is None:
            raise ValueError(
                "IntegralCodec.targets_as_output: targets.grid_hw is unset and no class_logit gives the grid size"
            )
        h, w = grid_hw
        device = targets.coords.device
        s = self.sigma / self.stride  # cells
        dx = targets.coords[..., 0, None] - torch.arange(w, device=device, dtype=torch.float32)  # [B, K, w]
        dy = targets.coords[..., 1, None] - torch.arange(h, device=device, dtype=torch.float32)  # [B, K, h]
        log_gx = -0.5 * (dx / s) ** 2
        log_gy = -0.5 * (dy / s) ** 2
        # separable normalisation: log Σ exp(a_i + b_j) = logsumexp(a) + logsumexp(b)
        log_gx = log_gx - log_gx.logsumexp(-1, keepdim=True)
        log_gy = log_gy - log_gy.logsumexp(-1, keepdim=True)
        log_g = log_gy[..., :, None] + log_gx[..., None, :]  # [B, K, h, w]
        heat = torch.where(targets.valid[..., None, None], log_g / self.beta, torch.zeros_like(log_g))
        return torch.cat([heat, self.class_block(heat, class_logit)], dim=1)
