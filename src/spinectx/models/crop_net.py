"""Stage 2 of the two-stage pipeline (SPEC §7): a classifier over the crops of one image's landmarks.

Input: crops [B, K, C, S, S] (:func:`~spinectx.data.crops.crop_batch`: K landmarks, C channels =
slices, S × S pixels); output: class logits [B, K, num_classes] in the landmark set's order.

* ``context = none`` (the seed): every crop is classified on its own by the crop model's own head
  (DeepScoreNet's dense 256 → 128 → classes, or a timm model's classifier). The crop model does not
  know which landmark a crop is; the crop's look (a disc, a vertebra) must tell it.
* ``context = bilstm | transformer`` (Qin et al. 2020, SPEC §8): the crop model's pooled features
  (DeepScoreNet: the 128-d pre-logits; timm: ``forward_head(pre_logits=True)``) of the K crops form a
  sequence, ordered top to bottom along the spine, through a
  :class:`~spinectx.models.context.LevelContext`, whose per-landmark classifier gives the logits.

Crop models: ``deepscorenet`` (:class:`~spinectx.models.deepscorenet.DeepScoreNet`, exactly SPEC §7)
or any timm model name (``pretrained=False``; a local weights file through ``pretrained_path``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spinectx.models.context import LevelContext, context_settings
from spinectx.models.deepscorenet import DeepScoreNet


def build_crop_model(arch: str, in_chans: int, num_classes: int, pretrained_path: str | None = None,
                     bn_momentum: float | None = None) -> nn.Module:
    """``deepscorenet`` or a timm model name → a classifier [N, in_chans, S, S] → [N, num_classes]
    with ``forward_features`` and ``forward_head(x, pre_logits=...)`` (timm's API). ``bn_momentum``:
    DeepScoreNet's BatchNorm momentum (None: Keras' 0.99, i.e. 0.01).

    Raises:
        ValueError: an architecture that is neither ``deepscorenet`` nor a timm model.
    """
    if arch == "deepscorenet":
        return DeepScoreNet(in_chans=in_chans, num_classes=num_classes,
                            **({} if bn_momentum is None else {"bn_momentum": float(bn_momentum)}))
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"crop model {arch!r} is neither 'deepscorenet' nor a timm model (e.g. resnet18)")
    kwargs = {}
    if pretrained_path:
        kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained_path)}}
    return timm.create_model(arch, in_chans=in_chans, num_classes=num_classes, **kwargs)


def drop_classifier(model: nn.Module) -> None:
    """Remove the crop model's last classifier layer in place (its pre-logits features are what a
    context reads): DeepScoreNet's ``fc`` becomes an identity, a timm model gets ``reset_classifier(0)``."""
    if isinstance(model, DeepScoreNet):
        model.fc = nn.Identity()
    else:
        model.reset_classifier(0)


def pre_logits_width(model: nn.Module, in_chans: int, size: int = 32) -> int:
    """Length of ``model.forward_head(model.forward_features(x), pre_logits=True)`` (one probe pass)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.forward_head(model.forward_features(torch.zeros(1, in_chans, size, size)), pre_logits=True)
    model.train(was_training)
    return int(out.shape[-1])


class CropNet(nn.Module):
    """Crops of K landmarks → class logits (module docstring).

    Args:
        num_landmarks: K.
        num_classes: logits per landmark (the class head's ``n_logits``).
        in_chans: channels of a crop (1, or 3 for 2.5-D input).
        arch: ``deepscorenet`` or a timm model name.
        context: ``{kind: none | bilstm | transformer, hidden, layers, heads, dropout}``.
        order: landmark indices top to bottom for the context (None: the set's own order).
        crop_size: S, only to probe the width of the crop model's features.
        pretrained_path: local weights of a timm crop model.
        bn_momentum: DeepScoreNet's BatchNorm momentum (None: Keras' default, see DeepScoreNet).

    Raises:
        ValueError: an unknown context kind or key, or crop model.
    """

    def __init__(self, num_landmarks: int, num_classes: int, in_chans: int = 1, arch: str = "deepscorenet",
                 context: dict | None = None, order: Sequence[int] | None = None, crop_size: int = 32,
                 pretrained_path: str | None = None, bn_momentum: float | None = None):
        super().__init__()
        kind, context = context_settings(context)
        self.num_landmarks, self.num_classes, self.in_chans = int(num_landmarks), int(num_classes), int(in_chans)
        self.kind = kind
        self.crop_model = build_crop_model(arch, self.in_chans, self.num_classes, pretrained_path, bn_momentum)
        self.context = None
        if kind != "none":
            drop_classifier(self.crop_model)  # unused with a context: no idle weights (DDP, params, FLOPs)
            width = pre_logits_width(self.crop_model, self.in_chans, crop_size)
            self.context = LevelContext(width, self.num_classes, kind, order=order,
                                        max_landmarks=max(32, self.num_landmarks), **context)

    def forward(self, crops: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """crops [B, K, C, S, S], mask [B, K] bool (False = no landmark there: the context ignores it)
        → logits [B, K, num_classes].

        Raises:
            ValueError: crops not [B, K, in_chans, S, S] with K = num_landmarks.
        """
        if crops.ndim != 5 or crops.shape[1] != self.num_landmarks or crops.shape[2] != self.in_chans:
            raise ValueError(f"CropNet expects crops [B, {self.num_landmarks}, {self.in_chans}, S, S], "
                             f"got shape {tuple(crops.shape)}")
        b, k = crops.shape[:2]
        flat = crops.reshape(b * k, *crops.shape[2:])
        if self.context is None:
            return self.crop_model(flat).reshape(b, k, -1)
        features = self.crop_model.forward_head(self.crop_model.forward_features(flat), pre_logits=True)
        return self.context(features.reshape(b, k, -1), mask)
