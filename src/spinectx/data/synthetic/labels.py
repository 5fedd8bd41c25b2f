"""TianChi landmark classes of a synthetic study, drawn before any geometry (no pixels).

``sample_labels(seed, index)`` gives the vertebra (``v1``/``v2``) and disc (``v1``–``v4``, plus the
``v5`` Schmorl's-node flag) class of every level of study ``index``, at the frequencies of the TianChi
training set (``DEFAULT_FREQUENCIES``) unless overridden. The phantom (:mod:`.anatomy`) draws each
class with its own visible appearance; the RSNA writer reuses these classes for the look of bodies
and discs only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .seeding import study_rng

__all__ = ["DEFAULT_FREQUENCIES", "VERTEBRAE", "DISCS", "LANDMARKS", "StudyLabels", "sample_labels"]

#: class frequencies of the TianChi training annotation: vertebra and disc main classes, and the
#: share of discs carrying the extra ``v5`` (Schmorl's node) tag
DEFAULT_FREQUENCIES: dict[str, dict[str, float]] = {
    "vertebra": {"v1": 191 / 1005, "v2": 814 / 1005},
    "disc": {"v1": 574 / 1206, "v2": 300 / 1206, "v3": 285 / 1206, "v4": 47 / 1206},
    "disc_extra": {"v5": 64 / 1206},
}

VERTEBRAE: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")
DISCS: tuple[str, ...] = ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
LANDMARKS: tuple[str, ...] = VERTEBRAE + DISCS

VERT_CLASSES = ("v1", "v2")  # drawable main classes
DISC_CLASSES = ("v1", "v2", "v3", "v4")


def merge_frequencies(frequencies: dict | None) -> dict[str, dict[str, float]]:
    """``DEFAULT_FREQUENCIES`` with the groups given in ``frequencies`` replaced, each normalised.

    Raises:
        KeyError: an unknown group. ValueError: a class that cannot be drawn, a negative frequency,
            a group summing to zero, a ``v5`` probability outside [0, 1].
    """
    out = {g: dict(v) for g, v in DEFAULT_FREQUENCIES.items()}
    if frequencies:
        for group, probs in frequencies.items():
            if group not in out:
                raise KeyError(f"unknown frequency group {group!r}; expected one of {sorted(out)}")
            out[group] = {str(k): float(p) for k, p in dict(probs).items()}
    for group, allowed in (("vertebra", VERT_CLASSES), ("disc", DISC_CLASSES)):
        bad = set(out[group]) - set(allowed)
        if bad:
            raise ValueError(f"{group} frequencies: classes {sorted(bad)} not drawable (allowed {allowed})")
        if any(p < 0 for p in out[group].values()):
            raise ValueError(f"{group} frequencies must be >= 0")
        total = sum(out[group].values())
        if total <= 0:
            raise ValueError(f"{group} frequencies sum to zero")
        out[group] = {c: out[group].get(c, 0.0) / total for c in allowed}
    bad = set(out["disc_extra"]) - {"v5"}
    if bad:
        raise ValueError(f"disc_extra frequencies: only 'v5' is supported, got {sorted(bad)}")
    p5 = float(out["disc_extra"].get("v5", 0.0))
    if not 0.0 <= p5 <= 1.0:
        raise ValueError("disc_extra v5 probability must lie in [0, 1]")
    out["disc_extra"] = {"v5": p5}
    return out


def pick(u: float, probs: dict[str, float]) -> str:
    """The class whose cumulative-probability interval holds ``u`` in [0, 1) (classes with p <= 0 skipped)."""
    acc = 0.0
    last = None
    for cls, p in probs.items():
        if p <= 0:
            continue
        acc += p
        last = cls
        if u < acc:
            return cls
    assert last is not None
    return last


@dataclass(frozen=True)
class StudyLabels:
    """Classes of one study, drawn before any geometry (cheap: no pixels).

    ``vertebra``/``disc`` hold the drawable main class of every body / disc of the column
    (landmarks plus the context levels T11, T12, T11-T12); ``schmorl`` marks discs with the extra
    ``v5`` tag; ``missing`` lists landmarks left out of the annotation; ``extra`` says whether the
    annotation carries one identification outside the 11.
    """

    vertebra: dict[str, str]
    disc: dict[str, str]
    schmorl: dict[str, bool]
    missing: frozenset[str]
    extra: bool

    def tag(self, ident: str) -> tuple[str, str]:
        """``(group, tag value)`` as written in the annotation, e.g. ``("disc", "v2,v5")``."""
        if ident in self.vertebra:
            return "vertebra", self.vertebra[ident]
        value = self.disc[ident]
        if self.schmorl.get(ident, False):
            value += ",v5"
        return "disc", value


def sample_labels(
    seed: int,
    index: int,
    frequencies: dict | None = None,
    p_missing: float = 0.02,
    p_extra: float = 0.05,
) -> StudyLabels:
    """Draw the classes of study ``index`` exactly as :func:`render_study` does (no rendering)."""
    freq = merge_frequencies(frequencies)
    if not (0.0 <= p_missing <= 1.0 and 0.0 <= p_extra <= 1.0):
        raise ValueError("p_missing and p_extra must lie in [0, 1]")
    rng = study_rng(seed, index, "labels")
    p5 = freq["disc_extra"]["v5"]
    vert = {v: pick(float(rng.random()), freq["vertebra"]) for v in VERTEBRAE}
    disc: dict[str, str] = {}
    schmorl: dict[str, bool] = {}
    for d in DISCS:
        disc[d] = pick(float(rng.random()), freq["disc"])
        schmorl[d] = bool(rng.random() < p5)
    miss_u = rng.random(len(LANDMARKS))
    missing = frozenset(n for n, u in zip(LANDMARKS, miss_u) if u < p_missing)
    extra = bool(rng.random() < p_extra)
    # context levels drawn after the landmarks so the landmark stream never shifts
    for v in ("T11", "T12"):
        vert[v] = pick(float(rng.random()), freq["vertebra"])
    disc["T11-T12"] = pick(float(rng.random()), freq["disc"])
    schmorl["T11-T12"] = False
    return StudyLabels(vertebra=vert, disc=disc, schmorl=schmorl, missing=missing, extra=extra)


