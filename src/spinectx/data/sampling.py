"""Training-sample oversampling of minority classes (``data.sampler``; the seed's recipe, SPEC §7).

A training sample is one record: a study's frame with its K landmarks' tags (TianChi), or an RSNA
view sample with its levels' severities. ``kind: class_balanced`` draws samples with replacement,
each with a weight set by the rarest class it carries:

- per group g (TianChi ``vertebra`` / ``disc``; RSNA the view's severity group), the training
  frequency of class c is f[g, c] = (tagged landmarks of g carrying c) / (tagged landmarks of g);
  a flag (TianChi ``v5``) counts as a class of its own;
- class (g, c) weighs w[g, c] = f[g, c] ** −power (``power`` 1 = inverse frequency, 0.5 = its
  square root, 0 = uniform);
- a sample weighs the largest w of the classes its landmarks carry; a sample without any tag
  weighs the smallest w of all (it counts as a majority sample).

Repeated draws of one sample are different images: the training transform is random.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from spinectx.data.errors import ConfigError, config_float, config_int
from spinectx.data.landmarks import LandmarkSet

log = logging.getLogger(__name__)

SAMPLER_KINDS = ("none", "class_balanced")
_KEYS = {"none": {"kind", "seed"}, "class_balanced": {"kind", "seed", "power"}}


def check_sampler(cfg: Mapping | None, seed: int = 0) -> dict:
    """``data.sampler`` → ``{kind, seed, power}`` (``None`` = ``{kind: none}``; ``seed`` defaults to
    ``seed``, ``power`` to 1; the configs give ``seed: ${seed}``, the run's training seed).

    Raises:
        ConfigError: not a mapping, an unknown ``kind``, a key the kind does not take, a
            ``power`` that is not a number ≥ 0 or a ``seed`` that is not an integer (the message
            names the key).
    """
    if cfg is None:
        return {"kind": "none", "seed": int(seed)}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"data.sampler must be a mapping such as {{kind: class_balanced}}, got {cfg!r}")
    kind = cfg.get("kind", "none")
    if kind not in SAMPLER_KINDS:
        raise ConfigError(f"data.sampler.kind must be one of {', '.join(SAMPLER_KINDS)}, got {kind!r}")
    unknown = sorted(set(cfg) - _KEYS[kind])
    if unknown:
        raise ConfigError(f"data.sampler: key(s) {unknown} not taken by kind {kind!r} (it takes {sorted(_KEYS[kind])})")
    out = {"kind": kind, "seed": config_int("data.sampler.seed", cfg.get("seed", seed))}
    if kind == "class_balanced":
        power = cfg.get("power", 1.0)
        out["power"] = config_float("data.sampler.power", power, what="a number ≥ 0")
        if out["power"] < 0:
            raise ConfigError(f"data.sampler.power must be a number ≥ 0, got {power!r}")
    return out


def group_class_counts(tags: Sequence[np.ndarray], landmarks: LandmarkSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample multi-hot ``tags`` (N arrays [K, C], :func:`~spinectx.data.dataset.record_targets`)
    → (class counts [N, G, C], tagged landmarks [N, G]) of each sample per group (G groups,
    C = ``landmarks.max_classes``)."""
    tags_arr = np.asarray(tags, dtype=np.float64).reshape(len(tags), len(landmarks), landmarks.max_classes)
    member = np.zeros((len(landmarks), len(landmarks.groups)))  # [K, G] one-hot of each landmark's group
    member[np.arange(len(landmarks)), list(landmarks.group_of)] = 1.0
    counts = np.einsum("nkc,kg->ngc", tags_arr, member)
    tagged = np.einsum("nk,kg->ng", (tags_arr.sum(-1) > 0).astype(np.float64), member)
    return counts, tagged


def class_frequencies(counts: np.ndarray, tagged: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Class frequency per group [G, C] over samples (counts [N, G, C], tagged [N, G] of
    :func:`group_class_counts`), each sample weighing ``sample_weight`` [N] (None: 1 each, the
    training set's own frequencies; a sampler's weights: the frequencies it draws). A group
    without any tagged landmark gives 0."""
    w = np.ones(len(counts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    total = np.einsum("n,ng->g", w, tagged)
    return np.einsum("n,ngc->gc", w, counts) / np.maximum(total, 1e-12)[:, None]


def class_balanced_weights(tags: Sequence[np.ndarray], landmarks: LandmarkSet, power: float = 1.0) -> np.ndarray:
    """Sample weights [N] of the module docstring's rule for per-sample multi-hot ``tags`` (N arrays
    [K, C]); larger = drawn more often. All ones when no sample carries a tag.

    Raises:
        ValueError: no samples.
    """
    if len(tags) == 0:
        raise ValueError("class-balanced sampling needs at least one training sample")
    counts, tagged = group_class_counts(tags, landmarks)
    freq = class_frequencies(counts, tagged)  # [G, C]
    seen = freq > 0
    if not seen.any():
        return np.ones(len(tags))
    class_weight = np.where(seen, np.where(seen, freq, 1.0) ** -float(power), 0.0)  # [G, C]
    carried = np.where(counts > 0, class_weight[None], 0.0).reshape(len(tags), -1).max(-1)  # [N]
    return np.where(carried > 0, carried, class_weight[seen].min())


class SeededWeightedSampler(WeightedRandomSampler):
    """:class:`~torch.utils.data.WeightedRandomSampler` (``replacement=True``) whose draws depend
    only on ``seed`` and the epoch given to :meth:`set_epoch` (Lightning calls it before every
    training epoch): a run is reproducible, a resumed run draws what the uninterrupted one would
    have, and every DDP rank draws the same list (which Lightning's DistributedSamplerWrapper
    then shards). Without ``set_epoch`` every pass draws the same order, as with
    :class:`~torch.utils.data.DistributedSampler`.

    Args:
        weights: [N] non-negative sample weights (not necessarily normalised).
        num_samples: indices per pass (in ``[0, N)``).
        seed: the run's sampling seed.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int = 0):
        super().__init__(torch.as_tensor(np.asarray(weights, dtype=np.float64)), int(num_samples), replacement=True,
                         generator=torch.Generator())
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, dtype=np.uint64)[0]
        self.generator.manual_seed(int(state))
        return super().__iter__()


def build_sampler(cfg: Mapping, tags: Sequence[np.ndarray], landmarks: LandmarkSet,
                  num_samples: int) -> SeededWeightedSampler | None:
    """The training sampler of ``cfg`` (:func:`check_sampler`'s output) for per-sample ``tags``
    (N arrays [K, C]), drawing ``num_samples`` indices in ``[0, N)`` per epoch; None for kind
    ``none`` (the loader shuffles as before). Logs the training class frequencies and those the
    sampler draws, per group."""
    if cfg["kind"] == "none":
        return None
    weights = class_balanced_weights(tags, landmarks, cfg["power"])
    counts, tagged = group_class_counts(tags, landmarks)
    before, after = class_frequencies(counts, tagged), class_frequencies(counts, tagged, weights)
    parts = []
    for g, group in enumerate(landmarks.groups):
        pairs = ", ".join(f"{c} {before[g, i]:.3f}→{after[g, i]:.3f}" for i, c in enumerate(group.classes))
        parts.append(f"{group.name}: {pairs}")
    log.info("data.sampler %s (power %g, seed %d): class frequencies, training set → drawn: %s", cfg["kind"],
             cfg["power"], cfg["seed"], "; ".join(parts))
    return SeededWeightedSampler(weights, num_samples, cfg["seed"])
