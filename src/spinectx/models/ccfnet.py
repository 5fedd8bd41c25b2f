"""CCF-Net: coarse-to-fine landmark localisation + classification (ISBI 2022, SPEC §3)."""

from __future__ import annotations

import torch
from torch import nn

from spinectx.models.backbones import backbone_channels, create_backbone, to_three_channels
from spinectx.models.msc import MSC

# ImageNet statistics: inputs arrive in ~[0, 1] and are standardised inside the model so that
# pretrained weights see what they were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CCFNet(nn.Module):
    """Backbone → 1×1 conv → MSC → 1×1 conv to 4·K channels on a coarse grid.

    With ``msc=True`` the backbone is cut after stage 3 (stride 16) and followed by a 1×1 conv to
    ``neck_channels`` and the MSC neck; with ``msc=False`` the full backbone (stride 32) feeds the
    output conv directly.

    Input: [B, 1 or 3, H, W] float, intensities ~[0, 1]. Output: [B, 4K, H/s, W/s] with channel
    blocks (heatmap K, y-offset K, x-offset K, class logit K) in the order the
    :class:`~spinectx.codecs.coarse_fine.CoarseFineCodec` decodes.
    """

    def __init__(
        self,
        num_landmarks: int,
        backbone: str = "resnet18",
        msc: bool = True,
        neck_channels: int = 256,
        pool_kernels: tuple[int, ...] = (2, 4, 8),
        pretrained: bool = False,
        pretrained_path: str | None = None,
    ):
        super().__init__()
        self.num_landmarks = int(num_landmarks)
        self.stride = 16 if msc else 32
        self.backbone = create_backbone(backbone, self.stride, pretrained, pretrained_path)
        channels = backbone_channels(self.backbone)
        if msc:
            self.neck = nn.Sequential(nn.Conv2d(channels, neck_channels, 1), MSC(neck_channels, tuple(pool_kernels)))
            channels = neck_channels
        else:
            self.neck = nn.Identity()
        self.head = nn.Conv2d(channels, 4 * self.num_landmarks, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] → neck features [B, C, H/s, W/s]."""
        x = (to_three_channels(image) - self.mean) / self.std
        return self.neck(self.backbone(x)[-1])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))
