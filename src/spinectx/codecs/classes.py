"""Class heads: labels/tags → class targets, class logits → probabilities (one object per model).

A :class:`ClassCodec` is built from the data's :class:`~spinectx.data.landmarks.LandmarkSet` and a
mode (``model.class_head``); the keypoint codec holds it (``codec.classes``), so the loss and the
decoder read the same layout.

Modes:

* ``binary`` — the paper's head (SPEC §3): one logit per landmark, ``sigmoid`` = P(abnormal)
  (abnormal = any tag other than the group's ``normal`` class). No class probabilities
  (``class_prob`` is None).
* ``multiclass`` — per landmark, logits over its group's *exclusive* classes (softmax) followed by
  one logit per *flag* (sigmoid; TianChi's ``v5``, which a disc may carry beside ``v1..v4``).
  ``n_logits`` = max over groups of ``len(exclusive) + len(flags)`` (TianChi 4 + 1 = 5, RSNA 3);
  the trailing logits of a group that needs fewer are ignored (no gradient, no probability).

Logit ``j`` of landmark ``k`` is logit ``j`` of the group's list ``exclusive + flags``, in the
vocabulary order of each part (TianChi disc: ``v1 v2 v3 v4 | v5``; vertebra: ``v1 v2 | - -  -``).

Probabilities:

* ``class_prob`` [B, K, C] in the group's *vocabulary* order (``group.classes``; C =
  ``landmarks.max_classes``, padding 0): exclusive classes from the softmax (they sum to 1), flags
  from their own sigmoid.
* ``prob`` [B, K] = P(abnormal) = 1 − P(normal) · Π_flags (1 − P(flag)): the probability that the
  landmark carries any tag other than the normal one (SPEC §4), so the table metric's AUC reads the
  same quantity for both heads.

Targets (:meth:`ClassCodec.encode`) come from the batch's ``tags`` [B, K, C] (multi-hot over the
vocabulary, all-zero = unknown): ``exclusive`` [B, K] is the logit index of the landmark's exclusive
tag (−1 when it has none: unlabelled, or a lone flag; with two exclusive tags, which the data
formats do not produce, the later one in vocabulary order, i.e. the more severe); ``flags``
[B, K, n_logits] holds 0/1 at the flag logits of a tagged landmark and NaN elsewhere (no tag at all
= every flag unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from spinectx.data.landmarks import LandmarkSet

CLASS_HEADS = ("binary", "multiclass")

__all__ = ["CLASS_HEADS", "ClassCodec", "ClassTargets"]


@dataclass
class ClassTargets:
    """Class targets of a batch.

    Attributes:
        labels: [B, K] float abnormal 0/1, NaN = unknown (both modes).
        exclusive: [B, K] long logit index of the exclusive class, −1 = none (multiclass only).
        flags: [B, K, n_logits] float 0/1 at the flag logits, NaN elsewhere or unknown
            (multiclass only).
    """

    labels: torch.Tensor
    exclusive: torch.Tensor | None = None
    flags: torch.Tensor | None = None


class ClassCodec:
    """Class targets and probabilities for one model (see the module docstring).

    Args:
        landmarks: the data's landmark set (or its config mapping); required for ``multiclass``,
            optional for ``binary`` (which needs nothing but the labels).
        mode: ``binary`` or ``multiclass``.

    Raises:
        ValueError: an unknown mode, or ``multiclass`` without a landmark set.
    """

    def __init__(self, landmarks: LandmarkSet | Mapping | None = None, mode: str = "binary"):
        if mode not in CLASS_HEADS:
            raise ValueError(f"class head must be one of {CLASS_HEADS}, got {mode!r}")
        if isinstance(landmarks, Mapping):
            landmarks = LandmarkSet.from_config(landmarks)
        if mode == "multiclass" and landmarks is None:
            raise ValueError("a multiclass head needs the landmark set (its class vocabularies)")
        self.mode = mode
        self.landmarks = landmarks
        if mode == "binary":
            self.n_logits = 1
            return
        groups = [landmarks.groups[g] for g in landmarks.group_of]  # per landmark
        n = max(len(g.exclusive) + len(g.flags) for g in landmarks.groups)
        k, c = len(landmarks), landmarks.max_classes
        self.n_logits = n
        #: [K, n] which logits are exclusive-class / flag logits
        self.exclusive_mask = torch.zeros(k, n, dtype=torch.bool)
        self.flag_mask = torch.zeros(k, n, dtype=torch.bool)
        #: [K, C] logit index of each vocabulary class (−1 = padding)
        self.source = torch.full((k, c), -1, dtype=torch.long)
        #: [K] logit index of the normal class
        self.normal = torch.zeros(k, dtype=torch.long)
        #: [K, n] loss weight of each exclusive logit (the group's class_weights, else 1)
        self.class_weights = torch.ones(k, n)
        #: [K, C, n] one-hot map vocabulary class → logit
        self._vocab_to_logit = torch.zeros(k, c, n)
        for i, g in enumerate(groups):
            e = len(g.exclusive)
            self.exclusive_mask[i, :e] = True
            self.flag_mask[i, e:e + len(g.flags)] = True
            for j, cls in enumerate(g.classes):
                logit = e + g.flags.index(cls) if cls in g.flags else g.exclusive.index(cls)
                self.source[i, j] = logit
                self._vocab_to_logit[i, j, logit] = 1.0
            self.normal[i] = g.exclusive.index(g.normal)
            if g.class_weights is not None:
                self.class_weights[i, :e] = torch.tensor(g.class_weights, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"ClassCodec(mode={self.mode!r}, n_logits={self.n_logits})"

    @property
    def multiclass(self) -> bool:
        return self.mode == "multiclass"

    # -- targets -----------------------------------------------------------------------------
    def encode(self, labels: torch.Tensor, tags: torch.Tensor | None = None) -> ClassTargets:
        """labels [B, K] (abnormal 0/1, NaN unknown) and tags [B, K, C] (multi-hot over the group's
        vocabulary; needed in multiclass mode) → :class:`ClassTargets`.

        Raises:
            ValueError: multiclass without ``tags``, or tags of the wrong shape.
        """
        labels = labels.float()
        if not self.multiclass:
            return ClassTargets(labels=labels)
        k, c = self.source.shape
        if tags is None:
            raise ValueError("the multiclass head needs the batch's 'tags' [B, K, C] (multi-hot class tags)")
        if tags.dim() != 3 or tuple(tags.shape[1:]) != (k, c):
            raise ValueError(f"tags must be [B, {k}, {c}] (K landmarks × max classes), got {tuple(tags.shape)}")
        tagged = torch.nan_to_num(tags.float(), nan=0.0) > 0.5  # [B, K, C]
        hit = torch.einsum("bkc,kcn->bkn", tagged.float(), self._vocab_to_logit.to(tags.device)) > 0  # [B, K, n]
        exclusive_mask = self.exclusive_mask.to(tags.device)
        position = torch.arange(self.n_logits, device=tags.device).expand_as(hit)
        exclusive = torch.where(hit & exclusive_mask, position, torch.full_like(position, -1)).amax(-1)
        known = tagged.any(-1, keepdim=True) & self.flag_mask.to(tags.device)
        flags = torch.where(known, hit.float(), torch.full_like(hit, float("nan"), dtype=torch.float32))
        return ClassTargets(labels=labels, exclusive=exclusive, flags=flags)

    def targets_as_logits(self, targets: ClassTargets, margin: float = 8.0) -> torch.Tensor:
        """Logits [B, K, n_logits] that decode back to ``targets`` (for round-trip checks): +margin
        on the true exclusive class and on set flags, −margin on cleared flags and binary
        negatives, 0 elsewhere (unknown)."""
        if not self.multiclass:
            lab = targets.labels
            return torch.where(torch.isnan(lab), torch.zeros_like(lab), (2 * lab - 1) * margin)[..., None]
        ex = targets.exclusive
        logits = torch.zeros(*ex.shape, self.n_logits, device=ex.device)
        logits.scatter_(-1, ex.clamp(min=0)[..., None], torch.where(ex >= 0, margin, 0.0)[..., None].float())
        flags = targets.flags
        return torch.where(torch.isnan(flags), logits, (2 * torch.nan_to_num(flags) - 1) * margin)

    # -- probabilities -----------------------------------------------------------------------
    def decode(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits [B, K, n_logits] → (P(abnormal) [B, K], class_prob [B, K, C] or None for
        the binary head). Computed in float32."""
        logits = logits.float()
        if not self.multiclass:
            return torch.sigmoid(logits[..., 0]), None
        exclusive_mask = self.exclusive_mask.to(logits.device)
        flag_mask = self.flag_mask.to(logits.device)
        exclusive = logits.masked_fill(~exclusive_mask, float("-inf")).softmax(-1)  # 0 off the exclusive logits
        flag = torch.sigmoid(logits) * flag_mask
        per_logit = torch.where(exclusive_mask, exclusive, flag)
        source = self.source.to(logits.device).expand(*logits.shape[:-1], -1)
        class_prob = per_logit.gather(-1, source.clamp(min=0)) * (source >= 0)
        p_normal = exclusive.gather(-1, self.normal.to(logits.device).expand(*logits.shape[:-1])[..., None])[..., 0]
        no_flag = torch.where(flag_mask, 1.0 - flag, torch.ones_like(flag)).prod(-1)
        return 1.0 - p_normal * no_flag, class_prob
