"""Study-level cross-validation folds and nested training fractions, seeded and deterministic."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from spinectx.data.errors import ConfigError, config_float, config_int


def check_folds(num_folds, fold, fraction=1.0) -> tuple[int, int, float]:
    """(num_folds, fold, fraction) as numbers, checked: ``num_folds`` an integer ≥ 2, ``fold`` an
    integer in [0, num_folds), ``fraction`` a number in (0, 1]. Values come from the command line
    (``data.num_folds``, ``data.fold``, ``data.fraction``), so messages use those names.

    Raises:
        ConfigError: a value of the wrong kind or outside its range.
    """
    num_folds, fold = config_int("data.num_folds", num_folds), config_int("data.fold", fold)
    if num_folds < 2:
        raise ConfigError(f"data.num_folds must be ≥ 2 (cross-validation holds one fold out), got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ConfigError(f"data.fold must be in [0, {num_folds}) with data.num_folds={num_folds}, got {fold}")
    share = config_float("data.fraction", fraction, 0.0, 1.0)  # the share of the training folds used
    return num_folds, fold, share


def assign_folds(study_uids: Sequence[str], num_folds: int, seed: int,
                 strata: Mapping[str, int] | None = None) -> dict[str, int]:
    """Map each study uid to a fold in [0, num_folds). Sorted uids are shuffled with ``seed`` and
    dealt round-robin, so fold sizes differ by at most one and the split does not depend on the
    order studies were found in.

    With ``strata`` (a label per study, e.g. RSNA's worst severity), the shuffled studies are
    dealt stratum by stratum (rarest first) with one running counter: every fold gets its share
    of each stratum (± 1) and fold sizes still differ by at most one. Without, the assignment is
    the same as it always was (so earlier results stay reproducible)."""
    check_folds(num_folds, 0)
    uids = sorted(set(study_uids))
    if len(uids) < num_folds:
        raise ValueError(f"{len(uids)} studies cannot fill {num_folds} folds")
    order = [uids[j] for j in np.random.default_rng(seed).permutation(len(uids))]
    if strata:
        counts = Counter(strata.get(u) for u in order)
        order.sort(key=lambda u: (counts[strata.get(u)], str(strata.get(u))))  # stable: shuffled within a stratum
    return {uid: rank % num_folds for rank, uid in enumerate(order)}


def split_studies(
    study_uids: Sequence[str], num_folds: int, fold: int, fraction: float = 1.0, seed: int = 0,
    strata: Mapping[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """(train uids, validation uids) for one fold.

    Validation is fold ``fold``; training is the other folds, reduced to ``fraction`` of them.
    Fractions are nested: with the same seed the studies of a smaller fraction are a subset of
    those of any larger one (a fixed seeded order, cut at ``ceil(fraction · n)``).
    """
    check_folds(num_folds, fold, fraction)
    folds = assign_folds(study_uids, num_folds, seed, strata)
    val = sorted(u for u, f in folds.items() if f == fold)
    train_all = sorted(u for u, f in folds.items() if f != fold)
    order = np.random.default_rng(seed + 7919).permutation(len(train_all))
    n = max(1, math.ceil(fraction * len(train_all) - 1e-9))
    train = sorted(train_all[j] for j in order[:n])
    return train, val
