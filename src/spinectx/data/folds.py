"""Study-level cross-validation folds and nested training fractions, seeded and deterministic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def assign_folds(study_uids: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Map each study uid to a fold in [0, num_folds). Sorted uids are shuffled with ``seed`` and
    dealt round-robin, so fold sizes differ by at most one and the split does not depend on the
    order studies were found in."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be ≥ 2, got {num_folds}")
    uids = sorted(set(study_uids))
    if len(uids) < num_folds:
        raise ValueError(f"{len(uids)} studies cannot fill {num_folds} folds")
    order = np.random.default_rng(seed).permutation(len(uids))
    return {uids[j]: rank % num_folds for rank, j in enumerate(order)}


def split_studies(
    study_uids: Sequence[str], num_folds: int, fold: int, fraction: float = 1.0, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(train uids, validation uids) for one fold.

    Validation is fold ``fold``; training is the other folds, reduced to ``fraction`` of them.
    Fractions are nested: with the same seed the studies of a smaller fraction are a subset of
    those of any larger one (a fixed seeded order, cut at ``ceil(fraction · n)``).
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    folds = assign_folds(study_uids, num_folds, seed)
    val = sorted(u for u, f in folds.items() if f == fold)
    train_all = sorted(u for u, f in folds.items() if f != fold)
    order = np.random.default_rng(seed + 7919).permutation(len(train_all))
    n = max(1, math.ceil(fraction * len(train_all) - 1e-9))
    train = sorted(train_all[j] for j in order[:n])
    return train, val
