"""HRNet-W32 (Sun et al. 2019) pose-style: the stride-4 branch of timm's ``hrnet_w32`` → 1×1 conv."""

from __future__ import annotations

import torch
from torch import nn

from spinectx.models.backbones import backbone_channels, create_backbone
from spinectx.models.base import LandmarkNet, init_output_conv


def keep_highest_resolution_only(backbone: nn.Module) -> None:
    """Make the last HRNet module fuse into the stride-4 branch only (as pose HRNet does), so the
    lower-resolution outputs that the head never reads are not computed."""
    last = backbone.stage4[-1]
    last.fuse_layers = last.fuse_layers[:1]
    last.multi_scale_output = False


class HRNet(LandmarkNet):
    """HRNet backbone (stride-4 branch, 32 channels for W32) → 1×1 conv.

    Input [B, 1|3, H, W] in ~[0, 1] → [B, channels_per_landmark·K, H/4, W/4]. ``msc`` must be
    False (the paper has no HRNet-MSC row); it is accepted so that every model takes the same keys.
    """

    stride = 4
    input_multiple = 32  # its lowest-resolution branch

    def __init__(
        self,
        num_landmarks: int,
        channels_per_landmark: int = 2,
        backbone: str = "hrnet_w32",
        msc: bool = False,
        pretrained: bool = False,
        pretrained_path: str | None = None,
    ):
        super().__init__(num_landmarks, channels_per_landmark)
        if msc:
            raise ValueError("HRNet has no MSC variant: use model.msc=false")
        if not backbone.startswith("hrnet"):
            raise ValueError(f"HRNet needs an hrnet_* backbone, got {backbone!r}")
        self.backbone = create_backbone(backbone, 4, pretrained, pretrained_path, feature_location="")
        keep_highest_resolution_only(self.backbone)
        self.feature_channels = backbone_channels(self.backbone)  # the stride-4 branch (32 for W32)
        self.head = init_output_conv(nn.Conv2d(self.feature_channels, self.out_channels, 1))

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] → stride-4 features [B, 32, H/4, W/4]."""
        return self.backbone(self.standardise(image))[-1]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)
