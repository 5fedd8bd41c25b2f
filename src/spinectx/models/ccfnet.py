"""CCF-Net: coarse-to-fine landmark localisation + classification (ISBI 2022, SPEC §3)."""

from __future__ import annotations

import torch
from torch import nn

from spinectx.models.backbones import backbone_channels, create_backbone
from spinectx.models.base import LandmarkNet
from spinectx.models.msc import MSC


class CCFNet(LandmarkNet):
    """Backbone → 1×1 conv → MSC → 1×1 conv to ``channels_per_landmark``·K channels on a coarse grid.

    With ``msc=True`` the backbone is cut after stage 3 (stride 16) and followed by a 1×1 conv to
    ``neck_channels`` and the MSC neck; with ``msc=False`` the full backbone (stride 32) feeds the
    output conv directly.

    Input: [B, 1 or 3, H, W] float, intensities ~[0, 1]. Output: [B, 4K, H/s, W/s] with the default
    4 channels per landmark (heatmap, y-offset, x-offset, class logit: the
    :class:`~spinectx.codecs.coarse_fine.CoarseFineCodec` layout with the binary head); another
    codec or the multiclass head sets another count (e.g. 3 + 5 for TianChi's multiclass head).

    Features for a context head (``feature_channels``): the neck output, ``neck_channels`` at
    stride 16 with MSC, the last backbone stage (512 for ResNet-18) at stride 32 without.
    """

    def __init__(
        self,
        num_landmarks: int,
        channels_per_landmark: int = 4,
        backbone: str = "resnet18",
        msc: bool = True,
        neck_channels: int = 256,
        pool_kernels: tuple[int, ...] = (2, 4, 8),
        pretrained: bool = False,
        pretrained_path: str | None = None,
    ):
        super().__init__(num_landmarks, channels_per_landmark)
        self.stride = 16 if msc else 32
        self.backbone = create_backbone(backbone, self.stride, pretrained, pretrained_path)
        channels = backbone_channels(self.backbone)
        if msc:
            self.neck = nn.Sequential(nn.Conv2d(channels, neck_channels, 1), MSC(neck_channels, tuple(pool_kernels)))
            channels = neck_channels
        else:
            self.neck = nn.Identity()
        self.feature_channels = channels
        self.head = nn.Conv2d(channels, self.out_channels, 1)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] → neck features [B, C, H/s, W/s]."""
        return self.neck(self.backbone(self.standardise(image))[-1])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)
