"""The classification term every head shares, read at the cell holding the true point (SPEC §3),
or given as precomputed logits (a context head over the levels, SPEC §8).

* Binary head: class-balanced BCE of the class logit, balanced separately per landmark group
  (:class:`GroupBalancedBCE`; the paper's loss).
* Multiclass head (:class:`~spinectx.codecs.classes.ClassCodec`): per group, cross-entropy over the
  group's exclusive classes plus a class-balanced BCE per flag; the class term is the mean over
  groups of (CE + Σ flag BCEs). The CE is weighted by the group's ``class_weights`` when the landmark
  set gives them (RSNA 2024: 1/2/4, as its metric: Σ w·CE / Σ w over the batch's labelled
  landmarks), else class-balanced like the binary BCE: the mean CE within each exclusive class
  present in the batch, averaged over those classes (each present class weighs the same; for two
  classes this equals the binary balanced BCE when both are present).

Landmarks that are not annotated/in frame (``valid`` False), or whose class is unknown, add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spinectx.codecs.classes import ClassCodec, ClassTargets


def balanced_bce(logit: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy over the masked entries (any shape, same for all).

    Positives and negatives each contribute half of the loss (mean BCE within each class), so the
    rarer class weighs as much as the common one; a class absent from the batch contributes 0.
    """
    mask = mask & torch.isfinite(target)
    target = torch.nan_to_num(target, nan=0.0)
    bce = F.binary_cross_entropy_with_logits(logit.float(), target.float(), reduction="none")
    total = logit.new_zeros((), dtype=torch.float32)
    for cls_mask in (mask & (target > 0.5), mask & (target <= 0.5)):
        n = cls_mask.sum()
        if n > 0:
            total = total + 0.5 * (bce * cls_mask).sum() / n
    return total


def class_balanced_ce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of logits [N, E] against class indices target [N] (all in 0..E−1).

    ``weights`` [E]: Σ w[target]·CE / Σ w[target] (PyTorch's weighted mean). None: class-balanced,
    the mean over the classes present of the mean CE within each class. 0 when N = 0.
    """
    if target.numel() == 0:
        return logits.new_zeros((), dtype=torch.float32)
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    if weights is not None:
        w = weights.to(ce.device)[target]
        return (w * ce).sum() / w.sum()
    present = torch.unique(target)
    return torch.stack([ce[target == c].mean() for c in present]).mean()


def group_balanced_bce(logit: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean over landmark groups of :func:`balanced_bce`: logit, labels [B, K]; valid [B, K] bool;
    groups [K] group index of each landmark → scalar."""
    group = groups.to(logit.device).expand_as(labels)
    return torch.stack([balanced_bce(logit, labels, valid & (group == g)) for g in torch.unique(groups)]).mean()


class GroupBalancedBCE(nn.Module):
    """Mean over landmark groups of :func:`balanced_bce` of the class logit at the true cell.

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
    """

    def __init__(self, groups: Sequence[int]):
        super().__init__()
        self.register_buffer("groups", torch.as_tensor(list(groups), dtype=torch.long), persistent=False)

    def forward(self, logit_map: torch.Tensor, peak_index: torch.Tensor, labels: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """logit_map [B, K, h, w]; peak_index [B, K] flat cell index; labels [B, K] in {0, 1} or
        NaN; valid [B, K] bool → scalar."""
        logit = logit_map.float().flatten(2).gather(-1, peak_index[..., None])[..., 0]  # [B, K]
        return group_balanced_bce(logit, labels, valid, self.groups)


def multiclass_loss(logits: torch.Tensor, targets: ClassTargets, valid: torch.Tensor, classes: ClassCodec,
                    exclusive_losses: Sequence | None = None) -> torch.Tensor:
    """The multiclass class term (module docstring): logits [B, K, n_logits] at the true cells,
    targets from ``classes.encode``, valid [B, K] bool → scalar (float32).

    ``exclusive_losses``: one callable per landmark group, ``(logits [N, E], target [N]) → scalar``,
    used instead of the class-balanced cross-entropy for the group's exclusive classes (e.g. the
    seed's :class:`~spinectx.losses.focal.FocalLoss`)."""
    landmarks = classes.landmarks
    group_of = torch.as_tensor(landmarks.group_of, device=logits.device)
    terms = []
    for gi, group in enumerate(landmarks.groups):
        in_group = valid & (group_of == gi)  # [B, K]
        e = len(group.exclusive)
        labelled = in_group & (targets.exclusive >= 0)
        weights = None if group.class_weights is None else torch.tensor(group.class_weights, dtype=torch.float32)
        if exclusive_losses is not None:
            term = exclusive_losses[gi](logits[labelled][:, :e], targets.exclusive[labelled])
        else:
            term = class_balanced_ce(logits[labelled][:, :e], targets.exclusive[labelled], weights)
        for fi in range(len(group.flags)):
            term = term + balanced_bce(logits[..., e + fi], targets.flags[..., e + fi], in_group)
        terms.append(term)
    return torch.stack(terms).mean()


class ClassLoss(nn.Module):
    """The class term of every codec loss, for either class head (module docstring).

    Args:
        groups: group index of each landmark [K] (from the data's landmark set).
    """

    def __init__(self, groups: Sequence[int]):
        super().__init__()
        self.register_buffer("groups", torch.as_tensor(list(groups), dtype=torch.long), persistent=False)

    def forward(self, output: torch.Tensor, codec, peak_index: torch.Tensor, labels: torch.Tensor,
                valid: torch.Tensor, tags: torch.Tensor | None = None,
                class_logits: torch.Tensor | None = None) -> torch.Tensor:
        """output: the network output in ``codec``'s layout; peak_index [B, K] flat index of the
        true cell; labels [B, K] abnormal 0/1/NaN; valid [B, K] bool; tags [B, K, C] multi-hot
        (needed by the multiclass head); class_logits [B, K, n_logits]: logits computed elsewhere
        (a context head, :class:`~spinectx.models.context.ContextHead`) used instead of the
        output's class blocks at ``peak_index`` → scalar (float32).

        Raises:
            ValueError: ``class_logits`` not [B, K, n_logits] of the class head.
        """
        if class_logits is None:
            logits = codec.class_logits_at(output, peak_index)  # [B, K, n_logits]
        else:
            expected = (*peak_index.shape, codec.classes.n_logits)
            if tuple(class_logits.shape) != expected:
                raise ValueError(f"class_logits must be [B, K, n_logits] = {list(expected)} for the "
                                 f"{codec.classes.mode} head, got {list(class_logits.shape)}")
            logits = class_logits.float()
        targets = codec.classes.encode(labels, tags)
        if not codec.classes.multiclass:
            return group_balanced_bce(logits[..., 0], targets.labels, valid, self.groups)
        if len(codec.classes.landmarks) != logits.shape[1]:
            raise ValueError(f"the class head has {len(codec.classes.landmarks)} landmarks, the output {logits.shape[1]}")
        return multiclass_loss(logits, targets, valid, codec.classes)
