"""SimpleBaseline (Xiao et al. 2018): ResNet + transposed convolutions → dense stride-4 maps.

Without MSC: full ResNet (stride 32) → three 4×4 stride-2 deconvolutions of 256 channels
(BN, ReLU) → 1×1 conv. With MSC (the paper's "-MSC" variant, derived in ``docs/models.md``): ResNet
cut after stage 3 (stride 16) → MSC at the stage's own width → two deconvolutions → 1×1 conv.
Either way the output is at stride 4.
"""

from __future__ import annotations

import torch
from torch import nn

from spinectx.models.backbones import backbone_channels, create_backbone
from spinectx.models.base import LandmarkNet, init_output_conv
from spinectx.models.msc import MSC


def deconv_stack(in_channels: int, channels: int, count: int) -> nn.Sequential:
    """``count`` × (4×4 transposed conv, stride 2 → BN → ReLU); each doubles H and W.
    [B, in_channels, H, W] → [B, channels, H·2^count, W·2^count]."""
    layers: list[nn.Module] = []
    for i in range(count):
        layers += [
            nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SimpleBaseline(LandmarkNet):
    """Backbone (→ MSC) → deconvolutions → 1×1 conv to ``channels_per_landmark``·K maps at stride 4.

    Input [B, 1|3, H, W] in ~[0, 1] → output [B, channels_per_landmark·K, H/4, W/4] (default 2
    channels per landmark: heatmap, class logit — the :class:`~spinectx.codecs.HeatmapCodec` layout).
    """

    stride = 4

    def __init__(
        self,
        num_landmarks: int,
        channels_per_landmark: int = 2,
        backbone: str = "resnet18",
        msc: bool = False,
        deconv_channels: int = 256,
        pool_kernels: tuple[int, ...] = (2, 4, 8),
        pretrained: bool = False,
        pretrained_path: str | None = None,
    ):
        super().__init__(num_landmarks, channels_per_landmark)
        backbone_stride = 16 if msc else 32
        self.input_multiple = backbone_stride
        self.backbone = create_backbone(backbone, backbone_stride, pretrained, pretrained_path)
        channels = backbone_channels(self.backbone)
        self.neck = MSC(channels, tuple(pool_kernels)) if msc else nn.Identity()
        self.deconv = deconv_stack(channels, deconv_channels, {16: 2, 32: 3}[backbone_stride])
        self.feature_channels = int(deconv_channels)  # the deconv output, stride 4
        self.head = init_output_conv(nn.Conv2d(deconv_channels, self.out_channels, 1))

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] → upsampled features [B, deconv_channels, H/4, W/4]."""
        return self.deconv(self.neck(self.backbone(self.standardise(image))[-1]))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)
