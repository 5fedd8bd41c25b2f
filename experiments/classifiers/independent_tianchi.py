#!/usr/bin/env python
"""An independent generator of TianChi-layout lumbar MR studies (SPEC §2), for held-out measurement.

Written without looking at the suite's own generator (``spinectx.data.synthetic``) and without
importing spinectx: numpy, OpenCV (resizing, blurring) and pydicom only. Its anatomy, its intensity
model and above all the way the class labels show in the image are its own, so a classifier tuned
on the suite's synthetic data can be measured on cues it was not tuned to (issue 14 §0).

Usage::

    python experiments/classifiers/independent_tianchi.py --out DIR --studies 300 --seed 7 \
        [--cue-strength 1.0] [--jobs 2]

Writes ``DIR/lumbar_train150/study<k>/image<j>.dcm`` (every series of a study in one flat folder,
files named in shuffled order), ``DIR/lumbar_train150_annotation.json`` (the challenge's format)
and ``DIR/independent_cues.json`` (per study and landmark: the class and which cues were drawn,
for analysis; no reader looks at it).

Per study: a T2 sagittal series (9–15 slices, the annotated frame at the middle ± 2), a T1
sagittal series (its own matrix and spacing) and a T2 axial series of 3–5 slices through the lower
discs. Geometry is patient LPS: a sagittal image's rows run head → feet and its columns anterior →
posterior (ImageOrientationPatient ``[0, cos φ, sin φ, 0, sin φ, −cos φ]``, φ a small in-plane
tilt); slices are ordered along the normal ``(−1, 0, 0)`` and InstanceNumber / ``zIndex`` follow
that order. PixelSpacing is ``[dy, dx]`` mm (row spacing, column spacing), 0.6–0.9 mm, sometimes
anisotropic; matrices 384–512, sometimes non-square; pixels are unsigned 16-bit words holding
12- or 16-bit data, sometimes with a RescaleSlope/Intercept; SeriesDescription is sometimes missing
or silent about the weighting, so that EchoTime/RepetitionTime decide.

Landmark coordinates are ``[x, y] = [column, row]`` pixels of the annotated T2 frame, rounded to
whole pixels as in the challenge's files. What is drawn, and how each class shows, is described
in ``experiments/classifiers/INDEPENDENT.md``.

Python use (the tests): :func:`generate_study` writes one study and returns its annotation entry;
its ``labels`` argument replaces the drawn classes (e.g. ``{"L3": "v2"}``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import shutil
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SPLIT = "lumbar_train150"
VERTEBRAE = ("L1", "L2", "L3", "L4", "L5")
DISCS = ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

# ----------------------------------------------------------------------------- class frequencies
# P(v2) per vertebra and P(v1..v4) per disc before the study's "age" shift; P(v5) per disc.
# Overall close to the released counts (SPEC §1: vertebra v1:v2 ≈ 19:81; disc v1:v2:v3:v4 ≈
# 48:25:24:4; v5 on ≈ 5 % of discs), more degeneration at the lower levels.
P_VERTEBRA_V2 = {"L1": 0.66, "L2": 0.73, "L3": 0.80, "L4": 0.86, "L5": 0.89}
P_DISC = {  # v1, v2, v3, v4
    "T12-L1": (0.80, 0.12, 0.07, 0.01),
    "L1-L2": (0.70, 0.17, 0.11, 0.02),
    "L2-L3": (0.55, 0.25, 0.17, 0.03),
    "L3-L4": (0.40, 0.32, 0.24, 0.04),
    "L4-L5": (0.22, 0.33, 0.38, 0.07),
    "L5-S1": (0.22, 0.28, 0.42, 0.08),
}
P_DISC_V5 = {"T12-L1": 0.03, "L1-L2": 0.04, "L2-L3": 0.05, "L3-L4": 0.06, "L4-L5": 0.07, "L5-S1": 0.07}
AGE_SD = 0.6  # per-study logit shift shared by all levels (older spines degenerate everywhere)

# ----------------------------------------------------------------------------- anatomy (mm, degrees)
BONES = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4")
HEIGHT = dict(zip(BONES, (21, 22, 23.5, 25, 26, 26.5, 26.5, 25.5, 26, 20, 16, 12)))
DEPTH = dict(zip(BONES, (29, 30, 31.5, 33, 34.5, 35.5, 36, 36, 40, 30, 24, 18)))
DISC_BELOW = dict(zip(BONES[:-1], (5.5, 6, 6.5, 7.5, 8.5, 9.5, 10.5, 10, 2.0, 1.6, 1.2)))
TILT = dict(zip(BONES, (-12, -11, -9, -6, -2, 3, 9, 17, 32, 0, 0, 0)))  # S2–S4 follow S1 (see plan_study)
CANAL = dict(zip(BONES, (15, 15.5, 16, 16.5, 16.5, 16, 15.5, 15, 10, 7, 5, 4)))  # AP depth behind each body

# Relative signal per tissue (scaled per study by 0.9–1.1).
TISSUE = {
    "T2": dict(fat=0.78, muscle=0.26, csf=0.95, cord=0.42, marrow=0.45, cortex=0.10, annulus=0.20,
               nucleus=0.80, lig=0.08, abdomen=0.42, aorta=0.06, ivc=0.25, epifat=0.72, skin=0.35),
    "T1": dict(fat=0.92, muscle=0.33, csf=0.16, cord=0.36, marrow=0.62, cortex=0.09, annulus=0.30,
               nucleus=0.38, lig=0.08, abdomen=0.40, aorta=0.10, ivc=0.20, epifat=0.88, skin=0.40),
}
# Signs of a cue's signal change (T2, T1).
MODIC = {1: (1.0, -1.0), 2: (1.0, 1.0), 3: (-1.0, -1.0)}
SPOT = {"fatty": (1.0, 1.0), "sclerotic": (-1.0, -1.0), "oedema": (1.0, -1.0)}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# ----------------------------------------------------------------------------- the study's plan


@dataclass
class VertebraCues:
    """Cues of a degenerated vertebral body, unscaled (``--cue-strength`` multiplies the
    contrasts and the sizes at render time). Lengths in mm, contrasts relative to marrow.

    spots: (a_frac, b_frac, radius, kind, contrast, x_centre, x_sd) — a_frac/b_frac place the spot
    in the body (−1 … 1 of the half depth / half height); modic: (side, thickness, cover_from,
    cover_to, type, contrast, x_centre, x_sd, phases), side −1 superior / +1 inferior endplate,
    cover in −1 … 1 of the half depth (anterior → posterior), phases of the band's wavy edge;
    osteophytes: (corner, length, x_centre, x_sd), corner one of ``as ai ps pi`` (anterior/
    posterior, superior/inferior); wedge: fraction of the height lost at the anterior wall.
    x_centre / x_sd: where across the slices (mm from the midline) a cue is strongest, and how
    fast it fades (Gaussian sd, mm).
    """

    spots: list = field(default_factory=list)
    modic: list = field(default_factory=list)
    osteophytes: list = field(default_factory=list)
    wedge: float = 0.0

    def names(self) -> list[str]:
        out = []
        for cond, name in ((self.spots, "marrow_spots"), (self.modic, "endplate_band"),
                           (self.osteophytes, "osteophyte"), (self.wedge > 0, "wedging")):
            if cond:
                out.append(name)
        return out


@dataclass
class DiscCues:
    """Cues of a disc, unscaled. bulge: posterior convexity (mm); knob: (depth, radius, b_offset,
    x_centre, x_sd); fragment: (half_length, half_depth, migration, x_centre, x_sd); schmorl:
    (side, a_frac, radius) with side −1 into the body above, +1 into the body below; dark: relative
    loss of nucleus signal; height_loss: fraction of the disc height lost (the neighbouring
    endplates move in; the landmarks stay)."""

    bulge: float = 0.0
    knob: tuple | None = None
    fragment: tuple | None = None
    schmorl: tuple | None = None
    dark: float = 0.0
    height_loss: float = 0.0

    def names(self) -> list[str]:
        out = []
        for cond, name in ((self.bulge > 0, "bulge"), (self.knob, "protrusion"), (self.fragment, "extrusion"),
                           (self.schmorl, "schmorl_pit"), (self.dark > 0, "dark_nucleus"),
                           (self.height_loss > 0, "height_loss")):
            if cond:
                out.append(name)
        return out


@dataclass
class Bone:
    name: str
    centre: np.ndarray  # (u, v) mm: u posterior, v inferior
    theta: float  # radians; the body's axis points (sin θ, cos θ)
    depth: float  # AP extent W (mm)
    height: float  # H (mm)
    concave: float
    vein: float  # depth of the basivertebral notch (0 = none): a distractor, any class
    cues: VertebraCues = field(default_factory=VertebraCues)
    lateral_radius: float = 22.0  # the body's half width (mm): slices farther out miss it

    @property
    def axis(self) -> np.ndarray:
        return np.array([math.sin(self.theta), math.cos(self.theta)])

    @property
    def normal(self) -> np.ndarray:  # towards posterior
        return np.array([math.cos(self.theta), -math.sin(self.theta)])


@dataclass
class Disc:
    name: str
    upper: int  # index into bones
    lower: int
    centre: np.ndarray
    theta: float
    height: float
    nucleus: float  # natural nucleus brightness factor (0.85–1.1)
    distractor_dark: float  # darkening of a normal disc (not a cue)
    natural_bulge: float  # physiological posterior convexity (mm), any class
    cleft: bool  # intranuclear cleft (a thin dark line), any class
    sacral: bool
    cues: DiscCues = field(default_factory=DiscCues)


@dataclass
class SagGrid:
    """A sagittal matrix in anatomy coordinates: pixel (r, c) ↦ (u, v) mm,
    u = u0 + c·dx·cos φ + r·dy·sin φ, v = v0 − c·dx·sin φ + r·dy·cos φ."""

    rows: int
    cols: int
    dy: float
    dx: float
    phi: float
    u0: float
    v0: float

    def uv(self, r0=0, r1=None, c0=0, c1=None) -> tuple[np.ndarray, np.ndarray]:
        r1 = self.rows if r1 is None else r1
        c1 = self.cols if c1 is None else c1
        r = np.arange(r0, r1, dtype=np.float32)[:, None]
        c = np.arange(c0, c1, dtype=np.float32)[None, :]
        cp, sp = math.cos(self.phi), math.sin(self.phi)
        u = self.u0 + c * (self.dx * cp) + r * (self.dy * sp)
        v = self.v0 - c * (self.dx * sp) + r * (self.dy * cp)
        return u.astype(np.float32), v.astype(np.float32)

    def to_pixel(self, u: float, v: float) -> tuple[float, float]:
        """(column, row) of a point (u, v) mm."""
        du, dv = u - self.u0, v - self.v0
        cp, sp = math.cos(self.phi), math.sin(self.phi)
        return (du * cp - dv * sp) / self.dx, (du * sp + dv * cp) / self.dy

    def box(self, centre: np.ndarray, radius: float) -> tuple[int, int, int, int] | None:
        """Pixel box (r0, r1, c0, c1) holding a disc of ``radius`` mm around ``centre``; None if
        it misses the matrix."""
        c, r = self.to_pixel(float(centre[0]), float(centre[1]))
        rr, rc = radius / self.dy + 2, radius / self.dx + 2
        r0, r1 = max(int(r - rr), 0), min(int(r + rr) + 1, self.rows)
        c0, c1 = max(int(c - rc), 0), min(int(c + rc) + 1, self.cols)
        return None if r0 >= r1 or c0 >= c1 else (r0, r1, c0, c1)


@dataclass
class Series:
    kind: str  # "T2sag", "T1sag", "T2ax"
    weighting: str
    description: str | None
    echo_time: float
    repetition_time: float
    thickness: float
    positions: list  # per slice: lateral x (mm, patient) for sagittal, or the axial slice's centre (x, u, v)
    grid: SagGrid | None = None
    axial: dict | None = None
    bits: int = 16
    gain: float = 1000.0
    slope: float | None = None
    intercept: float | None = None


@dataclass
class Study:
    index: int
    seed: int
    uid_root: str
    bones: list[Bone]
    discs: list[Disc]
    labels: dict  # identification → tag string
    tissue: dict  # weighting → {tissue: value}
    x_mid: float
    back: dict  # soft-tissue thicknesses (mm)
    series: list[Series]
    annotated: int  # slice index of the annotated T2 frame
    noise: float
    bias: np.ndarray  # 5 coefficients of log(bias): y, x, y², xy, x² (image coordinates in −1 … 1)
    tex_seed: int

    def bone(self, name: str) -> Bone:
        return next(b for b in self.bones if b.name == name)

    def disc(self, name: str) -> Disc:
        return next(d for d in self.discs if d.name == name)


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, stream]))


def _draw_labels(rng: np.random.Generator) -> dict:
    """Class tags per identification, level-dependent, with a per-study shift."""
    age = rng.normal(0.0, AGE_SD)
    labels = {}
    for name in VERTEBRAE:
        labels[name] = "v2" if rng.random() < _sigmoid(_logit(P_VERTEBRA_V2[name]) + age) else "v1"
    for name in DISCS:
        p = np.array(P_DISC[name], dtype=float)
        p_v1 = _sigmoid(_logit(p[0]) - age)
        p = np.concatenate([[p_v1], p[1:] / p[1:].sum() * (1 - p_v1)])
        main = f"v{int(rng.choice(4, p=p)) + 1}"
        v5 = rng.random() < _sigmoid(_logit(P_DISC_V5[name]) + 0.5 * age)
        labels[name] = ("v5" if main == "v1" else f"{main},v5") if v5 else main
    return labels


def _vertebra_cues(rng: np.random.Generator) -> VertebraCues:
    """A non-empty random subset of the four degeneration cues, with random parameters."""
    while True:
        pick = rng.random(4) < (0.5, 0.5, 0.45, 0.25)
        if pick.any():
            break
    cues = VertebraCues()
    if pick[0]:
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(list(SPOT)))
            cues.spots.append((rng.uniform(-0.65, 0.65), rng.uniform(-0.6, 0.6), rng.uniform(1.6, 3.2), kind,
                               rng.uniform(0.15, 0.30), rng.uniform(-1.5, 1.5), rng.uniform(3.0, 5.5)))
    if pick[1]:
        sides = [int(rng.choice((-1, 1)))] if rng.random() < 0.7 else [-1, 1]
        mtype = int(rng.choice((1, 2, 3), p=(0.35, 0.45, 0.2)))
        for side in sides:
            start = rng.uniform(-1.0, 0.0)
            cues.modic.append((side, rng.uniform(2.5, 5.0), start, min(1.0, start + rng.uniform(0.8, 1.8)), mtype,
                               rng.uniform(0.15, 0.30), rng.uniform(-1.5, 1.5), rng.uniform(5.0, 9.0),
                               rng.uniform(0, 2 * math.pi, 2)))
    if pick[2]:
        corners = ["as", "ai", "ps", "pi"]
        n = int(rng.choice((1, 2, 3), p=(0.5, 0.35, 0.15)))
        chosen = rng.choice(4, size=n, replace=False, p=(0.35, 0.35, 0.15, 0.15))
        for k in chosen:
            cues.osteophytes.append((corners[int(k)], rng.uniform(2.0, 4.5), rng.uniform(-2, 2), rng.uniform(5, 9)))
    if pick[3]:
        cues.wedge = rng.uniform(0.08, 0.15)
    return cues


def _disc_cues(rng: np.random.Generator, tag: str) -> DiscCues:
    """Cues for a disc's tag: the morphology of v2/v3/v4 always, a Schmorl pit for v5; darker
    nucleus and lower height on some degenerated discs."""
    codes = tag.split(",")
    main = codes[0] if codes[0] != "v5" else "v1"
    cues = DiscCues()
    if main == "v2":
        cues.bulge = rng.uniform(1.5, 3.0)
    elif main == "v3":
        cues.knob = (rng.uniform(2.0, 3.5), rng.uniform(2.5, 4.0), rng.uniform(-1.5, 1.5),
                     rng.uniform(-2, 2), rng.uniform(4, 7))
    elif main == "v4":
        cues.fragment = (rng.uniform(3.5, 5.5), rng.uniform(2.5, 3.8), rng.choice((-1, 1)) * rng.uniform(0, 7),
                         rng.uniform(-2, 2), rng.uniform(4.5, 7.5))
    if main != "v1":
        if rng.random() < 0.55:
            cues.dark = rng.uniform(0.2, 0.45)
        if rng.random() < 0.35:
            cues.height_loss = rng.uniform(0.2, 0.35)
    if "v5" in codes:
        cues.schmorl = (int(rng.choice((-1, 1))), rng.uniform(-0.35, 0.3), rng.uniform(1.6, 3.0))
    return cues


def _sag_matrix(rng: np.random.Generator, fov_v: tuple, fov_u: tuple) -> tuple[int, int, float, float]:
    """(rows, cols, dy, dx): matrix 384–512 (sometimes non-square), spacing 0.6–0.9 mm covering
    the fields of view ``fov_v`` (rows) / ``fov_u`` (columns), mm ranges."""
    sizes = (384, 416, 448, 480, 512)
    rows = int(rng.choice(sizes))
    cols = rows if rng.random() < 0.7 else int(rng.choice(sizes))
    lo, hi = max(0.6, fov_v[0] / rows), min(0.9, fov_v[1] / rows)
    dy = rng.uniform(lo, hi) if lo < hi else float(np.clip(fov_v[0] / rows, 0.6, 0.9))
    dx = dy if rng.random() < 0.8 else float(np.clip(dy * rng.uniform(0.92, 1.08), 0.6, 0.9))
    if cols * dx < fov_u[0]:
        dx = float(np.clip(fov_u[0] / cols, 0.6, 0.9))
    return rows, cols, round(dy, 4), round(dx, 4)


def _place(rng, rows, cols, dy, dx, anchor: np.ndarray, fx: float, fy: float) -> SagGrid:
    phi = math.radians(rng.uniform(-5, 5)) if rng.random() < 0.3 else 0.0
    c, r = fx * cols, fy * rows
    cp, sp = math.cos(phi), math.sin(phi)
    u0 = anchor[0] - c * dx * cp - r * dy * sp
    v0 = anchor[1] + c * dx * sp - r * dy * cp
    return SagGrid(rows, cols, dy, dx, phi, float(u0), float(v0))


def plan_study(seed: int, index: int, labels: dict | None = None) -> Study:
    """Draw everything random about study ``index``: anatomy, classes, cues, acquisition.

    Independent random streams keep the draws of one part from shifting another's, so that the
    cue strength (applied at render time) and a ``labels`` override change nothing but the cues.
    """
    ra, rl, rq = _rng(seed, index, 1), _rng(seed, index, 2), _rng(seed, index, 3)
    drawn = _draw_labels(rl)
    if labels:
        unknown = set(labels) - set(VERTEBRAE) - set(DISCS)
        if unknown:
            raise ValueError(f"labels: unknown identifications {sorted(unknown)}")
        drawn.update(labels)
    labels = drawn

    # skeleton: bodies stacked along a lordotic curve, starting at T10 (0, 0)
    size = ra.uniform(0.9, 1.1)
    lordosis, tilt = ra.uniform(0.6, 1.3), ra.uniform(-6, 6)
    bones: list[Bone] = []
    discs: list[Disc] = []
    centre = np.zeros(2)
    for i, name in enumerate(BONES):
        if name in ("S2", "S3", "S4"):  # the sacrum curves on from S1 by a fixed amount
            theta = bones[BONES.index("S1")].theta + math.radians({"S2": 8, "S3": 14, "S4": 20}[name])
        else:
            theta = math.radians(tilt + lordosis * TILT[name] + ra.normal(0, 1.5))
        depth = DEPTH[name] * size * ra.uniform(0.96, 1.04)
        height = HEIGHT[name] * size * ra.uniform(0.96, 1.04)
        sacral = name.startswith("S")
        if i > 0:
            up = bones[-1]
            gap = DISC_BELOW[up.name] * size * ra.uniform(0.88, 1.12)
            td = 0.5 * (up.theta + theta)
            axis_d = np.array([math.sin(td), math.cos(td)])
            e_inf = up.centre + up.height / 2 * up.axis
            e_sup = e_inf + gap * axis_d
            axis = np.array([math.sin(theta), math.cos(theta)])
            normal = np.array([math.cos(theta), -math.sin(theta)])
            centre = e_sup + height / 2 * axis - (depth - up.depth) / 2 * normal  # posterior walls in line
            dname = f"{up.name}-{name}"
            discs.append(Disc(dname, i - 1, i, 0.5 * (e_inf + e_sup - (depth - up.depth) / 2 * normal), td, gap,
                              nucleus=ra.uniform(0.85, 1.1), distractor_dark=0.0,
                              natural_bulge=ra.uniform(0.0, 0.8), cleft=bool(ra.random() < 0.35),
                              sacral=up.name.startswith("S")))
        bones.append(Bone(name, centre.copy(), theta, depth, height, concave=ra.uniform(0.5, 1.5),
                          vein=ra.uniform(3, 7) if ra.random() < 0.6 and not sacral else 0.0,
                          lateral_radius=(42.0 if name == "S1" else 30.0 if sacral else 22.0) * size))
    for d in discs:  # normal-looking discs that are slightly dark: a distractor
        if ra.random() < 0.15:
            d.distractor_dark = ra.uniform(0.06, 0.16)

    # cues: one stream per landmark, drawn whatever the strength
    for k, name in enumerate(VERTEBRAE):
        if labels[name] != "v1":
            bones[BONES.index(name)].cues = _vertebra_cues(_rng(seed, index, 100 + k))
    for k, name in enumerate(DISCS):
        d = next(x for x in discs if x.name == name)
        d.cues = _disc_cues(_rng(seed, index, 200 + k), labels[name])

    tissue = {w: {t: v * ra.uniform(0.9, 1.1) for t, v in table.items()} for w, table in TISSUE.items()}
    back = dict(muscle=ra.uniform(55, 80), fat=ra.uniform(8, 30), abdomen=ra.uniform(140, 220),
                spinous=ra.uniform(28, 38), epifat=ra.uniform(1.5, 3.5))

    # acquisition
    anchor = 0.5 * (bones[BONES.index("L1")].centre + bones[BONES.index("S1")].centre)
    rows, cols, dy, dx = _sag_matrix(rq, (285, 345), (250, 345))
    t2_grid = _place(rq, rows, cols, dy, dx, anchor, rq.uniform(0.40, 0.50), rq.uniform(0.46, 0.54))
    rows1, cols1, dy1, dx1 = _sag_matrix(rq, (285, 345), (250, 345))
    t1_grid = _place(rq, rows1, cols1, dy1, dx1, anchor, rq.uniform(0.40, 0.50), rq.uniform(0.46, 0.54))
    x_mid = rq.uniform(-6, 6)
    n2 = int(rq.integers(9, 16))
    annotated = n2 // 2 + int(rq.choice((-2, -1, 0, 1, 2), p=(0.05, 0.2, 0.5, 0.2, 0.05)))
    thick = rq.uniform(3.5, 4.5)
    gap = thick * rq.uniform(1.0, 1.2)
    jitter = rq.uniform(-0.4, 0.4)
    t2_x = [x_mid + jitter - (k - annotated) * gap for k in range(n2)]
    n1 = max(9, n2 + int(rq.choice((-2, 0, 0, 2))))
    x1 = x_mid + rq.uniform(-1.5, 1.5)
    t1_x = [x1 - (k - n1 // 2) * gap for k in range(n1)]
    series = [
        Series("T2sag", "T2", _description(rq, "T2", "SAG"), rq.uniform(85, 120), rq.uniform(2500, 4000), thick,
               t2_x, grid=t2_grid),
        Series("T1sag", "T1", _description(rq, "T1", "SAG"), rq.uniform(8, 15), rq.uniform(400, 700), thick,
               t1_x, grid=t1_grid),
    ]
    series.append(_axial_series(rq, discs, x_mid))
    for s in series:
        s.bits = 12 if rq.random() < 0.4 else 16
        s.gain = rq.uniform(1200, 1800) if s.bits == 12 else rq.uniform(600, 3000)  # stored words per unit signal
        if rq.random() < 0.3:
            s.slope = float(rq.choice((0.5, 1.25, 2.0, round(rq.uniform(0.8, 3.0), 4))))
            s.intercept = float(rq.choice((0.0, -round(rq.uniform(0, 200), 2))))
    study_uid = generate_uid(entropy_srcs=["independent-tianchi", str(seed), str(index)])
    return Study(index=index, seed=seed, uid_root=study_uid, bones=bones, discs=discs, labels=labels, tissue=tissue,
                 x_mid=x_mid, back=back, series=series, annotated=annotated, noise=rq.uniform(0.018, 0.04),
                 bias=rq.uniform(-0.2, 0.2, 5) + np.array([0, 0.12, 0, 0, 0]), tex_seed=int(ra.integers(1 << 30)))


def _description(rng: np.random.Generator, weighting: str, plane: str) -> str | None:
    """SeriesDescription: usually says plane and weighting; sometimes absent or silent on T1/T2."""
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.27:
        return f"{plane} FSE" if rng.random() < 0.5 else ""
    w = weighting.lower() if rng.random() < 0.4 else weighting
    styles = (f"{weighting}_TSE_{plane}", f"{plane} {weighting} FSE", f"{w}_tse_{plane.lower()}_384",
              f"{plane.capitalize()} {weighting}", f"{weighting}WI {plane}")
    return str(rng.choice(styles))


def _axial_series(rng: np.random.Generator, discs: list[Disc], x_mid: float) -> Series:
    """3–5 axial slices through the lower discs, one common obliquity."""
    lumbar = [d for d in discs if d.name in DISCS]
    n = int(rng.integers(3, 6))
    chosen = lumbar[-n:] if n <= len(lumbar) else lumbar
    theta = float(np.mean([d.theta for d in chosen]))
    rows = cols = int(rng.choice((256, 288, 320)))
    spacing = round(rng.uniform(0.6, 0.8), 4)
    positions = [(x_mid, float(d.centre[0]), float(d.centre[1]), d.name) for d in chosen]
    return Series("T2ax", "T2", _description(rng, "T2", "AX"), rng.uniform(85, 120), rng.uniform(3000, 5000),
                  rng.uniform(3.5, 4.5), positions, axial=dict(rows=rows, cols=cols, spacing=spacing, theta=theta))


# ----------------------------------------------------------------------------- shapes


def _soft(sdf: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a pixel by the inside (sdf < 0) of a shape, antialiased over one pixel."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0)


def _ramp(d: np.ndarray, lo: float, hi: float, soft: float = 1.0) -> np.ndarray:
    """1 for lo < d < hi, 0 outside, linear over ``soft`` mm at both edges."""
    return np.clip((d - lo) / soft + 0.5, 0, 1) * np.clip((hi - d) / soft + 0.5, 0, 1)


def _round_rect(a: np.ndarray, b: np.ndarray, ha: float, hb: float, r: float) -> np.ndarray:
    qa, qb = np.abs(a) - (ha - r), np.abs(b) - (hb - r)
    outside = np.sqrt(np.maximum(qa, 0) ** 2 + np.maximum(qb, 0) ** 2)
    return outside + np.minimum(np.maximum(qa, qb), 0) - r


def _polygon(pu: np.ndarray, pv: np.ndarray, corners: list[np.ndarray], skip: int | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to a convex polygon (corners in order, either sense): the
    largest signed distance to its edge lines. ``skip``: an edge (i → i+1) left open."""
    pts = np.asarray(corners, dtype=float)
    centre = pts.mean(0)
    out = None
    for i in range(len(pts)):
        if i == skip:
            continue
        a, b = pts[i], pts[(i + 1) % len(pts)]
        e = b - a
        n = np.array([e[1], -e[0]]) / max(np.hypot(*e), 1e-9)
        if np.dot(centre - a, n) > 0:
            n = -n
        d = (pu - float(a[0])) * float(n[0]) + (pv - float(a[1])) * float(n[1])
        out = d if out is None else np.maximum(out, d)
    return out


def _capsule(pu, pv, a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    (a0, a1), (e0, e1) = np.asarray(a, float).tolist(), np.asarray(b - a, float).tolist()
    ll = max(e0 * e0 + e1 * e1, 1e-9)
    t = np.clip(((pu - a0) * e0 + (pv - a1) * e1) / ll, 0, 1)
    return np.hypot(pu - a0 - t * e0, pv - a1 - t * e1) - r


def _dot(pu, pv, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(p − origin) · direction for point arrays (pu, pv), staying in the arrays' dtype."""
    (o0, o1), (d0, d1) = np.asarray(origin, float).tolist(), np.asarray(direction, float).tolist()
    return (pu - o0) * d0 + (pv - o1) * d1


def _lateral(x: float, centre: float, sd: float) -> float:
    return math.exp(-0.5 * ((x - centre) / sd) ** 2)


# ----------------------------------------------------------------------------- the skeleton at a slice


@dataclass
class BodyShape:
    """A vertebral body as drawn on one slice: local frame, extents, wedge, spurs (all mm)."""

    bone: Bone
    a_ant: float  # local AP range (posterior wall fixed at +W/2)
    a_post: float
    b_top: float
    b_bot: float
    wedge: float
    spurs: list  # (corner, length)

    def local(self, pu, pv):
        """(a, b) body coordinates (mm: posterior, inferior) of points (u, v); Python-float
        factors keep float32 arrays float32."""
        (n0, n1), (t0, t1) = self.bone.normal.tolist(), self.bone.axis.tolist()
        du, dv = pu - float(self.bone.centre[0]), pv - float(self.bone.centre[1])
        return du * n0 + dv * n1, du * t0 + dv * t1

    def point(self, a: float, b: float) -> np.ndarray:
        return self.bone.centre + a * self.bone.normal + b * self.bone.axis

    def corners(self) -> dict[str, np.ndarray]:
        drop = self.wedge * (self.b_bot - self.b_top)
        return {"as": self.point(self.a_ant, self.b_top + drop), "ps": self.point(self.a_post, self.b_top),
                "ai": self.point(self.a_ant, self.b_bot), "pi": self.point(self.a_post, self.b_bot)}

    def sdf(self, a, b):
        ha, hb = 0.5 * (self.a_post - self.a_ant), 0.5 * (self.b_bot - self.b_top)
        ac, bc = 0.5 * (self.a_post + self.a_ant), 0.5 * (self.b_bot + self.b_top)
        if self.wedge > 0:  # the superior endplate sinks towards the anterior wall
            f = self.wedge * np.clip((self.a_post - a) / max(self.a_post - self.a_ant, 1e-6), 0, 1)
            b = self.b_bot - (self.b_bot - b) / (1 - f)
        aa = a - ac - self.bone.concave * np.clip(1 - ((b - bc) / hb) ** 2, 0, 1) * (a < ac)  # concave front
        out = _round_rect(aa, b - bc, ha, hb, min(2.2, 0.4 * ha))
        for corner, length in self.spurs:
            out = np.minimum(out, self._spur_sdf(a, b, corner, length))
        return out

    def _spur_sdf(self, a, b, corner: str, length: float):
        sa = -1.0 if corner[0] == "a" else 1.0  # anterior / posterior
        sb = -1.0 if corner[1] == "s" else 1.0  # superior / inferior
        ca = self.a_ant if sa < 0 else self.a_post
        cb = self.b_top if sb < 0 else self.b_bot
        if corner == "as":
            cb += self.wedge * (self.b_bot - self.b_top)
        inset = np.array([ca - sa * 1.2, cb - sb * 1.2])
        base = 3.5
        p1 = inset + np.array([0.0, -sb * base])
        p2 = inset + np.array([-sa * base, 0.0])
        tip = inset + length * np.array([sa * 0.75, sb * 0.66]) + np.array([sa * 1.2, sb * 1.2]) * min(1.0, length)
        return _polygon(a, b, [p1, tip, p2])


def _body_shapes(study: Study, x: float, strength: float) -> list[BodyShape | None]:
    """Each bone as drawn on the slice at lateral offset ``x`` mm from the midline (None where
    the slice misses it): narrower laterally, endplates moved in by a neighbour disc's height
    loss, wedging and spurs scaled by ``strength``."""
    out: list[BodyShape | None] = []
    for i, bone in enumerate(study.bones):
        frac = 1 - (x / bone.lateral_radius) ** 2
        if frac <= 0.04:
            out.append(None)
            continue
        shrink = math.sqrt(frac) if not bone.name.startswith("S") else 0.6 + 0.4 * math.sqrt(frac)  # sacral alae
        width = bone.depth * shrink
        b_top, b_bot = -bone.height / 2, bone.height / 2
        for d in study.discs:
            loss = d.cues.height_loss * strength * d.height / 2
            if d.lower == i:
                b_top -= loss
            if d.upper == i:
                b_bot += loss
        spurs = [(c, length * strength * _lateral(x, xc, sd)) for c, length, xc, sd in bone.cues.osteophytes]
        spurs = [(c, length) for c, length in spurs if length > 0.05]
        out.append(BodyShape(bone, bone.depth / 2 - width, bone.depth / 2, b_top, b_bot,
                             bone.cues.wedge * strength, spurs))
    return out


def _posterior_line(study: Study) -> tuple[np.ndarray, np.ndarray]:
    """The midline posterior wall of the bodies as a polyline (u, v) mm from above the image to
    below it, and the arc length of each bone's centre along it."""
    pts, owner = [], []
    for i, bone in enumerate(study.bones):
        shape = BodyShape(bone, -bone.depth / 2, bone.depth / 2, -bone.height / 2, bone.height / 2, 0.0, [])
        c = shape.corners()
        for corner in ("ps", "pi"):
            # a thin wedge-shaped disc puts the next posterior corner above the last: skip it, so
            # that the line always runs down the spine (the arc length of a centre stays defined)
            if pts and float(np.dot(c[corner] - pts[-1], bone.axis)) < 0.5:
                continue
            pts.append(c[corner])
            owner.append(i)
    first, last = study.bones[0], study.bones[-1]
    below = math.atan2(*last.axis) * 0.5  # below the sacrum: halfway back to vertical
    pts = [pts[0] - 300 * first.axis] + pts + [pts[-1] + 300 * np.array([math.sin(below), math.cos(below)])]
    pts = np.array(pts)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    cum = np.concatenate([[0], np.cumsum(seg)])[1:-1]  # arc length of each corner kept
    owner = np.array(owner)
    centres = np.array([cum[owner == i].mean() for i in range(len(study.bones))])
    return pts, centres


def _line_coords(pu: np.ndarray, pv: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d, s) of each point: signed distance to the polyline (mm, positive posterior) and the arc
    length of its nearest point. The sign comes from the nearest segment's normal, or, where the
    nearest point is a vertex, from the mean normal of the two segments meeting there."""
    a, b = line[:-1], line[1:]
    e = b - a
    length = np.hypot(e[:, 0], e[:, 1])
    e = e / length[:, None]
    seg_n = np.stack([e[:, 1], -e[:, 0]], 1)  # (e_v, −e_u): posterior for a line running down
    vert_n = np.concatenate([seg_n[:1], seg_n[:-1] + seg_n[1:], seg_n[-1:]])
    vert_n /= np.hypot(vert_n[:, 0], vert_n[:, 1])[:, None]
    cum = np.concatenate([[0], np.cumsum(length)])[:-1]
    flat_u, flat_v = pu.reshape(-1, 1), pv.reshape(-1, 1)
    du, dv = flat_u - a[:, 0], flat_v - a[:, 1]
    t = np.clip(du * e[:, 0] + dv * e[:, 1], 0, length)
    dist2 = (du - t * e[:, 0]) ** 2 + (dv - t * e[:, 1]) ** 2
    j = np.argmin(dist2, axis=1)
    rows = np.arange(len(j))
    tj = t[rows, j]
    ru, rv = du[rows, j] - tj * e[j, 0], dv[rows, j] - tj * e[j, 1]  # nearest point → p
    normal = np.where((tj <= 0)[:, None], vert_n[j], np.where((tj >= length[j])[:, None], vert_n[j + 1], seg_n[j]))
    sign = np.where(ru * normal[:, 0] + rv * normal[:, 1] >= 0, 1.0, -1.0)
    d = sign * np.sqrt(dist2[rows, j])
    s = cum[j] + tj
    return d.reshape(pu.shape).astype(np.float32), s.reshape(pu.shape).astype(np.float32)


def _coarse_line_coords(grid: SagGrid, line: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_line_coords` on every ``step``-th pixel, interpolated (bilinear) to the full grid."""
    rows_c, cols_c = (grid.rows - 1) // step + 2, (grid.cols - 1) // step + 2
    u, v = grid.uv(0, rows_c * step, 0, cols_c * step)
    d, s = _line_coords(u[::step, ::step], v[::step, ::step], line)
    map_x = np.broadcast_to(np.arange(grid.cols, dtype=np.float32)[None, :] / step, (grid.rows, grid.cols))
    map_y = np.broadcast_to(np.arange(grid.rows, dtype=np.float32)[:, None] / step, (grid.rows, grid.cols))
    map_x, map_y = np.ascontiguousarray(map_x), np.ascontiguousarray(map_y)
    return (cv2.remap(d, map_x, map_y, cv2.INTER_LINEAR), cv2.remap(s, map_x, map_y, cv2.INTER_LINEAR))


# ----------------------------------------------------------------------------- sagittal rendering


class SagRenderer:
    """Renders the slices of one sagittal series. Everything that does not depend on the slice
    (tissue layers along the spine, texture, bias field) is computed once; a slice blends those
    layers with weights of its lateral offset and draws the bodies, discs and cues."""

    def __init__(self, study: Study, series: Series):
        self.study, self.series, self.grid = study, series, series.grid
        g = self.grid
        self.px = 0.5 * (g.dx + g.dy)
        self.u, self.v = g.uv()
        self.lut = study.tissue[series.weighting]
        self.sign = 0 if series.weighting == "T2" else 1
        line, s_bones = _posterior_line(study)
        self.s_bones = s_bones.tolist()
        self.d, self.s = _coarse_line_coords(g, line, step=4)
        rng = np.random.default_rng([study.tex_seed, 0 if series.kind == "T2sag" else 1])
        self.tex = [_smooth_noise(rng, g.rows, g.cols, 6) for _ in range(2)]
        self.blob = [_smooth_noise(rng, g.rows, g.cols, 18) for _ in range(2)]
        yy = np.linspace(-1, 1, g.rows, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, g.cols, dtype=np.float32)[None, :]
        c = study.bias
        bias = np.exp(c[0] * yy + c[1] * xx + c[2] * yy * yy + c[3] * xx * yy + c[4] * xx * xx)
        self.bias = (bias * (1 + 0.03 * self.tex[1])).astype(np.float32)  # coil profile × faint texture
        self._noise: np.ndarray | None = None
        self._layers()

    def _layers(self) -> None:
        """Slice-independent maps: the soft-tissue background and, as (coverage, value) pairs,
        the layers a slice mixes in with weights of its lateral offset."""
        t, d, s, b = self.lut, self.d, self.s, self.study.back
        names = [bone.name for bone in self.study.bones]
        canal = np.interp(s, self.s_bones, [CANAL[n] for n in names]).astype(np.float32)
        depth = np.interp(s, self.s_bones, [bone.depth for bone in self.study.bones]).astype(np.float32)
        front = -(d + depth)  # mm in front of the anterior wall
        back_end = canal + b["muscle"]
        # muscle from the front of the bodies (psoas, seen where a slice misses the bodies) to the
        # back; then fat and skin; in front: abdomen, then fat
        img = _ramp(d, -depth - 5, back_end, 2.0) * t["muscle"] * (1 + 0.08 * self.tex[0])
        img += _ramp(d, back_end, back_end + b["fat"], 2.0) * t["fat"]
        img += _ramp(d, back_end + b["fat"], back_end + b["fat"] + 2.5, 1.0) * t["skin"]
        bowel = np.clip(1 + 0.22 * self.blob[0] + 0.12 * self.blob[1], 0.4, 1.8)
        ab = _ramp(front, 5, b["abdomen"], 2.0)
        img = img * (1 - ab) + ab * t["abdomen"] * bowel
        img += _ramp(front, b["abdomen"], b["abdomen"] + 15, 2.0) * t["fat"]
        self.background = img.astype(np.float32)
        # vessels in front of the bodies, above the bifurcation (at L4)
        above = np.clip((self.s_bones[BONES.index("L4")] - s) / 10 + 0.5, 0, 1)
        self.vessel = (_ramp(front, 3, 23, 1.5) * above).astype(np.float32)
        # canal: CSF (epidural fat behind it), cord down to the conus, dorsal nerve roots below it
        self.inside = _ramp(d, 0, canal, 0.8)
        epi = np.clip((d - (canal - b["epifat"])) / 1.0, 0, 1)
        csf = t["csf"] * (1 - epi) + epi * t["epifat"]
        conus = 0.5 * (self.s_bones[BONES.index("L1")] + self.s_bones[BONES.index("L2")])
        roots = (0.5 + 0.5 * np.cos(d * 2.2 + 0.4 * self.tex[0])) ** 8 * _ramp(d, 0.4 * canal, 0.85 * canal, 1.0)
        self.csf = (csf * (1 - 0.2 * roots * (s > conus))).astype(np.float32)
        self.cord = (_ramp(d, 0.35 * canal, 0.8 * canal, 1.0) * np.clip((conus - s) / 6 + 0.5, 0, 1)).astype(np.float32)
        # beside the canal: pedicles (bone) at the bodies' levels, foramina (fat) at the discs'
        level = np.zeros_like(s)
        for sb, bone in zip(self.s_bones, self.study.bones):
            level = np.maximum(level, _ramp(s, sb - bone.height * 0.35, sb + bone.height * 0.35, 3.0))
        self.beside = (level * t["marrow"] + (1 - level) * t["epifat"]).astype(np.float32)
        self.pll = _ramp(d, -0.3, 1.0, 0.6)
        self.flavum = _ramp(d, canal, canal + 2.5, 0.8)
        # posterior elements: spinous processes (midline) and facet columns (lateral)
        self.spinous, self.facets = self._posterior_bone(d, s, canal)

    def _posterior_bone(self, d, s, canal):
        """((coverage, value) of the spinous processes, (coverage, value) of the facet columns)."""
        t = self.lut
        length = self.study.back["spinous"]
        out = []
        for kind in ("spinous", "facet"):
            cover = np.zeros_like(d)
            inner = np.zeros_like(d)
            for sb, bone in zip(self.s_bones, self.study.bones):
                if bone.name.startswith("S") and bone.name != "S1":
                    continue
                near = np.abs(s - sb) < bone.height * 1.5  # rows of this level only
                rows = np.nonzero(near.any(axis=1))[0]
                if not len(rows):
                    continue
                r0, r1 = rows[0], rows[-1] + 1
                dd, ss, cc = d[r0:r1], s[r0:r1], canal[r0:r1]
                if kind == "spinous":  # from the lamina down-backwards, about a body tall
                    cs = sb + 0.25 * bone.height
                    sdf = _round_rect(dd - cc - 2.5 - length / 2, ss - cs - 0.15 * (dd - cc), length / 2,
                                      0.3 * bone.height, 3.0)
                else:  # beside the canal, at the disc below the body
                    sdf = _round_rect(dd - cc - 6, ss - sb - 0.55 * bone.height, 7.0, 0.35 * bone.height, 3.0)
                cover[r0:r1] = np.maximum(cover[r0:r1], _soft(sdf, self.px))
                inner[r0:r1] = np.maximum(inner[r0:r1], _soft(sdf + 1.0, self.px))
            out.append((cover.astype(np.float32), (inner * t["marrow"] + (1 - inner) * t["cortex"]).astype(np.float32)))
        return out

    def render(self, x_rel: float, strength: float, noise_rng: np.random.Generator) -> np.ndarray:
        """Signal of the slice at lateral offset ``x_rel`` mm from the midline: float32
        [rows, cols], about 0–1.3."""
        img = self._soft_tissue(x_rel)
        shapes = _body_shapes(self.study, x_rel, strength)
        for disc in self.study.discs:
            self._disc(img, disc, shapes, x_rel, strength)
        for shape in shapes:
            if shape is not None:
                self._body(img, shape, x_rel, strength)
        for disc in self.study.discs:
            self._herniation(img, disc, shapes, x_rel, strength)
            self._schmorl(img, disc, shapes, x_rel, strength)
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
        img *= self.bias
        return self._rician(img, noise_rng)

    def _rician(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """|img + n1 + i·n2|, n Gaussian. For speed the series draws one pool of noise (twice an
        image) and each slice takes windows of it at random offsets."""
        size = img.size
        if self._noise is None:
            sigma = self.study.noise * max(self.lut["csf"], self.lut["fat"])
            self._noise = rng.standard_normal((2, 2 * size), dtype=np.float32) * np.float32(sigma)
        o1, o2 = rng.integers(0, size, 2)
        real = self._noise[0, o1:o1 + size].reshape(img.shape) + img
        return np.hypot(real, self._noise[1, o2:o2 + size].reshape(img.shape))

    def _soft_tissue(self, x: float) -> np.ndarray:
        """The background of the slice at lateral offset ``x`` mm: the precomputed layers mixed by
        how far the slice lies from the midline (canal, cord, spinous processes) or from the
        vessels (aorta 15 mm left, IVC 15 mm right)."""
        t = self.lut
        img = self.background.copy()
        for name, xc in (("aorta", 15.0), ("ivc", -15.0)):
            w = _lateral(x, xc, 7.0)
            if w > 0.02:
                img += (w * self.vessel) * (t[name] - img)
        mid = _lateral(x, 0, 6.0)
        cord = _lateral(x, 0, 3.5) * self.cord
        canal = (self.csf + cord * (t["cord"] - self.csf)) * mid + (1 - mid) * self.beside
        img += self.inside * (canal - img)
        img += (mid * self.pll) * (t["lig"] - img)
        img += self.flavum * (t["lig"] - img)
        w_sp = _lateral(x, 0, 5.0)
        for (cover, value), w in ((self.spinous, w_sp), (self.facets, 1 - w_sp)):
            if w > 0.02:
                img += (w * cover) * (value - img)
        return img

    # -- discs
    def _disc_quad(self, disc: Disc, shapes):
        up, lo = shapes[disc.upper], shapes[disc.lower]
        if up is None or lo is None:
            return None
        cu, cl = up.corners(), lo.corners()
        return cu["ai"], cu["pi"], cl["ps"], cl["as"]

    def _disc(self, img, disc: Disc, shapes, x: float, strength: float) -> None:
        quad = self._disc_quad(disc, shapes)
        if quad is None:
            return
        t = self.lut
        ai, pi, ps, as_ = quad
        centre = 0.25 * (ai + pi + ps + as_)
        reach = max(float(np.hypot(*(p - centre))) for p in (ai, pi, ps, as_))
        box = self.grid.box(centre, reach + 7)
        if box is None:
            return
        r0, r1, c0, c1 = box
        u, v = self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1]
        sdf = _polygon(u, v, [ai, pi, ps, as_])
        # posterior margin convexity: physiological + bulge cue (circumferential, seen on most slices)
        post_mid, edge = 0.5 * (pi + ps), ps - pi
        half = 0.5 * float(np.hypot(*edge))
        e = edge / max(2 * half, 1e-9)
        n_out = np.array([e[1], -e[0]])
        if np.dot(n_out, post_mid - centre) < 0:
            n_out = -n_out
        tau = _dot(u, v, post_mid, e) / max(half, 1e-6)
        out_d = _dot(u, v, post_mid, n_out)
        bulge = disc.natural_bulge + disc.cues.bulge * strength * _lateral(x, 0, 12.0)
        if bulge > 0:
            convex = out_d - bulge * np.clip(1 - tau ** 2, 0, 1)
            # the margin's half-plane is replaced by the curved one
            sdf = np.maximum(_polygon(u, v, [ai, pi, ps, as_], skip=1), convex)
        if disc.cues.knob is not None:
            depth, radius, b_off, xc, sd = disc.cues.knob
            depth *= strength * _lateral(x, xc, sd)
            if depth > 0.05:
                kc = post_mid + b_off * e + (depth - radius) * n_out
                sdf = np.minimum(sdf, np.hypot(u - float(kc[0]), v - float(kc[1])) - radius)
        cover = _soft(sdf, self.px)
        # nucleus: a soft ellipse, darker when degenerated (cue) or as a distractor
        axis = np.array([math.sin(disc.theta), math.cos(disc.theta)])
        normal = np.array([math.cos(disc.theta), -math.sin(disc.theta)])
        height = float(np.hypot(*(0.5 * (as_ + ps) - 0.5 * (ai + pi))))
        width = float(np.hypot(*(0.5 * (pi + ps) - 0.5 * (ai + as_))))
        nc = centre + 0.05 * width * normal
        la = _dot(u, v, nc, normal) / max(0.33 * width, 1e-3)
        lb = _dot(u, v, nc, axis) / max(0.3 * height, 0.5)
        q = la ** 2 + lb ** 2
        nuc = np.clip(1.6 * (1 - q), 0, 1) * _lateral(x, 0, 11.0)
        bright = t["nucleus"] * disc.nucleus * (1 - disc.distractor_dark) * (1 - disc.cues.dark * strength)
        if disc.sacral:
            bright = t["annulus"]
        if disc.cleft:
            nuc = nuc * (1 - 0.35 * np.exp(-(lb * 0.3 * height / 0.7) ** 2))
        value = t["annulus"] + (bright - t["annulus"]) * nuc
        region = img[r0:r1, c0:c1]
        region[:] = region * (1 - cover) + cover * value

    def _herniation(self, img, disc: Disc, shapes, x: float, strength: float) -> None:
        """An extruded fragment in the canal (v4), joined to the disc by a thin neck."""
        if disc.cues.fragment is None:
            return
        quad = self._disc_quad(disc, shapes)
        if quad is None:
            return
        half_len, half_dep, migrate, xc, sd = disc.cues.fragment
        w = strength * _lateral(x, xc, sd)
        if w < 0.02:
            return
        ai, pi, ps, as_ = quad
        post_mid = 0.5 * (pi + ps)
        e = (ps - pi) / max(float(np.hypot(*(ps - pi))), 1e-9)
        n_out = np.array([e[1], -e[0]])
        if np.dot(n_out, post_mid - 0.5 * (ai + as_)) < 0:
            n_out = -n_out
        hl, hd = half_len * w, half_dep * w
        fc = post_mid + (hd + 0.3) * n_out + migrate * e
        box = self.grid.box(fc, 20)
        if box is None:
            return
        r0, r1, c0, c1 = box
        u, v = self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1]
        pa = _dot(u, v, fc, e)
        pb = _dot(u, v, fc, n_out)
        sdf = (np.sqrt((pa / hl) ** 2 + (pb / hd) ** 2) - 1) * min(hl, hd)
        sdf = np.minimum(sdf, _capsule(u, v, post_mid - 1.0 * n_out, fc, 1.2 * w))
        cover = _soft(sdf, self.px)
        t = self.lut
        rim = _soft(sdf + 0.8, self.px)
        value = t["lig"] * (1 - rim) + rim * (0.5 * t["annulus"] + 0.5 * t["nucleus"])
        region = img[r0:r1, c0:c1]
        region[:] = region * (1 - cover) + cover * value

    def _schmorl(self, img, disc: Disc, shapes, x: float, strength: float) -> None:
        """A pit of disc material in the endplate of the body above (side −1) or below (+1)."""
        if disc.cues.schmorl is None:
            return
        side, a_frac, radius = disc.cues.schmorl
        radius *= strength * _lateral(x, 0, 6.0)
        if radius < 0.3:
            return
        shape = shapes[disc.upper if side < 0 else disc.lower]
        if shape is None:
            return
        a = shape.a_post - (0.5 - 0.5 * a_frac) * (shape.a_post - shape.a_ant)
        b = shape.b_bot if side < 0 else shape.b_top
        centre = shape.point(a, b + side * 0.35 * radius)  # a little inside the body (side −1: above)
        box = self.grid.box(centre, radius + 4)
        if box is None:
            return
        r0, r1, c0, c1 = box
        u, v = self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1]
        sdf = np.hypot(u - float(centre[0]), v - float(centre[1])) - radius
        la, lb = shape.local(u, v)
        in_body = _soft(shape.sdf(la, lb), self.px)
        t = self.lut
        ring = _soft(sdf - 0.9, self.px) * in_body
        pit = _soft(sdf, self.px) * in_body
        region = img[r0:r1, c0:c1]
        region[:] = region * (1 - ring) + ring * t["cortex"]
        region[:] = region * (1 - pit) + pit * (0.75 * t["nucleus"] + 0.25 * t["annulus"])

    # -- vertebral bodies
    def _body(self, img, shape: BodyShape, x: float, strength: float) -> None:
        bone, t = shape.bone, self.lut
        box = self.grid.box(bone.centre, 0.5 * math.hypot(bone.depth, bone.height) + 7)
        if box is None:
            return
        r0, r1, c0, c1 = box
        u, v = self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1]
        a, b = shape.local(u, v)
        sdf = shape.sdf(a, b)
        cover = _soft(sdf, self.px)
        inner = _soft(sdf + 0.9, self.px)
        ang = x / 7.0  # marrow texture changes from slice to slice
        tex = math.cos(ang) * self.tex[0][r0:r1, c0:c1] + math.sin(ang) * self.tex[1][r0:r1, c0:c1]
        marrow = t["marrow"] * (1 + 0.045 * tex)
        change = np.zeros_like(a)
        ha, hb = 0.5 * (shape.a_post - shape.a_ant), 0.5 * (shape.b_bot - shape.b_top)
        ac, bc = 0.5 * (shape.a_post + shape.a_ant), 0.5 * (shape.b_bot + shape.b_top)
        k = self.sign
        for fa, fb, radius, kind, contrast, xc, sd in bone.cues.spots:
            c = contrast * strength * _lateral(x, xc, sd) * SPOT[kind][k]
            if abs(c) > 1e-4:
                sa, sb = ac + fa * ha, bc + fb * hb
                change += c * np.clip((radius - np.hypot(a - sa, b - sb)) / 0.8 + 0.5, 0, 1)  # soft-edged disc
        for side, thick, lo, hi, mtype, contrast, xc, sd, phase in bone.cues.modic:
            c = contrast * strength * _lateral(x, xc, sd) * MODIC[mtype][k]
            if abs(c) > 1e-4:
                from_plate = (b - shape.b_top) if side < 0 else (shape.b_bot - b)
                ripple = 1 + 0.18 * np.sin(a * 0.55 + phase[0]) + 0.12 * np.sin(a * 1.3 + phase[1])
                band = np.clip((thick * ripple - from_plate) / 1.0 + 0.5, 0, 1)
                along = (a - ac) / max(ha, 1e-6)
                band *= _ramp(along, lo, hi, 0.25)
                change += c * band
        if bone.vein > 0:  # basivertebral notch at the posterior wall's middle (normal anatomy)
            notch = np.clip(1 - np.abs(b - bc) / 1.6, 0, 1) * np.clip(1 - (shape.a_post - a) / bone.vein, 0, 1)
            change -= 0.5 * notch * _lateral(x, 0, 3.0)
        marrow = marrow * np.clip(1 + change, 0.15, 3.0)
        value = t["cortex"] * (1 - inner) + inner * marrow
        region = img[r0:r1, c0:c1]
        region[:] = region * (1 - cover) + cover * value


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, cell: int) -> np.ndarray:
    """Zero-mean smooth random field, unit-ish amplitude, feature size ~ ``cell`` pixels."""
    small = rng.standard_normal((max(rows // cell, 2) + 1, max(cols // cell, 2) + 1)).astype(np.float32)
    field_ = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_CUBIC)
    return field_ / max(float(field_.std()), 1e-6)


# ----------------------------------------------------------------------------- axial rendering


def _render_axial(study: Study, series: Series, pos: tuple, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A schematic axial slice through a disc: disc, canal, facets, muscles, fat. float32."""
    ax = series.axial
    rows, cols, sp = ax["rows"], ax["cols"], ax["spacing"]
    t = study.tissue["T2"]
    disc = study.disc(pos[3])
    y = (np.arange(rows, dtype=np.float32)[:, None] - rows / 2) * sp  # posterior +
    x = (np.arange(cols, dtype=np.float32)[None, :] - cols / 2) * sp  # patient left +
    x = np.broadcast_to(x, (rows, cols))
    y = np.broadcast_to(y, (rows, cols))
    px = sp
    upper = study.bones[disc.upper]
    w = upper.depth
    bowel = np.clip(1 + 0.2 * _smooth_noise(rng, rows, cols, 20), 0.4, 1.8)
    img = np.full((rows, cols), t["abdomen"], np.float32) * bowel

    def ell(cx, cy, rx, ry):
        return (np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1) * min(rx, ry)

    def paint(sdf, value):
        nonlocal img
        c = _soft(sdf, px)
        img = img * (1 - c) + c * value

    back = w / 2 + 16 + study.back["muscle"]
    paint(ell(0, back / 2 + 10, 140, back / 2 + 10), t["fat"])
    paint(ell(0, back / 2 - 5, 120, back / 2), t["muscle"])
    for side in (-1, 1):
        paint(ell(side * 38, 0, 16, 18), t["muscle"])  # psoas
        paint(ell(side * 24, w / 2 + 42, 20, 26), t["muscle"])  # paraspinal
        paint(ell(side * 17, w / 2 + 20, 6.5, 8), t["cortex"])  # facet
        paint(ell(side * 17, w / 2 + 20, 5.0, 6.5), t["marrow"])
    paint(ell(0, w / 2 + 33, 4, 14), t["marrow"])  # spinous process / lamina
    paint(ell(0, w / 2 + 9, 11, 8), t["csf"])  # thecal sac
    paint(ell(0, 0, 24, w / 2), t["annulus"])
    q = (x / 15) ** 2 + (y / (0.33 * w)) ** 2
    nuc = np.clip(1.6 * (1 - q), 0, 1)
    bright = t["nucleus"] * disc.nucleus * (1 - disc.distractor_dark) * (1 - disc.cues.dark * strength)
    img = img * (1 - nuc) + nuc * bright
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6)
    sigma = study.noise * t["csf"]
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.sqrt((img + n1) ** 2 + n2 ** 2)


# ----------------------------------------------------------------------------- DICOM writing


def _stored(signal: np.ndarray, s: Series) -> np.ndarray:
    """Signal → stored uint16 words: signal × the series' gain, within BitsStored. A RescaleSlope/
    Intercept, when the series has one, maps these words to the values readers see."""
    return np.clip(np.rint(signal * s.gain), 0, (1 << s.bits) - 1).astype(np.uint16)


def _template(study: Study, s: Series, series_uid: str, number: int) -> Dataset:
    """The header every image of a series shares (per-image elements are set by :func:`_write`)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.StudyInstanceUID = study.uid_root
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study.uid_root, "for"])
    ds.Modality = "MR"
    ds.PatientID = f"indep{study.seed}_{study.index:04d}"
    ds.StudyDate = "20200101"
    ds.SeriesNumber = number
    ds.AcquisitionNumber = 1
    if s.description is not None:
        ds.SeriesDescription = s.description
    ds.EchoTime = round(s.echo_time, 2)
    ds.RepetitionTime = round(s.repetition_time, 1)
    ds.MagneticFieldStrength = 1.5
    ds.SliceThickness = round(s.thickness, 3)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = s.bits
    ds.HighBit = s.bits - 1
    ds.PixelRepresentation = 0
    if s.slope is not None:
        ds.RescaleSlope = s.slope
        ds.RescaleIntercept = s.intercept or 0.0
    return ds


def _write(path: Path, pixels: np.ndarray, template: Dataset, sop_uid: str, number: int, geometry: dict) -> None:
    """One image file: the series' template plus this image's UID, number, geometry and pixels
    (uint16 little endian)."""
    ds = template
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = number
    ds.ImageOrientationPatient = [round(float(v), 6) for v in geometry["orientation"]]
    ds.ImagePositionPatient = [round(float(v), 4) for v in geometry["position"]]
    ds.PixelSpacing = [geometry["spacing"][0], geometry["spacing"][1]]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _sag_geometry(grid: SagGrid, x: float) -> dict:
    cp, sp = math.cos(grid.phi), math.sin(grid.phi)
    # pixel (0, 0): patient (x, y=u0, z=−v0); row direction (0, cos φ, sin φ),
    # column direction (0, sin φ, −cos φ)
    return {"orientation": (0, cp, sp, 0, sp, -cp), "position": (x, grid.u0, -grid.v0), "spacing": (grid.dy, grid.dx)}


def _axial_geometry(series: Series, pos: tuple) -> dict:
    ax = series.axial
    th = ax["theta"]
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, math.cos(th), math.sin(th)])  # posterior, tilted with the discs
    centre = np.array([pos[0], pos[1], -pos[2]])
    origin = centre - row * ax["cols"] / 2 * ax["spacing"] - col * ax["rows"] / 2 * ax["spacing"]
    return {"orientation": (*row, *col), "position": origin, "spacing": (ax["spacing"], ax["spacing"])}


# ----------------------------------------------------------------------------- one study


def generate_study(root: str | Path, index: int, seed: int, cue_strength: float = 1.0,
                   labels: dict | None = None) -> dict:
    """Write study ``index`` under ``root/lumbar_train150/study<index>/`` and return
    ``{"entry": <annotation entry>, "cues": {identification: {"tag", "cues"}}, "seconds": float}``.

    ``labels`` replaces drawn classes, e.g. ``{"L3": "v2", "L4-L5": "v3,v5"}`` (tags as in the
    annotation). The same (seed, index) give the same anatomy, noise and acquisition whatever
    ``cue_strength`` and ``labels``: only the cues change.

    Raises:
        ValueError: ``labels`` names an identification outside the 11, or a landmark falls
            outside the T2 frame (a bug, not data).
    """
    start = time.perf_counter()
    study = plan_study(seed, index, labels)
    folder = Path(root) / SPLIT / f"study{index}"
    folder.mkdir(parents=True, exist_ok=True)
    noise_rng = _rng(seed, index, 4)
    n_images = sum(len(s.positions) for s in study.series)
    names = iter(_rng(seed, index, 5).permutation(n_images) + 1)  # files in shuffled order
    for number, s in enumerate(study.series, start=2):
        series_uid = generate_uid(entropy_srcs=[study.uid_root, s.kind])
        template = _template(study, s, series_uid, number)
        renderer = SagRenderer(study, s) if s.grid is not None else None
        for k, pos in enumerate(s.positions):
            if renderer is not None:
                signal = renderer.render(pos - study.x_mid, cue_strength, noise_rng)
                geometry = _sag_geometry(s.grid, pos)
            else:
                signal, geometry = _render_axial(study, s, pos, cue_strength, noise_rng), _axial_geometry(s, pos)
            sop = generate_uid(entropy_srcs=[series_uid, str(k)])
            _write(folder / f"image{next(names)}.dcm", _stored(signal, s), template, sop, k + 1, geometry)
    t2 = study.series[0]
    t2_series_uid = generate_uid(entropy_srcs=[study.uid_root, t2.kind])
    frame_uid = generate_uid(entropy_srcs=[t2_series_uid, str(study.annotated)])
    points, cues = [], {}
    for name in VERTEBRAE + DISCS:
        is_vertebra = name in VERTEBRAE
        where = study.bone(name).centre if is_vertebra else study.disc(name).centre
        col, row = t2.grid.to_pixel(float(where[0]), float(where[1]))
        if not (8 <= col <= t2.grid.cols - 9 and 8 <= row <= t2.grid.rows - 9):
            raise ValueError(f"study {index}: {name} at ({col:.1f}, {row:.1f}) falls outside the "
                             f"{t2.grid.cols}×{t2.grid.rows} T2 frame")
        tag = {"identification": name, ("vertebra" if is_vertebra else "disc"): study.labels[name]}
        points.append({"coord": [int(round(col)), int(round(row))], "zIndex": study.annotated, "tag": tag})
        drawn = study.bone(name).cues if is_vertebra else study.disc(name).cues
        cues[name] = {"tag": study.labels[name], "cues": drawn.names(),
                      **({"distractor_dark": round(study.disc(name).distractor_dark, 3)} if not is_vertebra else {})}
    _rng(seed, index, 6).shuffle(points)
    entry = {"studyUid": study.uid_root, "version": "v0.1",
             "data": [{"seriesUid": t2_series_uid, "instanceUid": frame_uid,
                       "annotation": [{"annotator": 54, "data": {"point": points}}]}]}
    return {"entry": entry, "cues": cues, "seconds": time.perf_counter() - start}


def _one(args: tuple) -> dict:
    root, index, seed, strength = args
    cv2.setNumThreads(1)
    return generate_study(root, index, seed, strength)


def generate(out: str | Path, studies: int, seed: int, cue_strength: float = 1.0, jobs: int = 1) -> dict:
    """Write ``studies`` studies (study1 … studyN) and the annotation file; returns a summary
    (seconds, class counts).

    Raises:
        FileExistsError: ``out`` holds anything but a previous dataset of this script (which is
            replaced whole, so that no study of a larger earlier run is left behind).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        ours = {SPLIT, f"{SPLIT}_annotation.json", "independent_cues.json"}
        if not (out / "independent_cues.json").is_file() or {c.name for c in out.iterdir()} - ours:
            raise FileExistsError(f"--out {out}: a folder with other content; give a new or empty folder (a previous "
                                  "dataset of this script is replaced)")
        shutil.rmtree(out / SPLIT, ignore_errors=True)
    (out / SPLIT).mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), k, seed, cue_strength) for k in range(1, studies + 1)]
    start = time.perf_counter()
    if jobs > 1:
        with Pool(jobs) as pool:
            results = list(pool.imap(_one, tasks, chunksize=2))
    else:
        results = [_one(t) for t in tasks]
    (out / f"{SPLIT}_annotation.json").write_text(json.dumps([r["entry"] for r in results]))
    cues = {r["entry"]["studyUid"]: r["cues"] for r in results}
    (out / "independent_cues.json").write_text(json.dumps(
        {"seed": seed, "studies": studies, "cue_strength": cue_strength, "by_study": cues}, indent=1))
    counts: dict[str, int] = {}
    for r in results:
        for name, c in r["cues"].items():
            group = "vertebra" if name in VERTEBRAE else "disc"
            for code in c["tag"].split(","):
                counts[f"{group}_{code}"] = counts.get(f"{group}_{code}", 0) + 1
    return {"seconds": round(time.perf_counter() - start, 1), "counts": dict(sorted(counts.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="dataset root to write (lumbar_train150/ and its annotation)")
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cue-strength", type=float, default=1.0,
                        help="scales every cue's contrast and size (0 = labels drawn but invisible)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    if args.cue_strength < 0:
        parser.error("--cue-strength must be ≥ 0")
    try:
        summary = generate(args.out, args.studies, args.seed, args.cue_strength, max(1, args.jobs))
    except FileExistsError as exc:
        parser.error(str(exc))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
