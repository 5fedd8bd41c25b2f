"""Deterministic synthetic lumbar-spine MR studies in the TianChi 2020 layout (SPEC §1–2).

``generate_dataset`` writes::

    OUT/<split>/study<k>/image<j>.dcm      # T1 sag + T2 sag + T2 axial, one flat folder, shuffled names
    OUT/<split>_annotation.json            # SPEC §2 format, one entry per study

Every study is a parametric phantom of the lumbar spine (T11..L5 bodies, the sacrum, the discs between
them, the spinal canal with CSF and cord / cauda, posterior elements, back muscles, fat, abdominal
content) rendered on a sagittal stack; the annotated frame is the middle slice of the T2 sagittal
series. Each landmark class has its own visible appearance (SPEC §1):

* vertebra ``v1`` homogeneous marrow; ``v2`` mottled marrow + Modic-like band along the endplate(s)
  + anterior osteophyte(s);
* disc ``v1`` bright (hydrated) on T2 with a brighter nucleus; ``v2`` dark, low, posterior margin
  bulging 2–4 mm over the whole height; ``v3`` dark + focal 4–6 mm knob into the canal; ``v4`` dark +
  6–10 mm herniation migrating up or down the canal; ``v5`` (extra tag) Schmorl's node: a pit of disc
  signal with a dark rim in the adjacent endplate.

Determinism: study ``k`` depends only on ``(seed, k)``; every random stream comes from a hash of
``(seed, k, stream name)``, UIDs and dates are hashed too, and the Rician noise is read from a fixed
noise bank at seeded offsets, so ``workers > 1`` writes byte-identical files.

Geometry conventions (patient LPS): sagittal ``ImageOrientationPatient = [0,1,0, 0,0,-1]`` (columns run
anterior→posterior, rows head→feet), slice normal ``row × col = (-1,0,0)``, slices in slice-position
order = ascending projection of ``ImagePositionPatient`` on that normal (``InstanceNumber`` follows
it). Axial ``[1,0,0, 0,1,0]``, one slice through each of the lowest 5–6 discs. Pixel ``(row r, col c)``
of a sagittal frame lies at ``(X, Y) = (c·dx, r·dy)`` mm in the plane; annotation ``coord = [c, r]``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import multiprocessing
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

__all__ = [
    "DEFAULT_FREQUENCIES",
    "VERTEBRAE",
    "DISCS",
    "LANDMARKS",
    "LABELS",
    "StudyLabels",
    "SyntheticLandmark",
    "SyntheticSeries",
    "SyntheticStudy",
    "sample_labels",
    "render_study",
    "generate_dataset",
    "preview_image",
]

# --------------------------------------------------------------------------------------------------
# Public constants
# --------------------------------------------------------------------------------------------------

DEFAULT_FREQUENCIES: dict[str, dict[str, float]] = {
    "vertebra": {"v1": 191 / 1005, "v2": 814 / 1005},
    "disc": {"v1": 574 / 1206, "v2": 300 / 1206, "v3": 285 / 1206, "v4": 47 / 1206},
    "disc_extra": {"v5": 64 / 1206},
}

VERTEBRAE: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")
DISCS: tuple[str, ...] = ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
LANDMARKS: tuple[str, ...] = VERTEBRAE + DISCS

#: Tissue codes of ``SyntheticStudy.label_map`` (annotated frame only; where a structure covers > 50 %).
LABELS: dict[str, int] = {
    "air": 0,
    "soft": 1,
    "csf": 2,
    "cord": 3,
    "posterior": 4,
    "disc": 5,
    "herniation": 6,
    "bone": 7,
    "schmorl": 8,
    "osteophyte": 9,
}

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
ANNOTATOR = 54
_VERSION = "v0.1"

_VERT_CLASSES = ("v1", "v2")
_DISC_CLASSES = ("v1", "v2", "v3", "v4")

# Whole column, top to bottom. Landmarks are a subset; T11/T12/S1..S4 are context.
_BODIES = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4")
_BODY_H = (0.90, 0.94, 0.97, 1.00, 1.02, 1.02, 0.98, 0.95, 0.74, 0.60, 0.48)  # half-height factors
_BODY_W = (0.88, 0.92, 0.95, 0.98, 1.00, 1.02, 1.03, 1.00, 0.80, 0.62, 0.48)  # half-depth factors
_JOINTS = ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1", "S1-S2", "S2-S3", "S3-S4")
_DISC_H = (0.55, 0.65, 0.78, 0.88, 0.97, 1.05, 0.95)  # disc-height factors of the 7 real discs
_LORDOSIS_SHARE = (0.12, 0.15, 0.20, 0.25, 0.28)  # share of L1→S1 lordosis at L1-L2 .. L5-S1

# (T1, T2) base intensities on a 0..1 scale, jittered per study.
_TISSUE: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "fat": (0.88, 0.62),
    "muscle": (0.30, 0.22),
    "marrow": (0.62, 0.38),
    "marrow_sacrum": (0.68, 0.42),
    "cortex": (0.08, 0.06),
    "annulus_n": (0.28, 0.27),
    "nucleus_n": (0.30, 0.95),
    "annulus_d": (0.27, 0.17),
    "nucleus_d": (0.29, 0.21),
    "remnant": (0.30, 0.22),
    "herniation": (0.30, 0.30),
    "csf": (0.12, 1.0),
    "cord": (0.38, 0.36),
    "ligament": (0.12, 0.10),
    "spinous": (0.50, 0.33),
    "pedicle": (0.52, 0.36),
    "foramen": (0.78, 0.58),
    "modic1": (0.30, 0.75),
    "modic2": (0.90, 0.72),
    "node": (0.26, 0.62),
    "bowel": (0.40, 0.34),
    "fluid": (0.15, 0.85),
}

_DESC = {
    "t1_sag": ("T1_TSE_SAG", "t1_tse_sag_320", "SAG T1", "T1W_TSE_SAG", "Sag T1 FSE", "t1_tse_sag", "T1 SAG"),
    "t2_sag": ("T2_TSE_SAG", "t2_tse_sag_384", "SAG T2", "T2W_TSE_SAG", "Sag T2 FSE", "t2_tse_sag", "T2 SAG"),
    "t2_ax": ("T2_TSE_TRA", "t2_tse_tra_320", "AX T2", "T2W_TSE_TRA", "Ax T2 FSE", "t2_tse_tra", "T2 TRA"),
}
_DESC_NEUTRAL = {"t1_sag": "SAG_TSE", "t2_sag": "SAG_TSE", "t2_ax": "TRA_TSE"}  # TE/TR must decide

_MATRICES = (320, 384, 416, 448, 512, 576, 640)


# --------------------------------------------------------------------------------------------------
# Determinism helpers
# --------------------------------------------------------------------------------------------------


def _hash_int(*parts: Any) -> int:
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def _rng(seed: int, index: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(_hash_int("spinectx-synth", seed, index, stream) & ((1 << 64) - 1))


def _uid(seed: int, index: int, *parts: Any) -> str:
    digits = str(_hash_int("uid", seed, index, *parts))[:30]
    return UID_PREFIX + digits  # 26 + 30 = 56 chars, first digit of the hash part is non-zero


_NOISE_BANK: np.ndarray | None = None
_NOISE_BANK_SIZE = 1 << 22


def _noise_bank() -> np.ndarray:
    """A fixed bank of N(0,1) float32 samples, identical in every process."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20200917).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)
    return _NOISE_BANK


def _noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    n = shape[0] * shape[1]
    bank = _noise_bank()
    off = int(rng.integers(0, bank.size - n))
    return bank[off : off + n].reshape(shape)


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def _merge_frequencies(frequencies: dict | None) -> dict[str, dict[str, float]]:
    out = {g: dict(v) for g, v in DEFAULT_FREQUENCIES.items()}
    if frequencies:
        for group, probs in frequencies.items():
            if group not in out:
                raise KeyError(f"unknown frequency group {group!r}; expected one of {sorted(out)}")
            out[group] = {str(k): float(p) for k, p in dict(probs).items()}
    for group, allowed in (("vertebra", _VERT_CLASSES), ("disc", _DISC_CLASSES)):
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


def _pick(u: float, probs: dict[str, float]) -> str:
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
    freq = _merge_frequencies(frequencies)
    if not (0.0 <= p_missing <= 1.0 and 0.0 <= p_extra <= 1.0):
        raise ValueError("p_missing and p_extra must lie in [0, 1]")
    rng = _rng(seed, index, "labels")
    p5 = freq["disc_extra"]["v5"]
    vert = {v: _pick(float(rng.random()), freq["vertebra"]) for v in VERTEBRAE}
    disc: dict[str, str] = {}
    schmorl: dict[str, bool] = {}
    for d in DISCS:
        disc[d] = _pick(float(rng.random()), freq["disc"])
        schmorl[d] = bool(rng.random() < p5)
    miss_u = rng.random(len(LANDMARKS))
    missing = frozenset(n for n, u in zip(LANDMARKS, miss_u) if u < p_missing)
    extra = bool(rng.random() < p_extra)
    # context levels drawn after the landmarks so the landmark stream never shifts
    for v in ("T11", "T12"):
        vert[v] = _pick(float(rng.random()), freq["vertebra"])
    disc["T11-T12"] = _pick(float(rng.random()), freq["disc"])
    schmorl["T11-T12"] = False
    return StudyLabels(vertebra=vert, disc=disc, schmorl=schmorl, missing=missing, extra=extra)


# --------------------------------------------------------------------------------------------------
# Data classes returned by render_study
# --------------------------------------------------------------------------------------------------


@dataclass
class SyntheticLandmark:
    """One labelled structure of the annotated frame."""

    identification: str
    group: str  # "vertebra" | "disc"
    tag: str  # "v2", "v3,v5", ...
    xy: tuple[float, float]  # exact (column, row) in pixels of the annotated frame
    annotated: bool  # written to the annotation JSON
    extra: bool = False  # identification outside the 11 landmarks

    @property
    def coord(self) -> list[int]:
        return [int(math.floor(self.xy[0] + 0.5)), int(math.floor(self.xy[1] + 0.5))]


@dataclass
class SyntheticSeries:
    role: str  # "t1_sag" | "t2_sag" | "t2_ax"
    uid: str
    number: int
    description: str
    echo_time: float
    repetition_time: float
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # (dy, dx) = DICOM PixelSpacing
    slice_thickness: float
    spacing_between_slices: float | None
    positions: np.ndarray  # (n, 3) ImagePositionPatient, slice-position order
    pixels: np.ndarray  # (n, rows, cols) uint16, slice-position order
    sop_uids: list[str]  # slice-position order
    filenames: list[str]  # slice-position order


@dataclass
class SyntheticStudy:
    seed: int
    index: int
    study_uid: str
    labels: StudyLabels
    series: dict[str, SyntheticSeries]
    files: list[tuple[str, Dataset]]  # (file name, dataset), in file-name order
    annotation: dict  # the JSON entry of this study
    landmarks: dict[str, SyntheticLandmark]  # every drawn structure that could be annotated
    annotated_role: str
    annotated_index: int  # zIndex of the annotated frame in its series
    label_map: np.ndarray  # uint8 LABELS codes of the annotated frame

    @property
    def annotated_frame(self) -> np.ndarray:
        return self.series[self.annotated_role].pixels[self.annotated_index]


# --------------------------------------------------------------------------------------------------
# Small geometry helpers
# --------------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """Local frame in the image plane (mm): t = along the spine (feet), n = posterior."""

    cx: float
    cy: float
    tx: float
    ty: float

    @property
    def nx(self) -> float:
        return self.ty

    @property
    def ny(self) -> float:
        return -self.tx

    def point(self, a: float, b: float) -> tuple[float, float]:
        return (self.cx + a * self.tx + b * self.nx, self.cy + a * self.ty + b * self.ny)

    def local(self, x: float, y: float) -> tuple[float, float]:
        dx, dy = x - self.cx, y - self.cy
        return (dx * self.tx + dy * self.ty, dx * self.nx + dy * self.ny)


@dataclass
class _Grid:
    rows: int
    cols: int
    dy: float
    dx: float
    edge: float  # soft-edge width, mm


@dataclass
class _Patch:
    sl: tuple[slice, slice]
    xs: np.ndarray  # (1, w) X - frame.cx
    ys: np.ndarray  # (h, 1) Y - frame.cy
    a: np.ndarray
    b: np.ndarray
    frame: _Frame

    def coords_in(self, other: _Frame) -> tuple[np.ndarray, np.ndarray]:
        ox = self.xs + np.float32(self.frame.cx - other.cx)
        oy = self.ys + np.float32(self.frame.cy - other.cy)
        return ox * other.tx + oy * other.ty, ox * other.nx + oy * other.ny


def _patch(grid: _Grid, f: _Frame, a0: float, a1: float, b0: float, b1: float) -> _Patch | None:
    px, py = zip(*(f.point(a, b) for a in (a0, a1) for b in (b0, b1)))
    c0 = max(0, int(math.floor(min(px) / grid.dx)))
    c1 = min(grid.cols, int(math.ceil(max(px) / grid.dx)) + 1)
    r0 = max(0, int(math.floor(min(py) / grid.dy)))
    r1 = min(grid.rows, int(math.ceil(max(py) / grid.dy)) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    xs = (np.arange(c0, c1, dtype=np.float32) * np.float32(grid.dx) - np.float32(f.cx))[None, :]
    ys = (np.arange(r0, r1, dtype=np.float32) * np.float32(grid.dy) - np.float32(f.cy))[:, None]
    a = xs * np.float32(f.tx) + ys * np.float32(f.ty)
    b = xs * np.float32(f.nx) + ys * np.float32(f.ny)
    return _Patch((slice(r0, r1), slice(c0, c1)), xs, ys, a, b, f)


def _soft(dist: np.ndarray, edge: float) -> np.ndarray:
    """Coverage from a signed distance (mm, > 0 inside): linear ramp one ``edge`` wide."""
    out = dist * np.float32(1.0 / edge)
    out += np.float32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _superellipse_dist(a: np.ndarray, b: np.ndarray, h: float, w: float, p: float = 5.0) -> np.ndarray:
    """Approximate signed distance (mm, > 0 inside) to ``|a/h|^p + |b/w|^p = 1``."""
    ra = np.abs(a) * np.float32(1.0 / h)
    rb = np.abs(b) * np.float32(1.0 / w)
    rho = (ra**p + rb**p) ** np.float32(1.0 / p)
    scale = np.where(ra > rb, np.float32(h), np.float32(w))
    return (1.0 - rho) * scale


def _ellipse_dist(u: np.ndarray, v: np.ndarray, eu: float, ev: float) -> np.ndarray:
    r = np.sqrt((u * np.float32(1.0 / eu)) ** 2 + (v * np.float32(1.0 / ev)) ** 2)
    return (1.0 - r) * np.float32(min(eu, ev))


def _field(rng: np.random.Generator, shape: tuple[int, int], cell_r: float, cell_c: float) -> np.ndarray:
    """Smooth random field ~N(0, 1) with correlation length ~cell (pixels)."""
    h = max(2, int(shape[0] / max(cell_r, 1.0)) + 2)
    w = max(2, int(shape[1] / max(cell_c, 1.0)) + 2)
    g = rng.standard_normal((h, w)).astype(np.float32)
    out = cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    out *= np.float32(1.35)  # cubic interpolation shrinks the variance
    return out


class _Canvas:
    def __init__(self, t1: np.ndarray, t2: np.ndarray, lab: np.ndarray | None):
        self.t1, self.t2, self.lab = t1, t2, lab

    def blend(self, sl, alpha: np.ndarray, v1, v2, label: int | None = None) -> None:
        x = self.t1[sl]
        x += alpha * (v1 - x)
        y = self.t2[sl]
        y += alpha * (v2 - y)
        if self.lab is not None and label is not None:
            self.lab[sl][alpha > 0.5] = label


# --------------------------------------------------------------------------------------------------
# Study geometry
# --------------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


@dataclass
class _Acq:
    rows: int
    cols: int
    dy: float
    dx: float
    n_slices: int
    spacing: float
    thickness: float
    x_mid: float
    y_c: float
    z_c: float


def _sample_acquisition(rng: np.random.Generator) -> _Acq:
    dx = round(_u(rng, 0.5, 0.9), 4)
    dy = dx if rng.random() < 0.7 else round(dx * _u(rng, 0.96, 1.04), 4)
    dy = min(0.9, max(0.5, dy))

    def matrix(fov_lo: float, fov_hi: float, d: float) -> int:
        ok = [m for m in _MATRICES if fov_lo <= m * d <= fov_hi]
        if not ok:  # closest FOV to the window
            ok = [min(_MATRICES, key=lambda m: min(abs(m * d - fov_lo), abs(m * d - fov_hi)))]
        w = np.array([1.0 / m**2 for m in ok])  # smaller matrices are more common (and cheaper)
        return int(ok[int(rng.choice(len(ok), p=w / w.sum()))])

    cols = matrix(260.0, 340.0, dx)
    if rng.random() < 0.6:
        rows = matrix(max(260.0, cols * dx - 5), 360.0, dy) if dy != dx else cols
    else:
        rows = matrix(max(270.0, cols * dx), 390.0, dy)
    n = int(rng.choice([7, 9, 11], p=[0.3, 0.45, 0.25]))
    spacing = round(_u(rng, 3.5, 4.5), 2)
    thickness = round(spacing * _u(rng, 0.8, 1.0), 2)
    return _Acq(
        rows=rows,
        cols=cols,
        dy=dy,
        dx=dx,
        n_slices=n,
        spacing=spacing,
        thickness=thickness,
        x_mid=round(_u(rng, -8, 8), 3),
        y_c=round(_u(rng, -10, 50), 3),
        z_c=round(_u(rng, -60, 60), 3),
    )


@dataclass
class _Body:
    name: str
    frame: _Frame
    h: float  # half height (along t)
    w: float  # half AP depth (along n)
    cls: str  # v1 | v2 | sacral
    lat: float  # lateral half width (mm)
    marrow: str = "marrow"
    tex_amp: float = 0.04
    modic_sides: tuple[int, ...] = ()  # -1 upper endplate, +1 lower endplate
    modic_type: int = 2
    modic_band: float = 4.0
    osteophytes: tuple[tuple[int, float, float, float], ...] = ()  # (side, length, width, angle)


@dataclass
class _Disc:
    name: str
    frame: _Frame  # centre of the disc, mean orientation
    upper: _Body
    lower: _Body
    w: float
    height: float  # along the centre line
    cls: str  # v1..v4 | remnant
    bulge: float
    lat: float
    nucleus_shift: float = 0.0


@dataclass
class _Hernia:
    disc: _Disc
    kind: str  # bulge (v2) | v3 | v4
    depth: float
    a0: float
    ha: float
    direction: int = 1
    migration: float = 0.0
    x0: float = 0.0
    lat: float = 8.0


@dataclass
class _Node:
    body: _Body
    side: int  # -1: pit in the body's upper endplate, +1: lower endplate
    b0: float
    r: float
    x0: float
    lat: float
    value_t2: float


@dataclass
class _Spinous:
    body: _Body
    b0: float
    length: float
    tilt: float  # radians, tip points caudally
    a_off: float
    h0: float
    h1: float


@dataclass
class _Spine:
    bodies: dict[str, _Body]
    discs: dict[str, _Disc]
    hernias: list[_Hernia]
    nodes: list[_Node]
    spinous: list[_Spinous]
    curve_xy: np.ndarray  # (m, 2) image mm, 2 mm spacing
    curve_s: np.ndarray
    curve_t: np.ndarray  # unit tangents
    dc: dict[str, float]  # canal depth per body/disc
    canal_half_width: float
    lat_body: float
    s_conus: float = 0.0
    s_sac_end: float = 0.0
    s_canal_end: float = 0.0


def _rot(v: np.ndarray, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _build_spine(rng: np.random.Generator, labels: StudyLabels, acq: _Acq) -> tuple[_Spine, dict[str, Any]]:
    """Chain the column in a canonical frame, then rotate / place it in the image (mm)."""
    hb = _u(rng, 11.0, 15.0)  # half body height: bodies 22..30 mm
    wb = hb * _u(rng, 1.2, 1.42)
    lat_body = _u(rng, 20.0, 25.0)
    hd0 = _u(rng, 8.0, 11.0)
    psi_l1 = math.radians(_u(rng, -22.0, -10.0))
    lordosis = math.radians(_u(rng, 35.0, 58.0))
    psi = {"T11": psi_l1 + math.radians(_u(rng, -3, 3)), "T12": psi_l1 + math.radians(_u(rng, -2, 2)), "L1": psi_l1}
    acc = psi_l1
    for name, share in zip(("L2", "L3", "L4", "L5", "S1"), _LORDOSIS_SHARE):
        acc += lordosis * share * _u(rng, 0.85, 1.15)
        psi[name] = acc
    psi["S2"] = psi["S1"] - math.radians(_u(rng, 3, 8))
    psi["S3"] = psi["S2"] - math.radians(_u(rng, 6, 12))
    psi["S4"] = psi["S3"] - math.radians(_u(rng, 8, 14))

    halves = {n: hb * f * _u(rng, 0.97, 1.03) for n, f in zip(_BODIES, _BODY_H)}
    depths = {n: wb * f * _u(rng, 0.97, 1.03) for n, f in zip(_BODIES, _BODY_W)}
    disc_h: dict[str, float] = {}
    for name, f in zip(_JOINTS, _DISC_H + (0, 0, 0)):
        if name.startswith("S"):
            disc_h[name] = _u(rng, 1.6, 2.4)
            continue
        cls = labels.disc[name]
        h = hd0 * f * _u(rng, 0.93, 1.07)
        if cls == "v2":
            h *= _u(rng, 0.6, 0.78)
        elif cls in ("v3", "v4"):
            h *= _u(rng, 0.65, 0.85)
        disc_h[name] = max(h, 3.0)

    # canonical chain: u posterior, v feet; t = (sin psi, cos psi), n = (cos psi, -sin psi)
    def tvec(p: float) -> np.ndarray:
        return np.array([math.sin(p), math.cos(p)])

    centres: dict[str, np.ndarray] = {"T11": np.zeros(2)}
    for i, joint in enumerate(_JOINTS):
        up, lo = _BODIES[i], _BODIES[i + 1]
        tu, tl = tvec(psi[up]), tvec(psi[lo])
        tm = (tu + tl) / np.linalg.norm(tu + tl)
        e_u = centres[up] + halves[up] * tu
        e_l = e_u + disc_h[joint] * tm
        centres[joint] = (e_u + e_l) / 2
        psi[joint] = math.atan2(tm[0], tm[1])
        centres[lo] = e_l + halves[lo] * tl

    anchor = np.mean([centres[n] for n in LANDMARKS], axis=0)
    theta = math.radians(_u(rng, -15.0, 15.0))
    fov_x, fov_y = (acq.cols - 1) * acq.dx, (acq.rows - 1) * acq.dy
    offset = np.array([_u(rng, -0.15, 0.15) * fov_x, _u(rng, -0.15, 0.15) * fov_y])
    place = {n: _rot(p - anchor, theta) for n, p in centres.items()}
    lm = np.array([place[n] for n in LANDMARKS])
    target = np.array([fov_x / 2, fov_y / 2]) + offset
    margin_x = max(22.0, 0.06 * fov_x) + wb  # keep the whole body / disc of a landmark in view
    margin_y = max(18.0, 0.05 * fov_y)
    for k, (lo_m, hi_m) in enumerate(((margin_x, fov_x - margin_x), (margin_y, fov_y - margin_y))):
        lo_p, hi_p = lm[:, k].min() + target[k], lm[:, k].max() + target[k]
        if hi_p - lo_p > hi_m - lo_m:
            target[k] += (lo_m + hi_m) / 2 - (lo_p + hi_p) / 2
        elif lo_p < lo_m:
            target[k] += lo_m - lo_p
        elif hi_p > hi_m:
            target[k] -= hi_p - hi_m
    place = {n: p + target for n, p in place.items()}

    def frame(name: str) -> _Frame:
        t = _rot(tvec(psi[name]), theta)
        return _Frame(float(place[name][0]), float(place[name][1]), float(t[0]), float(t[1]))

    bodies: dict[str, _Body] = {}
    for name in _BODIES:
        if name.startswith("S"):
            cls = "sacral"
        else:
            cls = labels.vertebra[name]
        b = _Body(name, frame(name), halves[name], depths[name], cls, lat_body * (1.0 if name[0] != "S" else 0.9))
        if name.startswith("S"):
            b.marrow = "marrow_sacrum"
            b.tex_amp = 0.05
        elif cls == "v2":
            b.tex_amp = _u(rng, 0.16, 0.26)
            u = rng.random()
            b.modic_sides = (-1,) if u < 0.3 else (1,) if u < 0.6 else (-1, 1)
            b.modic_type = 1 if rng.random() < 0.4 else 2
            b.modic_band = _u(rng, 3.0, 5.0)
            u = rng.random()
            sides = (-1,) if u < 0.3 else (1,) if u < 0.6 else (-1, 1)
            b.osteophytes = tuple(
                (s, _u(rng, 6.5, 10.0), _u(rng, 3.4, 4.6), math.radians(_u(rng, 40, 62))) for s in sides
            )
        else:
            b.tex_amp = _u(rng, 0.02, 0.05)
        bodies[name] = b

    discs: dict[str, _Disc] = {}
    hernias: list[_Hernia] = []
    nodes: list[_Node] = []
    for i, joint in enumerate(_JOINTS):
        up, lo = bodies[_BODIES[i]], bodies[_BODIES[i + 1]]
        cls = labels.disc.get(joint, "remnant") if not joint.startswith("S") else "remnant"
        wd = (up.w + lo.w) / 2
        bulge = _u(rng, 0.3, 0.8)
        if cls == "v2":
            bulge = _u(rng, 2.2, 4.0)
        d = _Disc(joint, frame(joint), up, lo, wd, disc_h[joint], cls, bulge, lat_body + 1.0, _u(rng, -0.1, 0.12))
        discs[joint] = d
        if cls == "v2":  # broad, shallow dome over (and a little beyond) the posterior disc height
            dpsi = psi[_BODIES[i + 1]] - psi[_BODIES[i]]
            gap_post = max(1.5, d.height - 2 * wd * math.tan(dpsi / 2))
            hernias.append(
                _Hernia(d, "bulge", depth=bulge, a0=0.0, ha=gap_post / 2 + _u(rng, 1.4, 2.4), x0=0.0, lat=lat_body)
            )
        elif cls == "v3":  # focal knob: deeper than it is tall
            hernias.append(
                _Hernia(d, "v3", depth=_u(rng, 4.2, 6.0), a0=_u(rng, -0.1, 0.1) * d.height,
                        ha=min(3.2, max(2.0, d.height * _u(rng, 0.28, 0.38))), x0=_u(rng, -3, 3), lat=_u(rng, 7, 10))
            )
        elif cls == "v4":
            hernias.append(
                _Hernia(d, "v4", depth=_u(rng, 6.5, 10.0), a0=_u(rng, -0.1, 0.1) * d.height,
                        ha=max(2.8, d.height * _u(rng, 0.42, 0.5)), direction=1 if rng.random() < 0.5 else -1,
                        migration=_u(rng, 7.0, 13.0), x0=_u(rng, -3, 3), lat=_u(rng, 8, 12))
            )
        if labels.schmorl.get(joint, False):
            side_up = rng.random() < 0.5
            body = up if side_up else lo
            nodes.append(
                _Node(body, side=1 if side_up else -1, b0=_u(rng, -0.45, 0.25) * body.w, r=_u(rng, 3.2, 5.0),
                      x0=_u(rng, -3, 3), lat=_u(rng, 6, 9), value_t2=_u(rng, 0.55, 0.75))
            )

    dc_base = _u(rng, 13.0, 17.5)
    dc: dict[str, float] = {}
    for name in _BODIES + _JOINTS:
        if name.startswith("S"):
            k = {"S1": 0.8, "S1-S2": 0.65, "S2": 0.55, "S2-S3": 0.5, "S3": 0.45, "S3-S4": 0.4, "S4": 0.35}[name]
            dc[name] = dc_base * k
        else:
            dc[name] = dc_base * _u(rng, 0.93, 1.07)

    spinous: list[_Spinous] = []
    for name in _BODIES[:9]:
        b = bodies[name]
        sac = name.startswith("S")
        spinous.append(
            _Spinous(
                b,
                b0=b.w + dc[name] - 1.0,
                length=_u(rng, 9.0, 13.0) if sac else _u(rng, 24.0, 34.0),
                tilt=math.radians(_u(rng, 10, 25)),
                a_off=b.h * _u(rng, 0.1, 0.3),
                h0=b.h * (0.75 if sac else _u(rng, 0.55, 0.7)),
                h1=b.h * (0.55 if sac else _u(rng, 0.38, 0.5)),
            )
        )

    # centre line through all centres, extended, smoothed and resampled every 2 mm
    order = []
    for i, n in enumerate(_BODIES):
        order.append(n)
        if i < len(_JOINTS):
            order.append(_JOINTS[i])
    pts = [place[n] for n in order]
    t_top = _rot(tvec(psi["T11"]), theta)
    t_bot = _rot(tvec(psi["S4"]), theta)
    pts = [pts[0] - 500 * t_top] + pts + [pts[-1] + 300 * t_bot]
    pts = np.array(pts)
    seg = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    s1 = np.arange(0.0, seg[-1], 1.0)
    dense = np.stack([np.interp(s1, seg, pts[:, 0]), np.interp(s1, seg, pts[:, 1])], axis=1)
    k = np.exp(-0.5 * (np.arange(-15, 16) / 5.0) ** 2)
    k /= k.sum()
    padded = np.pad(dense, ((15, 15), (0, 0)), mode="edge")
    sm = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(2)], axis=1)
    seg2 = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(sm, axis=0), axis=1))]
    s2 = np.arange(0.0, seg2[-1], 2.0)
    curve = np.stack([np.interp(s2, seg2, sm[:, 0]), np.interp(s2, seg2, sm[:, 1])], axis=1)
    tang = np.gradient(curve, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)

    spine = _Spine(bodies, discs, hernias, nodes, spinous, curve, s2, tang, dc, _u(rng, 9.0, 12.0), lat_body)
    extras = {"theta": theta, "psi": psi}
    return spine, extras


def _project(curve: np.ndarray, s: np.ndarray, tang: np.ndarray, px: np.ndarray, py: np.ndarray):
    """Arc length S and signed normal distance B (posterior > 0) of points to the centre line."""
    d2 = (px[:, None] - curve[None, :, 0]) ** 2 + (py[:, None] - curve[None, :, 1]) ** 2
    k = np.argmin(d2, axis=1)
    cx, cy = curve[k, 0], curve[k, 1]
    tx, ty = tang[k, 0], tang[k, 1]
    ox, oy = px - cx, py - cy
    return s[k] + ox * tx + oy * ty, ox * ty - oy * tx


# --------------------------------------------------------------------------------------------------
# Sagittal renderer
# --------------------------------------------------------------------------------------------------


class _Sagittal:
    """Per-study fields (background, canal, bias) and structure patches, then one slice at a time."""

    def __init__(self, spine: _Spine, acq: _Acq, tis: dict[str, tuple[float, float]], rng: np.random.Generator):
        self.spine, self.acq, self.tis, self.rng = spine, acq, tis, rng
        self.grid = _Grid(acq.rows, acq.cols, acq.dy, acq.dx, edge=0.9 * max(acq.dx, acq.dy))
        self._prepare_fields()
        self._prepare_structures()

    # ---- per-study full-frame fields ------------------------------------------------------------
    def _prepare_fields(self) -> None:
        sp, g, rng, tis = self.spine, self.grid, self.rng, self.tis
        R, C, step = g.rows, g.cols, 8
        nr, nc = -(-R // step), -(-C // step)
        rr = (np.arange(nr + 2) - 0.5) * step - 0.5
        cc = (np.arange(nc + 2) - 0.5) * step - 0.5
        gy, gx = np.meshgrid(rr * g.dy, cc * g.dx, indexing="ij")
        lo = np.array([-150.0, -150.0])
        hi = np.array([C * g.dx + 150.0, R * g.dy + 150.0])
        keep = np.all((sp.curve_xy > lo) & (sp.curve_xy < hi), axis=1)
        cs, ct, cxy = sp.curve_s[keep], sp.curve_t[keep], sp.curve_xy[keep]
        S, B = _project(cxy, cs, ct, gx.ravel(), gy.ravel())

        # 1-D profiles along the centre line from the structures
        def project_point(x: float, y: float) -> tuple[float, float]:
            s_, b_ = _project(cxy, cs, ct, np.array([x]), np.array([y]))
            return float(s_[0]), float(b_[0])

        names = list(sp.bodies) + list(sp.discs)
        prof = []
        for n in names:
            st = sp.bodies.get(n) or sp.discs[n]
            s_c, _ = project_point(st.frame.cx, st.frame.cy)
            _, b_post = project_point(*st.frame.point(0.0, st.w))
            _, b_ant = project_point(*st.frame.point(0.0, -st.w))
            prof.append((s_c, b_post, b_ant, sp.dc[n], 1.0 if n in sp.bodies else 0.0))
        prof.sort()
        ps = np.array(prof)
        self.s_of = {n: project_point(*(sp.bodies.get(n) or sp.discs[n]).frame.point(0, 0))[0] for n in names}
        P = np.interp(S, ps[:, 0], ps[:, 1])
        A = np.interp(S, ps[:, 0], ps[:, 2])
        Dc = np.interp(S, ps[:, 0], ps[:, 3])
        G = np.interp(S, ps[:, 0], ps[:, 4])
        q = (B - P) / Dc
        s_conus = self.s_of["L1-L2"] + _u(rng, -14, 10)
        s_sac = self.s_of["S2"] + _u(rng, -6, 4)
        s_end = self.s_of["S3"] + _u(rng, 0, 8)
        sp.s_conus, sp.s_sac_end, sp.s_canal_end = s_conus, s_sac, s_end
        cordness = np.clip((s_conus - S) / 12.0 + 1.0, 0.0, 1.0)  # 1 cord, 0 below the conus
        hw = 1.3 + 3.2 * cordness
        qc = 0.45 + 0.15 * (1.0 - cordness)
        yc = B - (P + qc * Dc)
        cstr = (0.55 + 0.45 * cordness) * np.clip((s_sac - 8.0 - S) / 10.0, 0.0, 1.0)
        sac = np.clip((s_sac - S) / 6.0 + 0.5, 0.0, 1.0)
        clen = np.clip((s_end - S) / 4.0 + 0.5, 0.0, 1.0)
        # background layout, in mm behind the posterior canal wall / in front of the anterior wall
        post = (q - 1.0) * Dc
        ant = A - B
        m1 = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (nc + 2, nr + 2),
                        interpolation=cv2.INTER_CUBIC).ravel()
        m2 = cv2.resize(rng.standard_normal((5, 5)).astype(np.float32), (nc + 2, nr + 2),
                        interpolation=cv2.INTER_CUBIC).ravel()
        muscle_len = _u(rng, 38.0, 58.0)
        fat_th = _u(rng, 8.0, 32.0)
        prev = _u(rng, 4.0, 12.0)
        a_skin = _u(rng, 110.0, 220.0)
        a_fat = _u(rng, 8.0, 25.0)
        pf = post - (muscle_len + 6.0 * m1)
        pskin = pf - fat_th * (1.0 + 0.25 * m2)
        aa = ant - prev * (1.0 + 0.3 * m2)
        askin = ant - a_skin - 10.0 * m1
        af = askin + a_fat
        coil_d = np.maximum(-pskin, 0.0)
        coil = 0.55 + 0.45 * np.exp(-coil_d / 150.0)
        bias = []
        for _ in range(2):
            mb = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (nc + 2, nr + 2),
                            interpolation=cv2.INTER_CUBIC).ravel()
            bias.append(coil * np.exp(0.12 * mb))
        chans = np.stack([q, Dc, yc, hw, cstr, sac, G, clen, pf, pskin, aa, af, askin, bias[0], bias[1]], axis=1)
        chans = chans.astype(np.float32).reshape(nr + 2, nc + 2, -1)
        full = cv2.resize(chans, ((nc + 2) * step, (nr + 2) * step), interpolation=cv2.INTER_LINEAR)
        full = full[step : step + R, step : step + C]
        (q, Dc, yc, hw, cstr, sac, G, clen, pf, pskin, aa, af, askin, b1, b2) = (
            np.ascontiguousarray(full[..., i]) for i in range(full.shape[-1])
        )
        self.bias = (b1, b2)
        e = g.edge

        # background per contrast
        tex_mus = _field(rng, (R, C), 9.0 / g.dy, 3.0 / g.dx)
        tex_ab1 = _field(rng, (R, C), 14.0 / g.dy, 14.0 / g.dx)
        tex_ab2 = _field(rng, (R, C), 9.0 / g.dy, 9.0 / g.dx)
        a_pf = _soft(pf, e)
        a_ab = _soft(aa, 2.0 * e)
        a_af = _soft(af, e)
        a_air = np.maximum(_soft(pskin, e), _soft(askin, e))
        fatmix = np.clip(tex_ab1 * 0.4 + 0.3, 0.0, 1.0)
        fluid = np.clip(tex_ab2 * 0.6 - 1.1, 0.0, 0.5)
        self.a_soft = 1.0 - a_air
        bgs = []
        for c in range(2):
            img = tis["muscle"][c] * (1.0 + 0.09 * tex_mus)
            abd = tis["bowel"][c] + fatmix * (tis["fat"][c] - tis["bowel"][c])
            abd += fluid * (tis["fluid"][c] - abd)
            abd *= 1.0 + 0.06 * tex_ab2
            img += a_ab * (abd - img)
            img += a_pf * (tis["fat"][c] - img)
            img += a_af * (tis["fat"][c] - img)
            img += a_air * (tis["air"][c] - img)
            bgs.append(img.astype(np.float32))
        self.bg = bgs

        # canal layers (restricted to their bounding box)
        qd = q * Dc
        a_canal = _soft(qd, e) * _soft(Dc - qd, e) * clen
        a_lf = _soft(qd - Dc, e) * _soft(Dc + 2.6 - qd, e) * clen
        a_cord = _soft(hw - np.abs(yc), e) * cstr * a_canal
        rows_any = np.flatnonzero((a_canal + a_lf).max(axis=1) > 0)
        cols_any = np.flatnonzero((a_canal + a_lf).max(axis=0) > 0)
        if rows_any.size:
            self.canal_sl = (slice(rows_any[0], rows_any[-1] + 1), slice(cols_any[0], cols_any[-1] + 1))
        else:
            self.canal_sl = (slice(0, 0), slice(0, 0))
        sl = self.canal_sl
        self.a_canal, self.a_lf, self.a_cord = a_canal[sl].copy(), a_lf[sl].copy(), a_cord[sl].copy()
        self.csf_target = []
        self.lat_target = []
        for c in range(2):
            csf = tis["fat"][c] + sac[sl] * (tis["csf"][c] - tis["fat"][c])
            lat = tis["foramen"][c] + G[sl] * (tis["pedicle"][c] - tis["foramen"][c])
            self.csf_target.append(csf.astype(np.float32))
            self.lat_target.append(lat.astype(np.float32))
        self.sac_full = sac

    # ---- per-study structure patches --------------------------------------------------------------
    def _prepare_structures(self) -> None:
        sp, g, rng = self.spine, self.grid, self.rng
        self.body_patches: dict[str, tuple[_Patch, np.ndarray, np.ndarray]] = {}
        for name, b in sp.bodies.items():
            m = 9.0
            p = _patch(g, b.frame, -b.h - m, b.h + m, -b.w - m, b.w + 2.0)
            if p is None:
                continue
            shape = p.a.shape
            cell = 3.5 / g.dx
            ta = _field(rng, shape, cell, cell)
            tb = _field(rng, shape, cell, cell)
            self.body_patches[name] = (p, ta, tb)
        self.disc_patches: dict[str, tuple[_Patch, np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, d in sp.discs.items():
            wedge = d.w * 0.5 + 3.0
            p = _patch(g, d.frame, -d.height / 2 - wedge, d.height / 2 + wedge, -d.w - 3.0, d.w + d.bulge + 2.0)
            if p is None:
                continue
            au, _ = p.coords_in(d.upper.frame)
            al, _ = p.coords_in(d.lower.frame)
            td = au - np.float32(d.upper.h)  # below the upper endplate
            ed = -np.float32(d.lower.h) - al  # above the lower endplate
            tot = np.maximum(td + ed, np.float32(0.3))
            an = np.clip((td - ed) / tot, -1.0, 1.0)  # -1 upper endplate .. +1 lower
            vert = np.minimum(td, ed) + np.float32(2.0)
            self.disc_patches[name] = (p, an, vert, tot)
        self.hernia_patches = []
        for h in sp.hernias:
            d = h.disc
            a_lo = min(-d.height / 2 - 2, d.height * 0 - h.ha - 2)
            a_hi = max(d.height / 2 + 2, h.ha + 2)
            if h.kind == "v4":
                reach = d.height / 2 + h.migration + 4
                a_lo, a_hi = (min(a_lo, -reach), a_hi) if h.direction < 0 else (a_lo, max(a_hi, reach))
            p = _patch(g, d.frame, a_lo, a_hi, d.w - 2.0, d.w + h.depth + 3.0)
            if p is not None:
                self.hernia_patches.append((h, p))
        self.node_patches = []
        for nd in sp.nodes:
            b = nd.body
            a_c = nd.side * b.h
            p = _patch(g, b.frame, a_c - nd.r - 3, a_c + nd.r + 3, nd.b0 - nd.r - 3, nd.b0 + nd.r + 3)
            if p is not None:
                self.node_patches.append((nd, p))
        self.spinous_patches = []
        for s in sp.spinous:
            b = s.body
            reach = s.length * math.tan(s.tilt)
            p = _patch(g, b.frame, -s.h0 - 3 + s.a_off, s.a_off + reach + s.h0 + 3, s.b0 - 2, s.b0 + s.length + 2)
            if p is not None:
                self.spinous_patches.append((s, p))

    # ---- drawing ---------------------------------------------------------------------------------
    def render_slice(
        self, d: float, phase: float, labelled: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """T1 and T2 float frames of the slice at lateral offset ``d`` mm (+ tissue labels if asked)."""
        g, tis, sp = self.grid, self.tis, self.spine
        t1, t2 = self.bg[0].copy(), self.bg[1].copy()
        lab = None
        if labelled:
            lab = np.where(self.a_soft > 0.5, LABELS["soft"], LABELS["air"]).astype(np.uint8)
        cv = _Canvas(t1, t2, lab)
        ad = abs(d)
        e = g.edge

        # canal: CSF (fat below the thecal sac) fading to pedicles / foramina laterally
        f_c = float(np.clip((sp.canal_half_width - ad) / 3.0 + 0.5, 0.0, 1.0))
        sl = self.canal_sl
        for c, img in enumerate((t1, t2)):
            target = self.lat_target[c] + f_c * (self.csf_target[c] - self.lat_target[c])
            x = img[sl]
            x += self.a_canal * (target - x)
        if lab is not None:
            lab[sl][(self.a_canal * f_c > 0.5) & (self.sac_full[sl] > 0.5)] = LABELS["csf"]
        f_cord = float(np.clip((8.0 - ad) / 4.0, 0.0, 1.0))
        if f_cord > 0:
            cv.blend(sl, self.a_cord * np.float32(f_cord * f_c), tis["cord"][0], tis["cord"][1], LABELS["cord"])
        cv.blend(sl, self.a_lf, tis["ligament"][0], tis["ligament"][1])

        # posterior elements: spinous processes at the midline, laminae / facets laterally
        f_sp = float(np.clip((7.0 - ad) / 4.0, 0.0, 1.0))
        for s, p in self.spinous_patches:
            length = s.length * (0.3 + 0.7 * f_sp)
            tan_t = math.tan(s.tilt)
            bb = p.b - np.float32(s.b0)
            frac = np.clip(bb / np.float32(length), 0.0, 1.0)
            h = np.float32(s.h0) + np.float32(s.h1 - s.h0) * frac
            ac = p.a - np.float32(s.a_off) - bb * np.float32(tan_t)
            rb = np.abs(bb - np.float32(length / 2)) / np.float32(length / 2)
            ra = np.abs(ac) / h
            rho = (rb**4 + ra**4) ** 0.25
            dist = (1.0 - rho) * np.minimum(h, np.float32(length / 2))
            alpha = _soft(dist, e)
            cv.blend(p.sl, alpha, tis["cortex"][0], tis["cortex"][1], LABELS["posterior"])
            inner = _soft(dist - np.float32(1.2), e)
            cv.blend(p.sl, inner, tis["spinous"][0], tis["spinous"][1])

        # discs (with their bulge), then herniations
        for name, (p, an, vert, tot) in self.disc_patches.items():
            dsc = sp.discs[name]
            sb = math.sqrt(max(0.0, 1.0 - (d / dsc.lat) ** 2))
            fade = float(np.clip((dsc.lat - ad) / 3.0, 0.0, 1.0))
            if fade <= 0:
                continue
            wd = dsc.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(dsc.w - wd)
            an2 = an * an
            prof = np.sqrt(np.clip(1.0 - an2 * an2, 0.0, 1.0))
            post_lim = np.float32(wd) + np.float32(dsc.bulge) * prof
            ant_lim = -np.float32(wd) - np.float32(1.2) * np.sqrt(np.clip(1.0 - an2, 0.0, 1.0))
            alpha = _soft(vert, e) * _soft(post_lim - b, e) * _soft(b - ant_lim, e)
            if fade < 1:
                alpha *= np.float32(fade)
            if dsc.cls == "remnant":
                cv.blend(p.sl, alpha, tis["remnant"][0], tis["remnant"][1])
                continue
            normal = dsc.cls == "v1"
            ann = tis["annulus_n" if normal else "annulus_d"]
            nuc = tis["nucleus_n" if normal else "nucleus_d"]
            cv.blend(p.sl, alpha, ann[0], ann[1], LABELS["disc"])
            bn = np.float32(dsc.nucleus_shift * wd)
            r2 = ((b - bn) * np.float32(1.0 / (0.55 * wd))) ** 2 + an2 * np.float32(1.0 / 0.72**2)
            a_n = np.clip((1.0 - r2) * np.float32(2.5), 0.0, 1.0) * alpha
            cv.blend(p.sl, a_n, nuc[0], nuc[1])
        for h, p in self.hernia_patches:
            dsc = h.disc
            fh = math.sqrt(max(0.0, 1.0 - ((d - h.x0) / h.lat) ** 2))
            if fh < 0.05:
                continue
            sb = math.sqrt(max(0.0, 1.0 - (d / dsc.lat) ** 2))
            wd = dsc.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(dsc.w - wd)
            depth = h.depth * fh
            base = np.float32(wd - 1.0)
            dist = _ellipse_dist(p.a - np.float32(h.a0), b - base, h.ha, depth + 1.0)
            if h.kind == "v4":
                mig = h.migration * (0.6 + 0.4 * fh)
                ac = h.direction * (dsc.height / 2 + mig / 2)
                frag = _ellipse_dist(p.a - np.float32(ac), b - np.float32(wd + 0.5 * depth), mig / 2 + 3.0,
                                     0.5 * depth + 0.3)
                dist = np.maximum(dist, frag)
            alpha = _soft(dist, e) * _soft(b - np.float32(wd - 0.6), e) * np.float32(min(1.0, 4 * fh))
            if h.kind == "bulge":
                cv.blend(p.sl, alpha, tis["annulus_d"][0], tis["annulus_d"][1], LABELS["disc"])
            else:
                cv.blend(p.sl, alpha, tis["herniation"][0], tis["herniation"][1], LABELS["herniation"])

        # vertebral bodies (osteophytes, cortex, marrow texture, Modic band)
        for name, (p, ta, tb) in self.body_patches.items():
            bd = sp.bodies[name]
            sb = math.sqrt(max(0.0, 1.0 - (d / bd.lat) ** 2))
            fade = float(np.clip((bd.lat - ad) / 3.0, 0.0, 1.0))
            if fade <= 0:
                continue
            wv = bd.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(bd.w - wv)
            ff = np.float32(fade)
            tex = ta * np.float32(math.cos(phase)) + tb * np.float32(math.sin(phase))
            marrow = tis[bd.marrow]
            spur_fill = []
            for side, length, width, ang in bd.osteophytes:
                # base on the rounded corner (superellipse p=5 passes through 0.87·(h, w))
                da_ = p.a - np.float32(side * 0.86 * bd.h)
                db_ = b + np.float32(0.86 * wv)
                ua, ub = side * math.sin(ang), -math.cos(ang)  # outwards: towards the disc and anterior
                along = da_ * np.float32(ua) + db_ * np.float32(ub) - np.float32(length / 2 - 2.5)
                across = -da_ * np.float32(ub) + db_ * np.float32(ua)
                dist_o = _ellipse_dist(along, across, length / 2 + 2.5, width / 2)
                a_o = _soft(dist_o, e) * ff
                cv.blend(p.sl, a_o, tis["cortex"][0], tis["cortex"][1], LABELS["osteophyte"])
                spur_fill.append(_soft(dist_o - np.float32(0.9), e) * ff)
            dist = _superellipse_dist(p.a, b, bd.h, wv, 5.0)
            alpha = _soft(dist, e) * ff
            cv.blend(p.sl, alpha, tis["cortex"][0], tis["cortex"][1], LABELS["bone"])
            rim = 1.4
            inner = _soft(dist - np.float32(rim), e) * ff
            gain = 1.0 + np.float32(bd.tex_amp) * np.clip(tex, -1.2, 1.8)
            cv.blend(p.sl, inner, marrow[0] * gain, marrow[1] * gain)
            for a_oi in spur_fill:  # spur marrow continuous with the body's (no cortex between)
                cv.blend(p.sl, a_oi, marrow[0] * 0.9 * gain, marrow[1] * 0.9 * gain)
            if bd.modic_sides:
                mv = tis["modic1" if bd.modic_type == 1 else "modic2"]
                am = None
                for side in bd.modic_sides:
                    irregular = np.float32(0.7) * np.clip(tb, -2.0, 2.0)
                    edge_d = p.a * np.float32(side) - np.float32(bd.h - rim - bd.modic_band) - irregular
                    s_ = _soft(edge_d, 1.5 * e)
                    am = s_ if am is None else np.maximum(am, s_)
                cv.blend(p.sl, am * inner, mv[0] * (1 + 0.08 * ta), mv[1] * (1 + 0.08 * ta))

        # Schmorl's nodes: a pit of disc material with a dark sclerotic rim
        for nd, p in self.node_patches:
            fr = math.sqrt(max(0.0, 1.0 - ((d - nd.x0) / nd.lat) ** 2))
            if fr < 0.2:
                continue
            bd = nd.body
            r = nd.r * fr
            a_end = nd.side * bd.h
            ac = a_end - nd.side * 0.25 * r
            rr = np.sqrt((p.a - np.float32(ac)) ** 2 + (p.b - np.float32(nd.b0)) ** 2)
            into = (p.a - np.float32(a_end)) * np.float32(-nd.side)  # > 0 inside the body
            keep = _soft(into + np.float32(0.3), e)
            a_rim = _soft(np.float32(r + 1.3) - rr, e) * keep
            cv.blend(p.sl, a_rim, tis["cortex"][0], tis["cortex"][1] * 1.2, LABELS["schmorl"])
            a_in = _soft(np.float32(r) - rr, e) * keep
            cv.blend(p.sl, a_in, tis["node"][0], nd.value_t2)
        return t1, t2, lab


# --------------------------------------------------------------------------------------------------
# Axial renderer (T2, one slice through each of the lowest discs)
# --------------------------------------------------------------------------------------------------


def _render_axial(rng: np.random.Generator, shape: tuple[int, int], spacing: tuple[float, float], centre_rc,
                  disc: _Disc, hernia: _Hernia | None, spine: _Spine, tis: dict, gain: float,
                  sigma: float) -> np.ndarray:
    R, C = shape
    dya, dxa = spacing
    yy = ((np.arange(R, dtype=np.float32) - np.float32(centre_rc[0])) * np.float32(dya))[:, None]
    xx = ((np.arange(C, dtype=np.float32) - np.float32(centre_rc[1])) * np.float32(dxa))[None, :]
    xx2 = np.broadcast_to(xx, (R, C))
    yy2 = np.broadcast_to(yy, (R, C))
    e = 0.9 * max(dxa, dya)
    wd, lb = disc.w, spine.lat_body
    dc = spine.dc.get(disc.name, 14.0)
    wc = spine.canal_half_width
    cls = disc.cls
    T2 = {k: v[1] for k, v in tis.items()}
    tex = _field(rng, (R, C), 10.0 / dya, 10.0 / dxa)
    tex2 = _field(rng, (R, C), 5.0 / dya, 5.0 / dxa)

    def put(alpha: np.ndarray, value) -> None:
        nonlocal img
        img += alpha * (value - img)

    # retroperitoneal fat around the spine, bowel further anterior, subcutaneous fat and air behind
    img = T2["fat"] * 0.85 * (1.0 + 0.05 * tex2)
    back = wd + dc + _u(rng, 38, 55)
    fat = _u(rng, 8, 28)
    skin_y = back + fat - (xx2**2) / np.float32(2 * 260.0)
    gut_y = -wd - _u(rng, 14, 24) + (xx2**2) / np.float32(2 * 90.0)  # bowel boundary curving round the spine
    bowel = T2["bowel"] + np.clip(tex * 0.5 + 0.2, 0, 1) * (T2["fat"] - T2["bowel"]) + 0.05 * tex2
    put(_soft(gut_y - yy2, 3 * e), bowel)
    # psoas (anterolateral) and paraspinal muscles (posterior, up to the subcutaneous fat)
    mus = T2["muscle"] * (1.0 + 0.08 * tex2)
    ps = _u(rng, 11, 17)
    for sgn in (-1, 1):
        put(_soft(_ellipse_dist(xx2 - sgn * (lb + ps * 0.7), yy2 + 0.1 * wd, ps, ps * 1.25), e), mus)
        put(_soft(_ellipse_dist(xx2 - sgn * (wc + 19), yy2 - (wd + dc + 24), 19.0, back - wd - dc - 22), e), mus)
    put(_soft(yy2 - (skin_y - fat), e), T2["fat"])
    put(_soft(yy2 - skin_y, e), T2["air"])
    # posterior arch: laminae / facets ring around the canal (dark rim, marrow inside), spinous process
    ring_d = _ellipse_dist(xx2, yy2 - (wd + dc / 2 + 2), wc + 8, dc / 2 + 8)
    post = _soft(yy2 - (wd + 3), e)
    put(_soft(ring_d, e) * post, T2["cortex"])
    put(_soft(ring_d - 1.3, e) * post, T2["pedicle"])
    sp_d = np.minimum(3.5 - np.abs(xx2), np.minimum(yy2 - (wd + dc), wd + dc + 32 - yy2))
    put(_soft(sp_d, e), T2["cortex"])
    put(_soft(sp_d - 1.2, e), T2["spinous"])
    # canal: CSF with the cauda equina roots lying dorsally
    put(_soft(_ellipse_dist(xx2, yy2 - (wd + dc / 2), wc, dc / 2), e), T2["csf"])
    for j in range(-2, 3):
        put(_soft(1.1 - np.sqrt((xx2 - 2.6 * j) ** 2 + (yy2 - (wd + dc * 0.72 - 0.3 * abs(j))) ** 2), e) * 0.8,
            T2["cord"])
    # disc: kidney-shaped (posterior concavity), bulging v2 loses the concavity
    bulge = disc.bulge if cls == "v2" else 0.0
    d_out = _ellipse_dist(xx2, yy2, lb + bulge, wd + bulge)
    notch = -_ellipse_dist(xx2, yy2 - (wd + 6.0), wc * 0.9, 7.0)
    a_d = _soft(d_out if cls == "v2" else np.minimum(d_out, notch), e)
    normal = cls == "v1"
    put(a_d, T2["annulus_n" if normal else "annulus_d"])
    put(_soft(_ellipse_dist(xx2, yy2, 0.62 * lb, 0.55 * wd), 3 * e) * a_d, T2["nucleus_n" if normal else "nucleus_d"])
    if hernia is not None and hernia.kind != "bulge":
        a_h = _soft(_ellipse_dist(xx2 - hernia.x0 * 1.5, yy2 - (wd - 1), 6.0 if hernia.kind == "v3" else 9.0,
                                  hernia.depth + 1), e) * _soft(yy2 - (wd - 3.0), e)
        put(a_h, T2["herniation"])
    bias = 0.6 + 0.4 * np.exp(-np.maximum(skin_y - yy2, 0.0) / np.float32(150.0))
    img = img * bias
    n1 = _noise(rng, (R, C))
    n2 = _noise(rng, (R, C))
    s = np.float32(sigma)
    out = np.sqrt((img + s * n1) ** 2 + (s * n2) ** 2) * np.float32(gain)
    np.clip(out, 0, 4095, out=out)
    return (out + 0.5).astype(np.uint16)


# --------------------------------------------------------------------------------------------------
# DICOM headers
# --------------------------------------------------------------------------------------------------


def _hhmmss(secs: int) -> str:
    return f"{secs // 3600 % 24:02d}{secs // 60 % 60:02d}{secs % 60:02d}"


def _ds_num(v: float, nd: int = 4) -> str:
    s = f"{v:.{nd}f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def _series_template(common: dict, ser: SyntheticSeries) -> Dataset:
    """Every element shared by the instances of one series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = common["date"]
    ds.SeriesDate = common["date"]
    ds.ContentDate = common["date"]
    ds.StudyTime = common["time"]
    ds.SeriesTime = common["series_time"][ser.role]
    ds.ContentTime = common["series_time"][ser.role]
    ds.AccessionNumber = common["accession"]
    ds.Modality = "MR"
    ds.Manufacturer = common["manufacturer"]
    ds.InstitutionName = "SPINECTX SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "LUMBAR SPINE"
    ds.SeriesDescription = ser.description
    ds.ManufacturerModelName = "PHANTOM"
    ds.PatientName = common["patient_name"]
    ds.PatientID = common["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = common["sex"]
    ds.PatientAge = common["age"]
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _ds_num(ser.slice_thickness)
    ds.RepetitionTime = _ds_num(ser.repetition_time, 1)
    ds.EchoTime = _ds_num(ser.echo_time, 2)
    ds.EchoTrainLength = 4 if ser.role == "t1_sag" else 17
    ds.MagneticFieldStrength = common["field"]
    if ser.spacing_between_slices is not None:
        ds.SpacingBetweenSlices = _ds_num(ser.spacing_between_slices)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = common["study_uid"]
    ds.SeriesInstanceUID = ser.uid
    ds.StudyID = "1"
    ds.SeriesNumber = ser.number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds_num(float(v)) for v in ser.orientation]
    ds.FrameOfReferenceUID = common["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(ser.pixels.shape[1])
    ds.Columns = int(ser.pixels.shape[2])
    ds.PixelSpacing = [_ds_num(ser.pixel_spacing[0]), _ds_num(ser.pixel_spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = common["window"][ser.role][0]
    ds.WindowWidth = common["window"][ser.role][1]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    return ds


def _instance_dataset(template: Dataset, ser: SyntheticSeries, i: int) -> Dataset:
    # element-wise copies of the template (cheap; no re-validation) so that datasets stay independent
    ds = Dataset({tag: copy.copy(elem) for tag, elem in template.items()})
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = ser.sop_uids[i]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID_PREFIX + "1"
    meta.ImplementationVersionName = "SPINECTX_SYN"
    ds.file_meta = meta
    ds.SOPInstanceUID = ser.sop_uids[i]
    ds.InstanceNumber = i + 1
    pos = ser.positions[i]
    ds.ImagePositionPatient = [_ds_num(float(v)) for v in pos]
    normal = np.cross(np.array(ser.orientation[:3]), np.array(ser.orientation[3:]))
    ds.SliceLocation = _ds_num(float(np.dot(pos, normal)))
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(ser.pixels[i]).astype("<u2").tobytes())
    return ds


# --------------------------------------------------------------------------------------------------
# render_study
# --------------------------------------------------------------------------------------------------


def render_study(
    seed: int,
    index: int,
    frequencies: dict | None = None,
    p_missing: float = 0.02,
    p_extra: float = 0.05,
) -> SyntheticStudy:
    """Render study ``index`` of the synthetic set ``seed`` in memory (series, datasets, annotation).

    The content depends only on ``(seed, index)`` (and the class-drawing arguments).
    """
    labels = sample_labels(seed, index, frequencies, p_missing, p_extra)
    geo_rng = _rng(seed, index, "geometry")
    pix_rng = _rng(seed, index, "pixels")
    hdr_rng = _rng(seed, index, "headers")
    acq = _sample_acquisition(geo_rng)
    spine, _ = _build_spine(geo_rng, labels, acq)
    tis = {
        k: (v[0] * _u(geo_rng, 0.9, 1.1), v[1] * _u(geo_rng, 0.9, 1.1)) if k != "air" else (0.012, 0.012)
        for k, v in _TISSUE.items()
    }
    gains = (_u(geo_rng, 1700, 3300), _u(geo_rng, 1700, 3300))
    sigmas = (_u(geo_rng, 0.012, 0.04), _u(geo_rng, 0.012, 0.04))

    # ---- sagittal stacks
    sag = _Sagittal(spine, acq, tis, pix_rng)
    n, mid = acq.n_slices, acq.n_slices // 2
    R, C = acq.rows, acq.cols
    t1_stack = np.empty((n, R, C), np.uint16)
    t2_stack = np.empty((n, R, C), np.uint16)
    label_map = None
    phase0 = _u(pix_rng, 0, 2 * math.pi)
    for i in range(n):
        d = (mid - i) * acq.spacing  # x_i - x_mid, x_i = x_mid - (i - mid) * spacing
        img1, img2, lab = sag.render_slice(d, phase0 + 0.55 * (i - mid), labelled=(i == mid))
        if lab is not None:
            label_map = lab
        for c, (img, stack) in enumerate(((img1, t1_stack), (img2, t2_stack))):
            img *= sag.bias[c]
            s = np.float32(sigmas[c])
            n1 = _noise(pix_rng, (R, C))
            n2 = _noise(pix_rng, (R, C))
            img += s * n1
            np.square(img, out=img)
            img += (s * n2) ** 2
            np.sqrt(img, out=img)
            img *= np.float32(gains[c])
            img += np.float32(0.5)
            np.clip(img, 0, 4095, out=img)
            stack[i] = img.astype(np.uint16)
    assert label_map is not None

    # ---- patient geometry
    y0 = acq.y_c - (C - 1) / 2 * acq.dx
    z0 = acq.z_c + (R - 1) / 2 * acq.dy
    sag_pos = np.array([[acq.x_mid - (i - mid) * acq.spacing, y0, z0] for i in range(n)])
    sag_pos = np.round(sag_pos, 4)

    # ---- axial stack through the lowest discs
    n_ax = int(geo_rng.choice([5, 6]))
    ax_discs = list(DISCS[-n_ax:])
    ax_R = ax_C = int(geo_rng.choice([256, 256, 320]))
    dxa = round(_u(geo_rng, 0.6, 0.78) * (256 / ax_R), 4)
    ax_entries = []
    for name in ax_discs:
        dsc = spine.discs[name]
        y_d = y0 + dsc.frame.cx
        z_d = z0 - dsc.frame.cy
        ax_entries.append((z_d, name, y_d))
    ax_entries.sort()
    ax_pos, ax_pix = [], []
    hernia_of = {h.disc.name: h for h in spine.hernias}
    for z_d, name, y_d in ax_entries:
        ipp = np.round(np.array([acq.x_mid - (ax_C - 1) / 2 * dxa, y_d + 20.0 - (ax_R - 1) / 2 * dxa, z_d]), 4)
        ax_pos.append(ipp)
        centre_rc = ((y_d - ipp[1]) / dxa, (acq.x_mid - ipp[0]) / dxa)
        ax_pix.append(
            _render_axial(pix_rng, (ax_R, ax_C), (dxa, dxa), centre_rc, spine.discs[name], hernia_of.get(name),
                          spine, tis, gains[1], sigmas[1])
        )
    ax_pos_arr = np.array(ax_pos)

    # ---- series / UIDs / files
    study_uid = _uid(seed, index, "study")
    roles = ("t1_sag", "t2_sag", "t2_ax")
    neutral = hdr_rng.random() < 0.1
    desc = {r: (_DESC_NEUTRAL[r] if neutral and r != "t2_ax" else _DESC[r][int(hdr_rng.integers(0, len(_DESC[r])))])
            for r in roles}
    numbers = list(hdr_rng.permutation([2, 3, 4]) + int(hdr_rng.choice([0, 0, 1, 2])))
    te_tr = {
        "t1_sag": (round(_u(hdr_rng, 9.5, 15.0), 2), round(_u(hdr_rng, 400.0, 700.0), 1)),
        "t2_sag": (round(_u(hdr_rng, 88.0, 120.0), 2), round(_u(hdr_rng, 2500.0, 4000.0), 1)),
        "t2_ax": (round(_u(hdr_rng, 88.0, 120.0), 2), round(_u(hdr_rng, 2500.0, 4500.0), 1)),
    }
    stacks = {"t1_sag": t1_stack, "t2_sag": t2_stack, "t2_ax": np.stack(ax_pix)}
    positions = {"t1_sag": sag_pos, "t2_sag": sag_pos.copy(), "t2_ax": ax_pos_arr}
    orient = {"t1_sag": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), "t2_sag": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
              "t2_ax": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)}
    spacing_px = {"t1_sag": (acq.dy, acq.dx), "t2_sag": (acq.dy, acq.dx), "t2_ax": (dxa, dxa)}
    total = sum(stacks[r].shape[0] for r in roles)
    perm = None
    for _ in range(100):
        perm = hdr_rng.permutation(total)
        k, ok = 0, True
        for r in roles:
            m = stacks[r].shape[0]
            part = perm[k : k + m]
            k += m
            if np.all(np.diff(part) > 0) or np.all(np.diff(part) < 0):
                ok = False
        if ok:
            break
    assert perm is not None
    series: dict[str, SyntheticSeries] = {}
    k = 0
    for r, num in zip(roles, numbers):
        m = stacks[r].shape[0]
        series[r] = SyntheticSeries(
            role=r,
            uid=_uid(seed, index, "series", r),
            number=int(num),
            description=desc[r],
            echo_time=te_tr[r][0],
            repetition_time=te_tr[r][1],
            orientation=orient[r],
            pixel_spacing=spacing_px[r],
            slice_thickness=acq.thickness if r != "t2_ax" else 4.0,
            spacing_between_slices=acq.spacing if r != "t2_ax" else None,
            positions=positions[r],
            pixels=stacks[r],
            sop_uids=[_uid(seed, index, "sop", r, i) for i in range(m)],
            filenames=[f"image{int(j)}.dcm" for j in perm[k : k + m]],
        )
        k += m

    base_day = date(2019, 1, 7) + timedelta(days=_hash_int("date", seed, index) % 700)
    secs = 8 * 3600 + _hash_int("time", seed, index) % (10 * 3600)
    common = {
        "study_uid": study_uid,
        "frame_uid": _uid(seed, index, "frame"),
        "date": base_day.strftime("%Y%m%d"),
        "time": _hhmmss(secs),
        "series_time": {
            r: _hhmmss(secs + 120 * (j + 1)) for j, r in enumerate(roles)
        },
        "accession": str(_hash_int("acc", seed, index) % 10**8),
        "patient_id": f"SYN{_hash_int('pid', seed, index) % 10**10:010d}",
        "patient_name": f"SYNTHETIC^{index:05d}",
        "sex": "F" if hdr_rng.random() < 0.5 else "M",
        "age": f"{int(hdr_rng.integers(25, 80)):03d}Y",
        "manufacturer": str(hdr_rng.choice(["SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems"])),
        "field": "1.5" if hdr_rng.random() < 0.6 else "3",
        "window": {
            "t1_sag": (str(int(gains[0] * 0.45)), str(int(gains[0] * 0.9))),
            "t2_sag": (str(int(gains[1] * 0.45)), str(int(gains[1] * 0.9))),
            "t2_ax": (str(int(gains[1] * 0.45)), str(int(gains[1] * 0.9))),
        },
    }
    files: list[tuple[str, Dataset]] = []
    for r in roles:
        ser = series[r]
        template = _series_template(common, ser)
        for i in range(ser.pixels.shape[0]):
            files.append((ser.filenames[i], _instance_dataset(template, ser, i)))
    files.sort(key=lambda f: int(f[0][5:-4]))

    # ---- landmarks + annotation
    dy, dx = acq.dy, acq.dx

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (x / dx, y / dy)

    landmarks: dict[str, SyntheticLandmark] = {}
    for name in VERTEBRAE:
        f = spine.bodies[name].frame
        grp, tag = labels.tag(name)
        landmarks[name] = SyntheticLandmark(name, grp, tag, to_px(f.cx, f.cy), name not in labels.missing)
    for name in DISCS:
        f = spine.discs[name].frame
        grp, tag = labels.tag(name)
        landmarks[name] = SyntheticLandmark(name, grp, tag, to_px(f.cx, f.cy), name not in labels.missing)

    def inside(xy: tuple[float, float]) -> bool:
        return 2 <= xy[0] <= C - 3 and 2 <= xy[1] <= R - 3

    if labels.extra:
        cands = [
            ("T11-T12", "disc", labels.disc["T11-T12"], spine.discs["T11-T12"].frame),
            ("T12", "vertebra", labels.vertebra["T12"], spine.bodies["T12"].frame),
            ("S1", "vertebra", "v1", spine.bodies["S1"].frame),
        ]
        for name, grp, tag, f in cands:
            xy = to_px(f.cx, f.cy)
            if inside(xy):
                landmarks[name] = SyntheticLandmark(name, grp, tag, xy, True, extra=True)
                break

    points = []
    for lm in landmarks.values():
        if not lm.annotated:
            continue
        tag = {"identification": lm.identification, lm.group: lm.tag}
        points.append({"coord": lm.coord, "zIndex": mid, "tag": tag})
    order = _rng(seed, index, "point-order").permutation(len(points))
    points = [points[int(j)] for j in order]
    t2s = series["t2_sag"]
    annotation = {
        "studyUid": study_uid,
        "version": _VERSION,
        "data": [
            {
                "seriesUid": t2s.uid,
                "instanceUid": t2s.sop_uids[mid],
                "annotation": [{"annotator": ANNOTATOR, "data": {"point": points}}],
            }
        ],
    }
    return SyntheticStudy(
        seed=seed,
        index=index,
        study_uid=study_uid,
        labels=labels,
        series=series,
        files=files,
        annotation=annotation,
        landmarks=landmarks,
        annotated_role="t2_sag",
        annotated_index=mid,
        label_map=label_map,
    )


# --------------------------------------------------------------------------------------------------
# Writing a split
# --------------------------------------------------------------------------------------------------

_STUDY_DIR = re.compile(r"study\d+")


def _prepare_split_dir(split_dir: Path) -> None:
    if split_dir.exists():
        entries = list(split_dir.iterdir())
        foreign = [e for e in entries if not (e.is_dir() and _STUDY_DIR.fullmatch(e.name))]
        if foreign:
            raise FileExistsError(
                f"{split_dir} exists and holds entries that are not study folders ({foreign[0].name}); "
                "refusing to overwrite"
            )
        for e in entries:
            shutil.rmtree(e)
    split_dir.mkdir(parents=True, exist_ok=True)


def _write_study(args: tuple) -> dict:
    seed, index, frequencies, p_missing, p_extra, split_dir = args
    study = render_study(seed, index, frequencies, p_missing, p_extra)
    folder = Path(split_dir) / f"study{index}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, ds in study.files:
        ds.save_as(folder / name, enforce_file_format=True)
    return study.annotation


def _worker_init() -> None:
    cv2.setNumThreads(1)


def generate_dataset(
    out: str | Path,
    studies: int = 100,
    seed: int = 0,
    split: str = "lumbar_train",
    frequencies: dict | None = None,
    p_missing: float = 0.02,
    p_extra: float = 0.05,
    workers: int = 1,
) -> Path:
    """Write the split; returns the annotation JSON path.

    Deterministic per ``(seed, studies, split)``; study ``k``'s content depends only on ``(seed, k)``,
    so two splits drawn with the same seed repeat each other (and their UIDs): give each split its own
    seed. An existing ``OUT/<split>`` folder holding only ``study<k>`` folders is replaced.
    """
    if studies < 0:
        raise ValueError("studies must be >= 0")
    sample_labels(seed, 0, frequencies, p_missing, p_extra)  # validate the arguments before writing anything
    out = Path(out)
    split_dir = out / split
    _prepare_split_dir(split_dir)
    jobs = [(seed, k, frequencies, p_missing, p_extra, str(split_dir)) for k in range(studies)]
    if workers > 1 and studies > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, studies), mp_context=ctx, initializer=_worker_init) as ex:
            entries = list(ex.map(_write_study, jobs, chunksize=max(1, studies // (4 * workers))))
    else:
        entries = [_write_study(j) for j in jobs]
    ann_path = out / f"{split}_annotation.json"
    tmp = ann_path.with_name(ann_path.name + ".tmp")
    tmp.write_text(json.dumps(entries, ensure_ascii=True))
    tmp.replace(ann_path)
    return ann_path


# --------------------------------------------------------------------------------------------------
# Preview
# --------------------------------------------------------------------------------------------------


def preview_image(
    study: SyntheticStudy, scale: float = 1.0, role: str | None = None, index: int | None = None
) -> np.ndarray:
    """8-bit BGR rendering of a frame (default: the annotated one) with the landmarks and tags drawn."""
    role = role or study.annotated_role
    index = study.annotated_index if index is None else index
    frame = study.series[role].pixels[index].astype(np.float32)
    lo, hi = np.percentile(frame, (1, 99.5))
    img = np.clip((frame - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if role == study.annotated_role:
        for lm in study.landmarks.values():
            x, y = lm.xy[0] * scale, lm.xy[1] * scale
            colour = (0, 200, 255) if lm.group == "disc" else (80, 255, 80)
            if not lm.annotated:
                colour = (128, 128, 128)
            if lm.extra:
                colour = (255, 80, 255)
            cv2.circle(bgr, (int(round(x)), int(round(y))), 2, colour, -1)
            text = f"{lm.identification} {lm.tag}"
            (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)
            # text on the anterior (left) side, clear of the canal where herniations are
            tx = int(x) - tw - (60 if lm.group == "disc" else 30) * scale
            cv2.line(bgr, (int(tx + tw + 2), int(y)), (int(x) - 4, int(y)), colour, 1, cv2.LINE_AA)
            cv2.putText(bgr, text, (int(max(tx, 0)), int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1,
                        cv2.LINE_AA)
    return bgr
