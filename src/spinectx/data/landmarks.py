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
    """

    name: str
    identifications: tuple[str, ...]
    classes: tuple[str, ...]
    normal: str
    title: str

    def __post_init__(self) -> None:
        if self.normal not in self.classes:
            raise ValueError(f"group {self.name!r}: normal class {self.normal!r} not in {self.classes}")
        if len(set(self.identifications)) != len(self.identifications):
            raise ValueError(f"group {self.name!r}: duplicate identifications {self.identifications}")


class LandmarkSet:
    """Ordered landmarks of a dataset; the order fixes the model's output channels.

    Build it from config with :meth:`from_config`::

        groups:
          vertebra: {identifications: [L1, ...], classes: [v1, v2], normal: v1, title: Vertebra}
          disc: {identifications: [T12-L1, ...], classes: [v1, ..., v5], normal: v1, title: Disc}
    """

    def __init__(self, groups: Sequence[LandmarkGroup]):
        if not groups:
            raise ValueError("a landmark set needs at least one group")
        self.groups: tuple[LandmarkGroup, ...] = tuple(groups)
        self.names: tuple[str, ...] = tuple(i for g in self.groups for i in g.identifications)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"identifications appear in more than one group: {self.names}")
        self.index: dict[str, int] = {n: k for k, n in enumerate(self.names)}
        self.group_of: tuple[int, ...] = tuple(gi for gi, g in enumerate(self.groups) for _ in g.identifications)
        self.max_classes: int = max(len(g.classes) for g in self.groups)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "LandmarkSet":
        """Build from a mapping ``{"groups": {name: {identifications, classes, normal, title?}}}``."""
        groups_cfg = cfg["groups"] if "groups" in cfg else cfg
        groups = []
        for name, g in groups_cfg.items():
            groups.append(
                LandmarkGroup(
                    name=str(name),
                    identifications=tuple(str(i) for i in g["identifications"]),
                    classes=tuple(str(c) for c in g["classes"]),
                    normal=str(g.get("normal", g["classes"][0])),
                    title=str(g.get("title", str(name).capitalize())),
                )
            )
        return cls(groups)

    def to_config(self) -> dict:
        """Inverse of :meth:`from_config` (plain dict, safe to store in checkpoints)."""
        return {
            "groups": {
                g.name: {
                    "identifications": list(g.identifications),
                    "classes": list(g.classes),
                    "normal": g.normal,
                    "title": g.title,
                }
                for g in self.groups
            }
        }

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
