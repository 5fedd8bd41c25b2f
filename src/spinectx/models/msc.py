"""Multi-scale context (MSC) neck of CCF-Net (SPEC §3).

MSC = dense atrous block → residual multi-kernel pooling → ResNet bottleneck back to C channels.
All blocks keep the spatial size; input and output are [B, C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseAtrousBlock(nn.Module):
    """Four branches of chained 3×3 atrous convs (dilations 1, 3, 5), summed with the input.

    Branches: d1; d3→1×1; d1→d3→1×1; d1→d3→d5→1×1 (one shared 1×1 conv), each ReLU'd.
    The three 3×3 convs are shared between branches. [B, C, H, W] → [B, C, H, W].

    ``share_branches`` (default True) computes each chained intermediate once and reuses it;
    False recomputes every branch from the input, as the released code does. Both give the same
    output; the released form costs 66·C² multiply-accumulates per position instead of 39·C², and
    the paper's MAC counts include that (see :mod:`spinectx.models.complexity`).
    """

    def __init__(self, channels: int, share_branches: bool = True):
        super().__init__()
        self.share_branches = bool(share_branches)
        self.dil1 = nn.Conv2d(channels, channels, 3, padding=1, dilation=1)
        self.dil3 = nn.Conv2d(channels, channels, 3, padding=3, dilation=3)
        self.dil5 = nn.Conv2d(channels, channels, 3, padding=5, dilation=5)
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.share_branches:
            return x + sum(F.relu(b) for b in self._branches_unshared(x))
        d1 = self.dil1(x)
        d13 = self.dil3(d1)
        b1 = F.relu(d1)
        b2 = F.relu(self.mix(self.dil3(x)))
        b3 = F.relu(self.mix(d13))
        b4 = F.relu(self.mix(self.dil5(d13)))
        return x + b1 + b2 + b3 + b4

    def _branches_unshared(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four pre-activation branches, each computed from the input on its own."""
        return [
            self.dil1(x),
            self.mix(self.dil3(x)),
            self.mix(self.dil3(self.dil1(x))),
            self.mix(self.dil5(self.dil3(self.dil1(x)))),
        ]


class MultiKernelPooling(nn.Module):
    """Residual multi-kernel pooling: max-pool at several sizes → shared 1×1 conv to 1 channel →
    upsample → concatenated to the input. [B, C, H, W] → [B, C + len(kernels), H, W]."""

    def __init__(self, channels: int, kernels: tuple[int, ...] = (2, 4, 8)):
        super().__init__()
        self.kernels = tuple(int(k) for k in kernels)
        self.squeeze = nn.Conv2d(channels, 1, 1)

    @property
    def extra_channels(self) -> int:
        return len(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        maps = [x]
        for k in self.kernels:
            pooled = F.max_pool2d(x, kernel_size=k, stride=k, ceil_mode=True)
            maps.append(F.interpolate(self.squeeze(pooled), size=size, mode="bilinear", align_corners=False))
        return torch.cat(maps, dim=1)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1×1 → 3×3 → 1×1, BN, ReLU) with a projected shortcut.
    [B, in_channels, H, W] → [B, out_channels, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4):
        super().__init__()
        mid = out_channels // expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class MSC(nn.Module):
    """Multi-scale context module: DenseAtrousBlock → MultiKernelPooling → Bottleneck.
    [B, C, H, W] → [B, C, H, W]."""

    def __init__(self, channels: int = 256, pool_kernels: tuple[int, ...] = (2, 4, 8)):
        super().__init__()
        self.dac = DenseAtrousBlock(channels)
        self.rmp = MultiKernelPooling(channels, pool_kernels)
        self.fuse = Bottleneck(channels + self.rmp.extra_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.rmp(self.dac(x)))
