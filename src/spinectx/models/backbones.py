"""timm backbones cut at a chosen stride (``features_only``)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

# feature index of each output stride in timm's ResNet / HRNet ``features_only`` wrappers
_STRIDE_TO_INDEX = {2: 0, 4: 1, 8: 2, 16: 3, 32: 4}


def create_backbone(
    name: str,
    out_stride: int = 32,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    **timm_kwargs,
) -> nn.Module:
    """A timm feature extractor ending at ``out_stride`` (its later stages are not built).

    Args:
        name: timm model name (``resnet18``, ``resnet50``, ...).
        out_stride: stride of the single returned feature map (16 cuts ResNet after stage 3).
        pretrained: load timm's pretrained weights (needs network unless ``pretrained_path``).
        pretrained_path: a local weights file (``.pth``/``.safetensors``) loaded instead of a
            download, via timm's ``pretrained_cfg_overlay``.
        timm_kwargs: passed on to ``timm.create_model`` (e.g. ``feature_location`` for HRNet).

    The returned module maps [B, 3, H, W] → list with one tensor [B, C, H/out_stride, W/out_stride];
    ``module.feature_info.channels()[-1]`` is C.
    """
    if out_stride not in _STRIDE_TO_INDEX:
        raise ValueError(f"out_stride must be one of {sorted(_STRIDE_TO_INDEX)}, got {out_stride}")
    kwargs: dict = {}
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {path}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        pretrained = True
    return timm.create_model(
        name,
        pretrained=pretrained,
        features_only=True,
        out_indices=(_STRIDE_TO_INDEX[out_stride],),
        **kwargs,
        **timm_kwargs,
    )


def backbone_channels(backbone: nn.Module) -> int:
    """Channels of the (last) feature map returned by a ``features_only`` backbone."""
    return int(backbone.feature_info.channels()[-1])


def to_three_channels(image: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] grayscale → [B, 3, H, W] (repeated); 3-channel input passes through."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
