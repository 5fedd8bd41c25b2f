"""Determinism for the synthetic studies: named random streams, hashed UIDs, a shared noise bank.

Every random quantity of a study comes from a stream named by ``(seed, study index, stream name)``,
so a study's content depends only on those and not on which process renders it or in what order:
``workers > 1`` writes byte-identical files.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: root of every synthetic DICOM UID (the pydicom organisation root, as in pydicom's examples)
UID_PREFIX = "1.2.826.0.1.3680043.8.498."

_NOISE_BANK: np.ndarray | None = None
_NOISE_BANK_SIZE = 1 << 22


def hash_int(*parts: Any) -> int:
    """A large non-negative integer from the SHA-256 of ``parts`` joined by ``|`` (stable across runs)."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def study_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """The random stream ``stream`` of study ``index`` of the synthetic set ``seed``."""
    return np.random.default_rng(hash_int("spinectx-synth", seed, index, stream) & ((1 << 64) - 1))


def make_uid(seed: int, index: int, *parts: Any) -> str:
    """A DICOM UID (56 characters) hashed from ``(seed, index, *parts)``."""
    digits = str(hash_int("uid", seed, index, *parts))[:30]
    return UID_PREFIX + digits  # 26 + 30 = 56 chars, first digit of the hash part is non-zero


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw of U(lo, hi) as a Python float."""
    return float(rng.uniform(lo, hi))


def _noise_bank() -> np.ndarray:
    """A fixed bank of N(0,1) float32 samples, identical in every process."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20200917).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)
    return _NOISE_BANK


def noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An N(0,1) float32 field of ``shape`` read from the noise bank at a seeded offset (a view: do not
    modify it in place)."""
    n = shape[0] * shape[1]
    bank = _noise_bank()
    off = int(rng.integers(0, bank.size - n))
    return bank[off : off + n].reshape(shape)
