"""Landmark set and class vocabularies of a dataset, built from the data config.

Nothing here hard-codes the TianChi landmarks: ``conf/data/landmarks/tianchi.yaml`` declares them,
and another dataset (e.g. RSNA 2024 disc levels) declares its own.

A *group* is a family of landmarks sharing one class vocabulary (TianChi: ``vertebra`` and
``disc``). Every landmark has a binary target "abnormal" = any tag other than the group's
``normal`` class, and a multi-hot vector over the group's classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandmarkGroup:
    """One family of landmarks (e.g. discs) with its own class vocabulary.

    Attributes:
        name: group name, also the annotation tag key (``"disc"`` reads ``tag["disc"]``).
        identifications: landmark names in output-channel order.
        classes: class codes in the tag vocabulary (e.g. ``("v1", "v2")``).
        normal: the class that means "not abnormal".
        title: display name used in metric keys (``L-<title>``).
        flags: classes that are independent findings a landmark may carry *besides* one of the
            other (mutually exclusive) classes — TianChi's ``v5`` (Schmorl's node, ``"v3,v5"``).
        class_weights: loss weight per exclusive class, in ``exclusive`` order (RSNA 2024: 1, 2, 4
            for normal/mild, moderate, severe, as its metric weighs them); None = unweighted.
    """

    name: str
    identifications: tuple[str, ...]
    classes: tuple[str, ...]
    normal: str
    title: str
    flags: tuple[str, ...] = ()
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.normal not in self.classes:
            raise ValueError(f"group {self.name!r}: normal class {self.normal!r} not in {self.classes}")
        if len(set(self.identifications)) != len(self.identifications):
            raise ValueError(f"group {self.name!r}: duplicate identifications {self.identifications}")
        unknown = [f for f in self.flags if f not in self.classes]
        if unknown or self.normal in self.flags:
            raise ValueError(f"group {self.name!r}: flags {list(self.flags)} must be classes other than the normal one")
        if self.class_weights is not None and len(self.class_weights) != len(self.exclusive):
            raise ValueError(f"group {self.name!r}: {len(self.class_weights)} class_weights for the "
                             f"{len(self.exclusive)} exclusive classes {list(self.exclusive)}")

    @property
    def exclusive(self) -> tuple[str, ...]:
        """The mutually exclusive classes (all classes but the flags), in vocabulary order."""
        return tuple(c for c in self.classes if c not in self.flags)


class LandmarkSet:
    """Ordered landmarks of a dataset; the order fixes the model's output channels.

    Build it from config with :meth:`from_config`::

        groups:
          vertebra: {identifications: [L1, ...], classes: [v1, v2], normal: v1, title: Vertebra}
          disc: {identifications: [T12-L1, ...], classes: [v1, ..., v5], normal: v1, title: Disc}
    """

    def __init__(self, groups: Sequence[LandmarkGroup], flip_pairs: Sequence[Sequence[str]] = ()):
        if not groups:
            raise ValueError("a landmark set needs at least one group")
        self.groups: tuple[LandmarkGroup, ...] = tuple(groups)
        self.names: tuple[str, ...] = tuple(i for g in self.groups for i in g.identifications)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"identifications appear in more than one group: {self.names}")
        self.index: dict[str, int] = {n: k for k, n in enumerate(self.names)}
        self.group_of: tuple[int, ...] = tuple(gi for gi, g in enumerate(self.groups) for _ in g.identifications)
        self.max_classes: int = max(len(g.classes) for g in self.groups)
        self.flip_pairs: tuple[tuple[str, str], ...] = tuple((str(a), str(b)) for a, b in flip_pairs)
        permutation = list(range(len(self.names)))
        for a, b in self.flip_pairs:
            if a not in self.index or b not in self.index or self.group(a) != self.group(b):
                raise ValueError(f"flip pair ({a}, {b}): both must be landmarks of one group of {self.names}")
            permutation[self.index[a]], permutation[self.index[b]] = self.index[b], self.index[a]
        #: row k of a horizontally flipped sample is landmark flip_permutation[k] of the original
        #: (left ⇄ right for the pairs, identity elsewhere)
        self.flip_permutation: tuple[int, ...] = tuple(permutation)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "LandmarkSet":
        """Build from a mapping ``{"groups": {name: {identifications, classes, normal, title?,
        flags?, class_weights?}}, "flip_pairs"?: [[left, right], ...]}``."""
        groups_cfg = cfg["groups"] if "groups" in cfg else cfg
        groups = []
        for name, g in groups_cfg.items():
            weights = g.get("class_weights")
            groups.append(
                LandmarkGroup(
                    name=str(name),
                    identifications=tuple(str(i) for i in g["identifications"]),
                    classes=tuple(str(c) for c in g["classes"]),
                    normal=str(g.get("normal", g["classes"][0])),
                    title=str(g.get("title", str(name).capitalize())),
                    flags=tuple(str(f) for f in g.get("flags") or ()),
                    class_weights=None if weights is None else tuple(float(w) for w in weights),
                )
            )
        return cls(groups, flip_pairs=cfg.get("flip_pairs") or () if "groups" in cfg else ())

    def to_config(self) -> dict:
        """Inverse of :meth:`from_config` (plain dict, safe to store in checkpoints)."""
        out: dict = {"groups": {}}
        for g in self.groups:
            entry = {"identifications": list(g.identifications), "classes": list(g.classes), "normal": g.normal,
                     "title": g.title}
            if g.flags:
                entry["flags"] = list(g.flags)
            if g.class_weights is not None:
                entry["class_weights"] = list(g.class_weights)
            out["groups"][g.name] = entry
        if self.flip_pairs:
            out["flip_pairs"] = [list(p) for p in self.flip_pairs]
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        parts = ", ".join(f"{g.name}={list(g.identifications)}" for g in self.groups)
        return f"LandmarkSet({parts})"

    def group(self, identification: str) -> LandmarkGroup:
        return self.groups[self.group_of[self.index[identification]]]

    def parse_tags(self, identification: str, value: str | Iterable[str]) -> tuple[str, ...]:
        """Split a tag value like ``"v3,v5"`` into known class codes of the landmark's group.

        Raises:
            ValueError: if a code is not in the group's vocabulary (callers turn this into a
                problem report naming the file).
        """
        group = self.group(identification)
        codes = value.split(",") if isinstance(value, str) else list(value)
        codes = tuple(c.strip() for c in codes if c.strip())
        unknown = [c for c in codes if c not in group.classes]
        if unknown:
            raise ValueError(f"{identification}: unknown {group.name} class(es) {unknown}; expected {list(group.classes)}")
        return codes

    def encode_tags(self, identification: str, tags: Sequence[str]) -> tuple[float, np.ndarray]:
        """Tags of one landmark → (abnormal in {0, 1}, multi-hot [max_classes]).

        A landmark without tags has abnormal = NaN (unknown) and an all-zero multi-hot.
        """
        group = self.group(identification)
        multi_hot = np.zeros(self.max_classes, dtype=np.float32)
        for t in tags:
            multi_hot[group.classes.index(t)] = 1.0
        if not tags:
            return float("nan"), multi_hot
        return float(any(t != group.normal for t in tags)), multi_hot
