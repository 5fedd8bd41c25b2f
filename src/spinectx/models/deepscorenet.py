"""DeepScoreNet: the crop classifier of the seed's two-stage RSNA 2024 system (SPEC §7).

A small residual CNN over a 32×32×3 crop centred on a level (pixel values 0–255 in the seed; the
net does no scaling of its own). Layers, as in the seed's Keras model (SPEC §7):

* stem: 3×3 conv 32 (bias, "same") → BN → ReLU;
* three stages of 64, 128, 256 filters with 2, 4, 4 units of [ReLU → 3×3 conv (bias, "same") → BN];
  each stage ends with a 3×3 / stride-2 max-pool ("same") and adds a 1×1 stride-2 conv (bias) of
  the stage's input, so 32 → 16 → 8 → 4 px;
* head: global average pool → dense 256 → ReLU → dense 128 → ReLU → dense ``num_classes`` (logits;
  the softmax belongs to the loss / metric).

Padding: Keras' "same" for a stride-2 3×3 max-pool pads ``total = max((ceil(n/2)−1)·2 + 3 − n, 0)``
with ``total // 2`` before and the rest after, i.e. 0 before / 1 after on even sizes; the padded
cells never win the max (Keras ignores them). :func:`max_pool_same` does exactly that (pads with
−inf), so any input size n gives ceil(n/2) like the 1×1 stride-2 shortcut (which needs no padding).

Keras counts BatchNorm's running mean and variance as (non-trainable) parameters; PyTorch keeps
them as buffers. :func:`keras_parameter_count` gives both counts: 2,784,259 trainable +
3,392 BN statistics = 2,787,651 (SPEC §7) for ``in_chans=3, num_classes=3``.

BatchNorm uses Keras' defaults (epsilon 1e-3, momentum 0.99 = PyTorch ``momentum=0.01``), and
conv / dense weights Keras' default init (Glorot uniform, zero bias). A 2.5-D variant (three
neighbouring slices as the three channels) is the same net with ``in_chans=3``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 4), (256, 4))
"""(filters, units) of the three residual stages (SPEC §7)."""

STEM_CHANNELS = 32
HEAD_HIDDEN = (256, 128)
BN_EPS = 1e-3  # Keras BatchNormalization default
BN_MOMENTUM = 0.01  # = 1 − Keras' 0.99


def max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max-pool with Keras/TensorFlow "same" padding: [B, C, H, W] → [B, C, ceil(H/s), ceil(W/s)].

    Per spatial dim of size n: output m = ceil(n / stride), total padding
    max((m − 1)·stride + kernel − n, 0), ``total // 2`` before and the rest after, padded with −inf so
    that padded cells never win (for kernel 3, stride 2 and even n: 0 before, 1 after).
    """
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        m = math.ceil(n / stride)
        total = max((m - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class ResidualStage(nn.Module):
    """``units`` × [ReLU → 3×3 conv → BN], then :func:`max_pool_same`, plus a 1×1 stride-2 conv
    shortcut of the stage input. [B, C_in, H, W] → [B, filters, ceil(H/2), ceil(W/2)]."""

    def __init__(self, in_channels: int, filters: int, units: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(units):
            layers += [nn.ReLU(), nn.Conv2d(in_channels if i == 0 else filters, filters, 3, padding=1),
                       nn.BatchNorm2d(filters, eps=BN_EPS, momentum=bn_momentum)]
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Conv2d(in_channels, filters, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_same(self.body(x)) + self.shortcut(x)


class DeepScoreNet(nn.Module):
    """The seed's crop classifier (SPEC §7). Input [B, in_chans, H, W] (seed: 32×32, values 0–255)
    → logits [B, num_classes].

    timm-style API: :meth:`forward_features` → pooled features [B, 256] (``num_features``), and
    :meth:`forward_head` (features → logits, or the 128-d pre-logits with ``pre_logits=True``).

    Args:
        in_chans: input channels (3: the seed's grey crop repeated, or three neighbouring slices).
        num_classes: output classes (3: normal/mild, moderate, severe).
        bn_momentum: PyTorch BatchNorm momentum (Keras' 0.99 = 0.01, the default). The running
            statistics then need thousands of steps to settle; a short schedule evaluates with
            statistics that have hardly moved from their start (giant logits in eval mode), so the
            suite's crop model config uses PyTorch's 0.1. Not a parameter: the counts do not change.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 3, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        if in_chans < 1 or num_classes < 1:
            raise ValueError(f"DeepScoreNet needs in_chans >= 1 and num_classes >= 1, got {in_chans}, {num_classes}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, STEM_CHANNELS, 3, padding=1),
                                  nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS, momentum=bn_momentum), nn.ReLU())
        stages, channels = [], STEM_CHANNELS
        for filters, units in STAGES:
            stages.append(ResidualStage(channels, filters, units, bn_momentum))
            channels = filters
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.pre_logits = nn.Sequential(nn.Linear(channels, HEAD_HIDDEN[0]), nn.ReLU(),
                                        nn.Linear(HEAD_HIDDEN[0], HEAD_HIDDEN[1]), nn.ReLU())
        self.fc = nn.Linear(HEAD_HIDDEN[1], num_classes)
        self._init_keras_defaults()

    def _init_keras_defaults(self) -> None:
        """Glorot-uniform weights and zero biases for convs and dense layers (Keras' defaults)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_chans, H, W] → last stage's map [B, 256, ceil(H/8), ceil(W/8)] (4×4 for 32×32)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"DeepScoreNet expects input [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_chans, H, W] → globally average-pooled features [B, 256]."""
        return self.forward_feature_map(x).mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features [B, 256] → logits [B, num_classes] (or the 128-d ReLU'd pre-logits)."""
        h = self.pre_logits(features)
        return h if pre_logits else self.fc(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_chans, H, W] → logits [B, num_classes] (no softmax)."""
        return self.forward_head(self.forward_features(x))


def keras_parameter_count(model: nn.Module) -> dict[str, int]:
    """Parameter counts of ``model`` as Keras reports them, and PyTorch's own.

    Returns a dict with
    * ``trainable``: parameters with ``requires_grad`` (Keras: trainable params);
    * ``non_trainable``: frozen parameters plus every BatchNorm's running mean and variance
      (2 per channel; Keras stores them as non-trainable weights; ``num_batches_tracked`` is not one);
    * ``total``: trainable + non_trainable (Keras' "Total params");
    * ``torch``: ``sum(p.numel() for p in model.parameters())`` (PyTorch's count, no BN statistics).
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    bn_stats = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                   and m.running_mean is not None)
    return {"trainable": trainable, "non_trainable": frozen + bn_stats, "total": trainable + frozen + bn_stats,
            "torch": trainable + frozen}
