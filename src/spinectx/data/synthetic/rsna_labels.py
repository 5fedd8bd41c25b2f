"""RSNA 2024 labels of a synthetic study: spellings, severities, level frequencies and quirks (SPEC §6).

Everything here is drawn without rendering, so label statistics and the quirk schedule can be
checked cheaply (:func:`sample_rsna_labels`, :func:`study_quirk`).

**Frequencies.** ``DEFAULT_RSNA_FREQUENCIES`` are *approximations* of the class shares of the real
training labels as reported by public exploratory analyses of the Kaggle data (not official
numbers): spinal canal stenosis Normal/Mild 0.84, Moderate 0.09, Severe 0.07; neural foraminal
narrowing 0.72 / 0.22 / 0.06; subarticular stenosis 0.66 / 0.23 / 0.11. Disease is made more frequent
at the lower levels by ``DEFAULT_LEVEL_WEIGHTS`` (relative odds of Moderate-or-Severe): the odds at a
level are the condition's odds times the level weight times a common factor chosen so that the mean
over the five levels is the condition's share (so each condition's total is kept); the
Moderate:Severe ratio is the condition's at every level (:func:`level_probabilities`). With the
defaults, Moderate-or-Severe spinal stenosis is about 5 % at L1/L2 and 25 % at L4/L5.

**Quirks** (SPEC §6), one per quirky study, deterministic per ``(seed, index)``: within every block of
25 studies (indices ``25b … 25b+24``) the first ``len(QUIRKS)`` = 9 positions get the 9 quirks in an
order shuffled per ``(seed, b)``; positions 9–24 get none. So any dataset of 9 or more studies holds
every quirk, and each quirk touches 4 % of a large dataset. :func:`study_quirk` says which a study has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .seeding import study_rng

__all__ = [
    "CONDITIONS",
    "LEVELS",
    "SEVERITIES",
    "SERIES_DESCRIPTIONS",
    "TRAIN_COLUMNS",
    "CONDITION_GROUP",
    "DEFAULT_RSNA_FREQUENCIES",
    "DEFAULT_LEVEL_WEIGHTS",
    "QUIRKS",
    "QUIRK_BLOCK",
    "RsnaLabels",
    "column_name",
    "merge_rsna_frequencies",
    "level_probabilities",
    "sample_rsna_labels",
    "study_quirk",
]

#: condition spellings of ``train_label_coordinates.csv``, in the Kaggle column order of ``train.csv``
CONDITIONS: tuple[str, ...] = (
    "Spinal Canal Stenosis",
    "Left Neural Foraminal Narrowing",
    "Right Neural Foraminal Narrowing",
    "Left Subarticular Stenosis",
    "Right Subarticular Stenosis",
)
#: level spellings of ``train_label_coordinates.csv``
LEVELS: tuple[str, ...] = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")
#: severity values of ``train.csv`` (ordinal; a blank cell is "not labelled")
SEVERITIES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
#: the ``series_description`` values of ``train_series_descriptions.csv``
SERIES_DESCRIPTIONS: tuple[str, ...] = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
#: metric group of every condition
CONDITION_GROUP: dict[str, str] = {
    "Spinal Canal Stenosis": "spinal",
    "Left Neural Foraminal Narrowing": "foraminal",
    "Right Neural Foraminal Narrowing": "foraminal",
    "Left Subarticular Stenosis": "subarticular",
    "Right Subarticular Stenosis": "subarticular",
}

#: approximate class shares of the real training labels (public EDA; not official numbers)
DEFAULT_RSNA_FREQUENCIES: dict[str, dict[str, float]] = {
    "spinal": {"Normal/Mild": 0.84, "Moderate": 0.09, "Severe": 0.07},
    "foraminal": {"Normal/Mild": 0.72, "Moderate": 0.22, "Severe": 0.06},
    "subarticular": {"Normal/Mild": 0.66, "Moderate": 0.23, "Severe": 0.11},
}
#: relative frequency of Moderate-or-Severe per level (normalised to mean 1 before use)
DEFAULT_LEVEL_WEIGHTS: dict[str, float] = {"L1/L2": 0.3, "L2/L3": 0.7, "L3/L4": 1.2, "L4/L5": 1.7, "L5/S1": 1.1}

#: the SPEC §6 quirks, see :func:`study_quirk` and the module docstring
QUIRKS: tuple[str, ...] = (
    "axial_two_stacks",  # the Axial T2 series holds two stacks of different angulation (one SeriesInstanceUID)
    "two_axial_series",  # two Axial T2 series; subarticular labels of L4/L5 and L5/S1 on the second
    "instance_offset",  # every series' instance numbers start above 1 and have gaps
    "instance_reversed",  # one series' instance numbers run against the spatial (slice-position) order
    "missing_series",  # one series listed in train_series_descriptions.csv is not on disk (labels kept)
    "blank_some",  # 1-3 severities blank in train.csv (their coordinate rows kept)
    "blank_all",  # every severity blank in train.csv and no coordinate rows
    "spinal_two_slices",  # spinal labels of L4/L5 and L5/S1 on a neighbour of the mid-sagittal slice
    "rle",  # three files of one series stored RLE Lossless
)
#: quirks repeat in blocks of this many studies
QUIRK_BLOCK = 25

_SEVERITY_ALIAS = {"normal_mild": "Normal/Mild", "moderate": "Moderate", "severe": "Severe"}
_LEVEL_ALIAS = {lv.lower().replace("/", "_"): lv for lv in LEVELS}


def column_name(condition: str, level: str) -> str:
    """The ``train.csv`` column of ``condition`` at ``level``: ``Left Subarticular Stenosis``, ``L1/L2`` →
    ``left_subarticular_stenosis_l1_l2``."""
    return f"{condition.lower().replace(' ', '_')}_{level.lower().replace('/', '_')}"


#: the 25 severity columns of ``train.csv`` in Kaggle order (after ``study_id``)
TRAIN_COLUMNS: tuple[str, ...] = tuple(column_name(c, lv) for c in CONDITIONS for lv in LEVELS)


def merge_rsna_frequencies(frequencies: Mapping | None) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Class shares per group and level weights: the defaults with the groups given in
    ``frequencies`` replaced (``{"spinal": {"Normal/Mild": .8, "Moderate": .1, "Severe": .1}, ...,
    "levels": {"L1/L2": 1, ...}}``; the submission spellings ``normal_mild``/``moderate``/``severe`` and
    ``l1_l2``… also work, as command-line overrides cannot hold a slash). Shares are normalised per
    group, level weights to mean 1; a class or level left out of a given table gets 0 / keeps its
    default weight.

    Raises:
        ValueError: an unknown group, class or level, a negative value, or a group / the level
            weights summing to zero.
    """
    groups = {g: dict(v) for g, v in DEFAULT_RSNA_FREQUENCIES.items()}
    weights = dict(DEFAULT_LEVEL_WEIGHTS)
    for key, value in dict(frequencies or {}).items():
        if key == "levels":
            given = {_LEVEL_ALIAS.get(str(k), str(k)): v for k, v in dict(value).items()}
            unknown = set(given) - set(LEVELS)
            if unknown:
                raise ValueError(f"RSNA level weights: unknown levels {sorted(unknown)}; expected {list(LEVELS)}")
            weights.update({k: float(v) for k, v in given.items()})
        elif key in groups:
            given = {_SEVERITY_ALIAS.get(str(k), str(k)): v for k, v in dict(value).items()}
            unknown = set(given) - set(SEVERITIES)
            if unknown:
                raise ValueError(f"RSNA {key} frequencies: unknown classes {sorted(unknown)}; "
                                 f"expected {list(SEVERITIES)} (or {list(_SEVERITY_ALIAS)})")
            groups[key] = {s: float(given.get(s, 0.0)) for s in SEVERITIES}
        else:
            raise ValueError(f"unknown RSNA frequency group {key!r}; expected one of "
                             f"{sorted([*groups, 'levels'])}")
    for name, table in [*groups.items(), ("levels", weights)]:
        if any(not v >= 0 for v in table.values()):
            raise ValueError(f"RSNA {name} frequencies must be >= 0, got {table}")
        if sum(table.values()) <= 0:
            raise ValueError(f"RSNA {name} frequencies sum to zero")
    groups = {g: {s: p / sum(t.values()) for s, p in t.items()} for g, t in groups.items()}
    mean_w = sum(weights.values()) / len(weights)
    return groups, {lv: weights[lv] / mean_w for lv in LEVELS}


def level_probabilities(shares: Mapping[str, float], weights: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Class probabilities at every level: the odds of Moderate-or-Severe at a level are the
    group's odds times the level's weight times one common factor, chosen (by bisection) so that the
    mean share over the levels is the group's share; Moderate and Severe split it in the group's ratio."""
    abnormal = shares["Moderate"] + shares["Severe"]
    levels = list(weights)
    if abnormal <= 0.0 or abnormal >= 1.0:
        p = {lv: min(max(abnormal, 0.0), 1.0) for lv in levels}
    else:
        odds = abnormal / (1.0 - abnormal)

        def share_at(factor: float) -> dict[str, float]:
            return {lv: factor * odds * w / (1.0 + factor * odds * w) for lv, w in weights.items()}

        lo, hi = 0.0, 1.0
        while sum(share_at(hi).values()) / len(levels) < abnormal:
            hi *= 2.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sum(share_at(mid).values()) / len(levels) < abnormal else (lo, mid)
        p = share_at((lo + hi) / 2)
    split = (shares["Moderate"] / abnormal) if abnormal > 0 else 0.0
    return {lv: {"Normal/Mild": 1.0 - p[lv], "Moderate": p[lv] * split, "Severe": p[lv] * (1.0 - split)}
            for lv in levels}


def study_quirk(seed: int, index: int) -> str | None:
    """The quirk of study ``index`` of the synthetic RSNA set ``seed`` (one of ``QUIRKS``) or None."""
    block, position = divmod(int(index), QUIRK_BLOCK)
    if position >= len(QUIRKS):
        return None
    order = study_rng(seed, block, "rsna-quirk-order").permutation(len(QUIRKS))
    return QUIRKS[int(order[position])]


@dataclass(frozen=True)
class RsnaLabels:
    """Labels of one synthetic RSNA study.

    ``severity[(condition, level)]`` is the severity drawn in the image (every one of the 25);
    ``blank`` the cells written blank in ``train.csv`` (quirks ``blank_some`` / ``blank_all``);
    ``quirk`` the study's quirk (or None).
    """

    severity: dict[tuple[str, str], str]
    blank: frozenset[tuple[str, str]]
    quirk: str | None

    def written(self, condition: str, level: str) -> str:
        """The ``train.csv`` value of ``condition`` at ``level`` (``""`` when blank)."""
        return "" if (condition, level) in self.blank else self.severity[(condition, level)]

    def grade(self, condition: str, level: str) -> int:
        """Severity as 0 (Normal/Mild), 1 (Moderate) or 2 (Severe)."""
        return SEVERITIES.index(self.severity[(condition, level)])


def sample_rsna_labels(seed: int, index: int, frequencies: Mapping | None = None) -> RsnaLabels:
    """Draw the 25 severities of study ``index`` exactly as :func:`~.rsna.render_rsna_study` does, plus
    its quirk and blank cells (no rendering). Every (condition, level) is drawn independently at
    :func:`level_probabilities`.

    Raises:
        ValueError: bad ``frequencies`` (see :func:`merge_rsna_frequencies`).
    """
    groups, weights = merge_rsna_frequencies(frequencies)
    rng = study_rng(seed, index, "rsna-labels")
    severity: dict[tuple[str, str], str] = {}
    per_group = {g: level_probabilities(shares, weights) for g, shares in groups.items()}
    for condition in CONDITIONS:
        for level in LEVELS:
            probs = per_group[CONDITION_GROUP[condition]][level]
            u, acc = float(rng.random()), 0.0
            chosen = SEVERITIES[0]
            for cls in SEVERITIES:
                if probs[cls] <= 0:
                    continue
                acc += probs[cls]
                chosen = cls
                if u < acc:
                    break
            severity[(condition, level)] = chosen
    quirk = study_quirk(seed, index)
    blank: frozenset[tuple[str, str]] = frozenset()
    if quirk == "blank_all":
        blank = frozenset(severity)
    elif quirk == "blank_some":
        cells = list(severity)
        qrng = study_rng(seed, index, "rsna-blank")
        picked = qrng.choice(len(cells), size=int(qrng.integers(1, 4)), replace=False)
        blank = frozenset(cells[int(i)] for i in picked)
    return RsnaLabels(severity=severity, blank=blank, quirk=quirk)
