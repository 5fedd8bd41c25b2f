"""Spatial Configuration Net (Payer et al. 2019) on a ResNet, as sized in the paper's tables.

heatmap = local appearance × spatial configuration:
- local appearance: a :class:`SimpleBaseline` (same backbone, same MSC choice) giving dense
  stride-4 maps, all codec channels (heatmaps and class logits);
- spatial configuration: a second trunk, the :class:`CCFNet` trunk with one channel per landmark,
  giving one coarse heatmap per landmark at stride 16 (with MSC) or 32; its large receptive field
  (stride-2 7×7 stem, deep ResNet stages, dilated convs of the MSC) sees the whole spine. It is
  squashed to (0, 1) with a sigmoid, bilinearly upsampled to stride 4 and multiplies the local
  heatmaps (first K channels); every other block (offsets, all class-logit blocks of either class
  head) comes from the local branch alone, never multiplied.

Why this design: the published parameter and MAC counts equal SimpleBaseline + CCF-Net of the same
backbone to within 0.6 % (``docs/models.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spinectx.models.base import LandmarkNet
from spinectx.models.ccfnet import CCFNet
from spinectx.models.simplebaseline import SimpleBaseline


class SCN(LandmarkNet):
    """Input [B, 1|3, H, W] in ~[0, 1] → [B, channels_per_landmark·K, H/4, W/4]."""

    stride = 4

    def __init__(
        self,
        num_landmarks: int,
        channels_per_landmark: int = 2,
        backbone: str = "resnet18",
        msc: bool = False,
        pretrained: bool = False,
        pretrained_path: str | None = None,
    ):
        super().__init__(num_landmarks, channels_per_landmark)
        common = dict(backbone=backbone, msc=msc, pretrained=pretrained, pretrained_path=pretrained_path)
        self.local = SimpleBaseline(num_landmarks, channels_per_landmark, **common)
        self.spatial = CCFNet(num_landmarks, 1, **common)
        self.input_multiple = self.spatial.stride
        self.feature_channels = self.local.feature_channels  # the local branch's deconv features

    def _spatial_map(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Spatial-configuration map [B, K, *size] in (0, 1), upsampled bilinearly to ``size``."""
        spatial = torch.sigmoid(self.spatial(image))
        return F.interpolate(spatial, size=size, mode="bilinear", align_corners=False)

    def forward_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (local output [B, C·K, H/4, W/4], spatial-configuration map [B, K, H/4, W/4] in (0, 1))."""
        local = self.local(image)
        return local, self._spatial_map(image, local.shape[-2:])

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (output as :meth:`forward`, the local branch's features [B, feature_channels, H/4, W/4]:
        the appearance features its class logits are read from)."""
        features = self.local.forward_features(image)
        local = self.local.forward_head(features)
        return self.forward_head((local, self._spatial_map(image, local.shape[-2:]))), features

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        local, spatial = features
        k = self.num_landmarks
        return torch.cat([local[:, :k] * spatial, local[:, k:]], dim=1)
