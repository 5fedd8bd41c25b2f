"""What every landmark network shares: input handling and the output contract.

Input: [B, 1 or 3, H, W] float, intensities ~[0, 1] (grayscale is repeated to 3 channels and
standardised with ImageNet statistics inside the model, so pretrained weights see what they were
trained on). Output: [B, channels_per_landmark · K, H/stride, W/stride] in the layout of the
model's codec (:mod:`spinectx.codecs.base`): first block of K = localisation map, the last
``n_class_logits`` blocks of K = class logits (1 block for the binary head, one per class logit for
the multiclass head). A network only needs the block count (``channels_per_landmark``).
"""

from __future__ import annotations

import torch
from torch import nn

from spinectx.models.backbones import to_three_channels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def init_output_conv(conv: nn.Conv2d, std: float = 1e-3) -> nn.Conv2d:
    """Small output weights and zero bias (Xiao et al. 2018): dense maps start near zero, so the
    first steps are not spent unlearning large random heatmaps."""
    nn.init.normal_(conv.weight, std=std)
    nn.init.zeros_(conv.bias)
    return conv


class LandmarkNet(nn.Module):
    """Base class of the networks: subclasses set ``stride`` and ``feature_channels`` and implement
    ``forward_features`` (standardised image → features) and ``forward_head`` (features → output).

    ``feature_channels`` is C of the feature map :meth:`forward_with_features` returns beside the
    output (the map a :class:`~spinectx.models.context.ContextHead` samples at the landmarks); a
    subclass whose ``forward_features`` is not one such map (SCN) overrides that method.
    """

    stride: int
    feature_channels: int
    input_multiple: int | None = None  # input sides must divide by this (default: the stride)

    def __init__(self, num_landmarks: int, channels_per_landmark: int):
        super().__init__()
        if num_landmarks <= 0 or channels_per_landmark <= 0:
            raise ValueError(
                f"num_landmarks and channels_per_landmark must be positive, got {num_landmarks}, {channels_per_landmark}"
            )
        self.num_landmarks = int(num_landmarks)
        self.channels_per_landmark = int(channels_per_landmark)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.num_landmarks * self.channels_per_landmark

    def standardise(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] in ~[0, 1] → [B, 3, H, W] ImageNet-standardised."""
        return (to_three_channels(image) - self.mean) / self.std

    def forward_features(self, image: torch.Tensor):
        raise NotImplementedError

    def forward_head(self, features) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image [B, 1|3, H, W] in ~[0, 1] → (output as :meth:`forward`, features
        [B, feature_channels, h, w]) from one pass. Default: ``forward_features`` is that map."""
        features = self.forward_features(image)
        return self.forward_head(features), features

    def forward(self, image: torch.Tensor, return_features: bool = False):
        """[B, 1|3, H, W] → [B, channels_per_landmark·K, H/stride, W/stride]; with
        ``return_features`` the pair of :meth:`forward_with_features` instead.

        Raises:
            ValueError: H or W not a multiple of the network's deepest stride.
        """
        multiple = self.input_multiple or self.stride
        if image.shape[-2] % multiple or image.shape[-1] % multiple:
            raise ValueError(
                f"{type(self).__name__}: input size {tuple(image.shape[-2:])} is not a multiple of {multiple} "
                f"(its deepest stride)"
            )
        if return_features:
            return self.forward_with_features(image)
        return self.forward_head(self.forward_features(image))
