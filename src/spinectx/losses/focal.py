"""Multiclass focal loss and the seed's class weights (SPEC §7; Lin et al. 2017 focal loss).

For one sample with target class t and softmax probability p_t of that class:

    loss = w_t · α_t · (1 − p_t)^γ · (−log p_t)

and the batch loss is the plain mean over the non-ignored samples (Keras' reduction with
``class_weight``: Σ sample losses / N — *not* PyTorch's weighted-CE mean Σ w·CE / Σ w). With γ = 0
and no α / w it is exactly :func:`torch.nn.functional.cross_entropy`.

The seed (RSNA 2024 two-stage system) trains DeepScoreNet with γ = 3 and both per-class factors from
the training class counts n_c (N = Σ n_c, f_c = n_c / N): α_c = (1 − f_c) / Σ_k (1 − f_k) and
w_c = N / (C · n_c) (C = 3 classes in the seed): :func:`seed_class_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def seed_class_weights(counts: Sequence[int | float]) -> tuple[list[float], list[float]]:
    """The seed's (α, w) from per-class training counts n_c (SPEC §7).

    α_c = (1 − f_c) / Σ_k (1 − f_k) with f_c = n_c / N (sums to 1); w_c = N / (C · n_c), C = len(counts)
    (sklearn's "balanced" class weight). E.g. counts [70, 20, 10] → α [0.15, 0.40, 0.45],
    w [0.476, 1.667, 3.333].

    Raises:
        ValueError: fewer than 2 classes, or a count that is not finite and > 0 (w_c would be infinite).
    """
    n = torch.as_tensor(list(counts), dtype=torch.float64)
    if n.ndim != 1 or n.numel() < 2:
        raise ValueError(f"seed_class_weights needs one count per class (at least 2), got {list(counts)!r}")
    if not torch.isfinite(n).all() or (n <= 0).any():
        raise ValueError(f"seed_class_weights needs every class count finite and > 0 (a class absent from the "
                         f"training data gets an infinite weight), got {list(counts)!r}")
    total = n.sum()
    one_minus_f = 1.0 - n / total
    alpha = one_minus_f / one_minus_f.sum()
    weight = total / (n.numel() * n)
    return alpha.tolist(), weight.tolist()


class FocalLoss(nn.Module):
    """Multiclass focal loss on logits [N, C] and class indices [N] → scalar (see module docstring).

    Args:
        gamma: focusing exponent γ ≥ 0 (seed: 3; 0 gives cross-entropy).
        alpha: per-class factor α_c [C] or None (all 1).
        weight: per-class weight w_c [C] or None (all 1); multiplies like α (the seed's ``class_weight``).
        ignore_index: target value whose samples add nothing and are not counted in the mean.

    The loss is computed in float32 from ``log_softmax``; a batch with no counted sample gives 0
    (still attached to the graph).

    Raises:
        ValueError: (construction) γ < 0, or α / w with a negative or non-finite entry, or of different
        lengths; (forward) logits not [N, C], targets not [N], a target outside 0..C−1 that is not
        ``ignore_index``, or α / w not of length C.
    """

    def __init__(self, gamma: float = 3.0, alpha: Sequence[float] | None = None,
                 weight: Sequence[float] | None = None, ignore_index: int = -1):
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"FocalLoss gamma must be >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.ignore_index = int(ignore_index)
        factors = []
        for name, values in (("alpha", alpha), ("weight", weight)):
            if values is None:
                factors.append(None)
                continue
            t = torch.as_tensor(list(values), dtype=torch.float32)
            if t.ndim != 1 or not torch.isfinite(t).all() or (t < 0).any():
                raise ValueError(f"FocalLoss {name} must be a list of finite non-negative per-class values, "
                                 f"got {list(values)!r}")
            factors.append(t)
        if factors[0] is not None and factors[1] is not None and len(factors[0]) != len(factors[1]):
            raise ValueError("FocalLoss alpha and weight have different lengths "
                             f"({len(factors[0])} vs {len(factors[1])})")
        class_factor = None
        for t in factors:
            if t is not None:
                class_factor = t if class_factor is None else class_factor * t
        self.register_buffer("class_factor", class_factor, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [N, C] (no softmax), target [N] int class indices or ``ignore_index`` → scalar."""
        if logits.ndim != 2:
            raise ValueError(f"FocalLoss expects logits [N, C], got shape {tuple(logits.shape)}")
        if target.shape != logits.shape[:1]:
            raise ValueError(f"FocalLoss expects targets [N] = [{logits.shape[0]}], got shape {tuple(target.shape)}")
        n_classes = logits.shape[1]
        if self.class_factor is not None and self.class_factor.numel() != n_classes:
            raise ValueError(f"FocalLoss has {self.class_factor.numel()} per-class factors but the logits have "
                             f"{n_classes} classes")
        target = target.long()
        keep = target != self.ignore_index
        bad = keep & ((target < 0) | (target >= n_classes))
        if bad.any():
            raise ValueError(f"FocalLoss targets must be in 0..{n_classes - 1} or {self.ignore_index} (ignored), "
                             f"got {sorted(set(target[bad].tolist()))}")
        if not keep.any():
            return logits.float().sum() * 0.0
        t = target[keep]
        logp = F.log_softmax(logits[keep].float(), dim=1).gather(1, t[:, None])[:, 0]
        loss = -logp
        if self.gamma != 0:
            loss = (1.0 - logp.exp()).clamp_min(0.0).pow(self.gamma) * loss
        if self.class_factor is not None:
            loss = self.class_factor.to(loss.device)[t] * loss
        return loss.mean()
