"""The phantom's anatomy: a parametric lumbar spine placed in a sagittal image plane (mm).

:func:`build_spine` chains T11..S4 bodies and the discs between them along a lordotic curve
(heights, depths, lordosis and in-plane rotation drawn per study), attaches the appearance of each
landmark class (TianChi vertebra ``v1``/``v2``, disc ``v1``–``v4``, Schmorl's nodes), the canal depth
per level and the posterior elements, and resamples the smoothed centre line every 2 mm.

Coordinates: image-plane mm, ``X`` along the sagittal columns (anterior → posterior), ``Y`` along the
rows (head → feet); every structure has a local :class:`~.shapes.Frame` (``a`` along the spine
towards the feet, ``b`` posterior). The phantom is symmetric about the midline except where a
structure says otherwise (herniations, nodes, RSNA foramina / recesses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .labels import LANDMARKS, StudyLabels
from .seeding import uniform
from .shapes import Frame

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


# Whole column, top to bottom. Landmarks are a subset; T11/T12/S1..S4 are context.
BODIES = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4")
_BODY_H = (0.90, 0.94, 0.97, 1.00, 1.02, 1.02, 0.98, 0.95, 0.74, 0.60, 0.48)  # half-height factors
_BODY_W = (0.88, 0.92, 0.95, 0.98, 1.00, 1.02, 1.03, 1.00, 0.80, 0.62, 0.48)  # half-depth factors
JOINTS = ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1", "S1-S2", "S2-S3", "S3-S4")
_DISC_H = (0.55, 0.65, 0.78, 0.88, 0.97, 1.05, 0.95)  # disc-height factors of the 7 real discs
_LORDOSIS_SHARE = (0.12, 0.15, 0.20, 0.25, 0.28)  # share of L1→S1 lordosis at L1-L2 .. L5-S1

# (T1, T2) base intensities on a 0..1 scale, jittered per study.
TISSUE: dict[str, tuple[float, float]] = {
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

_MATRICES = (320, 384, 416, 448, 512, 576, 640)

#: The ways a degenerated (``v2``) vertebra shows (issue 14 §0): focal marrow signal change (mottled
#: marrow), a Modic-like band along an endplate, corner osteophytes. Each is present with
#: :data:`CUE_P`; a ``v2`` body always has at least one, and rarely all three.
VERTEBRA_CUES = ("marrow", "modic", "osteophyte")
#: Optional signs of a degenerated disc (``v2``–``v4``) beside its class's own shape (bulge, knob,
#: herniation): a darker nucleus (desiccation) and a lower disc. Either, both or neither.
DISC_CUES = ("desiccation", "height_loss")
CUE_P = 0.5
#: A normal (``v1``) disc is mildly desiccated with this probability: a distractor, as in ageing spines.
P_NORMAL_DESICCATION = 0.15


def draw_cues(rng: np.random.Generator, names: tuple[str, ...], p: float = CUE_P,
              at_least_one: bool = True) -> tuple[str, ...]:
    """Each of ``names`` independently with probability ``p`` (in ``names`` order); with ``at_least_one``
    an empty draw is replaced by one cue drawn uniformly."""
    present = tuple(c for c in names if rng.random() < p)
    if not present and at_least_one:
        present = (names[int(rng.integers(len(names)))],)
    return present


def mix_tissue(tissues: dict, hydrated: str, dark: str, desiccation: float):
    """``tissues[hydrated]`` blended towards ``tissues[dark]`` by ``desiccation`` ∈ [0, 1]; works for the
    (T1, T2) pairs of :func:`study_tissues` and for one-weighting dicts of floats alike."""
    w = float(desiccation)
    a, b = tissues[hydrated], tissues[dark]
    if isinstance(a, tuple):
        return tuple((1 - w) * x + w * y for x, y in zip(a, b))
    return (1 - w) * a + w * b


def study_tissues(rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """``TISSUE`` with every (T1, T2) intensity jittered by ±10 % for one study (air fixed at 0.012)."""
    return {
        k: (v[0] * uniform(rng, 0.9, 1.1), v[1] * uniform(rng, 0.9, 1.1)) if k != "air" else (0.012, 0.012)
        for k, v in TISSUE.items()
    }


@dataclass
class Acquisition:
    """Sagittal acquisition of a study: matrix (pixels), pixel size ``dy × dx`` (mm), slice count,
    spacing and thickness (mm), and the patient-space centre (LPS mm): midline ``x_mid``, ``y_c``, ``z_c``."""

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


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """The TianChi-like sagittal acquisition: 320–640 px matrices, 0.5–0.9 mm pixels, 7–11 slices."""
    dx = round(uniform(rng, 0.5, 0.9), 4)
    dy = dx if rng.random() < 0.7 else round(dx * uniform(rng, 0.96, 1.04), 4)
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
    spacing = round(uniform(rng, 3.5, 4.5), 2)
    thickness = round(spacing * uniform(rng, 0.8, 1.0), 2)
    return Acquisition(
        rows=rows,
        cols=cols,
        dy=dy,
        dx=dx,
        n_slices=n,
        spacing=spacing,
        thickness=thickness,
        x_mid=round(uniform(rng, -8, 8), 3),
        y_c=round(uniform(rng, -10, 50), 3),
        z_c=round(uniform(rng, -60, 60), 3),
    )


@dataclass
class Body:
    """A vertebral body: superellipse of half height ``h`` and half depth ``w`` (mm) in its frame."""

    name: str
    frame: Frame
    h: float  # half height (along t)
    w: float  # half AP depth (along n)
    cls: str  # v1 | v2 | sacral
    lat: float  # lateral half width (mm)
    marrow: str = "marrow"
    tex_amp: float = 0.04
    modic_sides: tuple[int, ...] = ()  # -1 upper endplate, +1 lower endplate
    modic_type: int = 2
    modic_band: float = 4.0
    modic_alpha: float = 1.0  # how far the band's signal goes from marrow towards the Modic tissue's
    osteophytes: tuple[tuple[int, float, float, float], ...] = ()  # (side, length, width, angle)
    cues: tuple[str, ...] = ()  # which of VERTEBRA_CUES this body shows


@dataclass
class Disc:
    """An intervertebral disc between ``upper`` and ``lower``; ``bulge`` (mm) past the bodies' margin."""

    name: str
    frame: Frame  # centre of the disc, mean orientation
    upper: Body
    lower: Body
    w: float
    height: float  # along the centre line
    cls: str  # v1..v4 | remnant
    bulge: float
    lat: float
    nucleus_shift: float = 0.0
    desiccation: float = 0.0  # 0: hydrated (annulus_n / nucleus_n) … 1: dark (annulus_d / nucleus_d)
    cues: tuple[str, ...] = ()  # which of DISC_CUES this disc shows


@dataclass
class Hernia:
    """Disc material behind a disc: a broad bulge (``v2``), a focal knob (``v3``) or a migrating
    herniation (``v4``), ``depth`` mm into the canal, centred ``x0`` mm off the midline."""

    disc: Disc
    kind: str  # bulge (v2) | v3 | v4
    depth: float
    a0: float
    ha: float
    direction: int = 1
    migration: float = 0.0
    x0: float = 0.0
    lat: float = 8.0


@dataclass
class Node:
    """A Schmorl's node: a pit of disc signal with a dark rim in an endplate of ``body``."""

    body: Body
    side: int  # -1: pit in the body's upper endplate, +1: lower endplate
    b0: float
    r: float
    x0: float
    lat: float
    value_t2: float


@dataclass
class Spinous:
    """The spinous process of ``body`` (posterior, tilted caudally)."""

    body: Body
    b0: float
    length: float
    tilt: float  # radians, tip points caudally
    a_off: float
    h0: float
    h1: float


@dataclass
class Spine:
    """The whole column in image-plane mm plus its centre line (resampled every 2 mm), canal depth per
    body / disc ``dc`` (mm, anterior → posterior wall), canal and body lateral half widths (mm)."""

    bodies: dict[str, Body]
    discs: dict[str, Disc]
    hernias: list[Hernia]
    nodes: list[Node]
    spinous: list[Spinous]
    curve_xy: np.ndarray  # (m, 2) image mm, 2 mm spacing
    curve_s: np.ndarray
    curve_t: np.ndarray  # unit tangents
    dc: dict[str, float]  # canal depth per body/disc
    canal_half_width: float
    lat_body: float
    s_conus: float = 0.0
    s_sac_end: float = 0.0
    s_canal_end: float = 0.0


def rotate(v: np.ndarray, ang: float) -> np.ndarray:
    """``v`` (2,) rotated by ``ang`` radians."""
    c, s = math.cos(ang), math.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def build_spine(rng: np.random.Generator, labels: StudyLabels, acq: Acquisition,
                subtle: bool = True) -> tuple[Spine, dict[str, Any]]:
    """Chain the column in a canonical frame, then rotate / place it in the image (mm).

    The spine fits the sagittal field of view of ``acq`` with every lumbar landmark's body / disc in
    view; disc heights, bulges, herniations and Schmorl's nodes follow ``labels``. ``subtle``: the
    degeneration cues are random subsets (:data:`VERTEBRA_CUES`, :data:`DISC_CUES`; the TianChi
    labels); False shows every cue of a degenerated landmark in full (the RSNA studies, where the
    TianChi classes are only the look of the bodies and discs, not labels). Returns the spine
    and ``{"theta": in-plane rotation (rad), "psi": tilt of every body / disc (rad)}``.
    """
    def cues_of(names: tuple[str, ...], at_least_one: bool = True) -> tuple[str, ...]:
        return draw_cues(rng, names, at_least_one=at_least_one) if subtle else names

    hb = uniform(rng, 11.0, 15.0)  # half body height: bodies 22..30 mm
    wb = hb * uniform(rng, 1.2, 1.42)
    lat_body = uniform(rng, 20.0, 25.0)
    hd0 = uniform(rng, 8.0, 11.0)
    psi_l1 = math.radians(uniform(rng, -22.0, -10.0))
    lordosis = math.radians(uniform(rng, 35.0, 58.0))
    psi = {"T11": psi_l1 + math.radians(uniform(rng, -3, 3)), "T12": psi_l1 + math.radians(uniform(rng, -2, 2)),
           "L1": psi_l1}
    acc = psi_l1
    for name, share in zip(("L2", "L3", "L4", "L5", "S1"), _LORDOSIS_SHARE):
        acc += lordosis * share * uniform(rng, 0.85, 1.15)
        psi[name] = acc
    psi["S2"] = psi["S1"] - math.radians(uniform(rng, 3, 8))
    psi["S3"] = psi["S2"] - math.radians(uniform(rng, 6, 12))
    psi["S4"] = psi["S3"] - math.radians(uniform(rng, 8, 14))

    halves = {n: hb * f * uniform(rng, 0.97, 1.03) for n, f in zip(BODIES, _BODY_H)}
    depths = {n: wb * f * uniform(rng, 0.97, 1.03) for n, f in zip(BODIES, _BODY_W)}
    disc_h: dict[str, float] = {}
    disc_cues: dict[str, tuple[str, ...]] = {}
    for name, f in zip(JOINTS, _DISC_H + (0, 0, 0)):
        if name.startswith("S"):
            disc_h[name] = uniform(rng, 1.6, 2.4)
            continue
        cls = labels.disc[name]
        h = hd0 * f * uniform(rng, 0.93, 1.07)
        disc_cues[name] = cues_of(DISC_CUES, at_least_one=False) if cls != "v1" else ()
        if "height_loss" in disc_cues[name]:
            h *= uniform(rng, 0.62, 0.85) if subtle else uniform(rng, *((0.6, 0.78) if cls == "v2" else (0.65, 0.85)))
        disc_h[name] = max(h, 3.0)

    # canonical chain: u posterior, v feet; t = (sin psi, cos psi), n = (cos psi, -sin psi)
    def tvec(p: float) -> np.ndarray:
        return np.array([math.sin(p), math.cos(p)])

    centres: dict[str, np.ndarray] = {"T11": np.zeros(2)}
    for i, joint in enumerate(JOINTS):
        up, lo = BODIES[i], BODIES[i + 1]
        tu, tl = tvec(psi[up]), tvec(psi[lo])
        tm = (tu + tl) / np.linalg.norm(tu + tl)
        e_u = centres[up] + halves[up] * tu
        e_l = e_u + disc_h[joint] * tm
        centres[joint] = (e_u + e_l) / 2
        psi[joint] = math.atan2(tm[0], tm[1])
        centres[lo] = e_l + halves[lo] * tl

    anchor = np.mean([centres[n] for n in LANDMARKS], axis=0)
    theta = math.radians(uniform(rng, -15.0, 15.0))
    fov_x, fov_y = (acq.cols - 1) * acq.dx, (acq.rows - 1) * acq.dy
    offset = np.array([uniform(rng, -0.15, 0.15) * fov_x, uniform(rng, -0.15, 0.15) * fov_y])
    place = {n: rotate(p - anchor, theta) for n, p in centres.items()}
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

    def frame(name: str) -> Frame:
        t = rotate(tvec(psi[name]), theta)
        return Frame(float(place[name][0]), float(place[name][1]), float(t[0]), float(t[1]))

    bodies: dict[str, Body] = {}
    for name in BODIES:
        if name.startswith("S"):
            cls = "sacral"
        else:
            cls = labels.vertebra[name]
        b = Body(name, frame(name), halves[name], depths[name], cls, lat_body * (1.0 if name[0] != "S" else 0.9))
        if name.startswith("S"):
            b.marrow = "marrow_sacrum"
            b.tex_amp = 0.05
        elif cls == "v2":  # a random, non-empty subset of the cues, each milder than a textbook case
            b.cues = cues_of(VERTEBRA_CUES)
            # (subtle, full) ranges; the full ones are the generator's before issue 14 (RSNA keeps them)
            tex, p1, p2, band, length, width = (((0.11, 0.2), 0.4, 0.8, (2.5, 4.5), (5.0, 9.0), (3.0, 4.2)) if subtle
                                                else ((0.16, 0.26), 0.3, 0.6, (3.0, 5.0), (6.5, 10.0), (3.4, 4.6)))
            b.tex_amp = uniform(rng, *tex) if "marrow" in b.cues else uniform(rng, 0.02, 0.06)
            if "modic" in b.cues:
                u = rng.random()
                b.modic_sides = (-1,) if u < p1 else (1,) if u < p2 else (-1, 1)
                b.modic_type = 1 if rng.random() < 0.4 else 2
                b.modic_band = uniform(rng, *band)
                # a partial change (+20–45 % on T2, not a white stripe); the full Modic tissue when not subtle
                b.modic_alpha = uniform(rng, 0.25, 0.5) if subtle else 1.0
            if "osteophyte" in b.cues:
                u = rng.random()
                sides = (-1,) if u < p1 else (1,) if u < p2 else (-1, 1)
                b.osteophytes = tuple(
                    (s, uniform(rng, *length), uniform(rng, *width), math.radians(uniform(rng, 40, 62)))
                    for s in sides
                )
        else:
            b.tex_amp = uniform(rng, 0.02, 0.05)
        bodies[name] = b

    discs: dict[str, Disc] = {}
    hernias: list[Hernia] = []
    nodes: list[Node] = []
    for i, joint in enumerate(JOINTS):
        up, lo = bodies[BODIES[i]], bodies[BODIES[i + 1]]
        cls = labels.disc.get(joint, "remnant") if not joint.startswith("S") else "remnant"
        wd = (up.w + lo.w) / 2
        bulge = uniform(rng, 0.3, 0.8)
        if cls == "v2":
            bulge = uniform(rng, 2.2, 4.0)
        d = Disc(joint, frame(joint), up, lo, wd, disc_h[joint], cls, bulge, lat_body + 1.0,
                 uniform(rng, -0.1, 0.12))
        d.cues = disc_cues.get(joint, ())
        if not subtle:
            d.desiccation = 0.0 if cls in ("v1", "remnant") else 1.0
        elif "desiccation" in d.cues:
            d.desiccation = uniform(rng, 0.55, 1.0)
        elif cls == "v1" and rng.random() < P_NORMAL_DESICCATION:
            d.desiccation = uniform(rng, 0.15, 0.4)
        elif cls not in ("v1", "remnant"):
            d.desiccation = uniform(rng, 0.0, 0.3)
        discs[joint] = d
        if cls == "v2":  # broad, shallow dome over (and a little beyond) the posterior disc height
            dpsi = psi[BODIES[i + 1]] - psi[BODIES[i]]
            gap_post = max(1.5, d.height - 2 * wd * math.tan(dpsi / 2))
            hernias.append(
                Hernia(d, "bulge", depth=bulge, a0=0.0, ha=gap_post / 2 + uniform(rng, 1.4, 2.4), x0=0.0,
                       lat=lat_body)
            )
        elif cls == "v3":  # focal knob: deeper than it is tall
            hernias.append(
                Hernia(d, "v3", depth=uniform(rng, 4.2, 6.0), a0=uniform(rng, -0.1, 0.1) * d.height,
                       ha=min(3.2, max(2.0, d.height * uniform(rng, 0.28, 0.38))), x0=uniform(rng, -3, 3),
                       lat=uniform(rng, 7, 10))
            )
        elif cls == "v4":
            hernias.append(
                Hernia(d, "v4", depth=uniform(rng, 6.5, 10.0), a0=uniform(rng, -0.1, 0.1) * d.height,
                       ha=max(2.8, d.height * uniform(rng, 0.42, 0.5)), direction=1 if rng.random() < 0.5 else -1,
                       migration=uniform(rng, 7.0, 13.0), x0=uniform(rng, -3, 3), lat=uniform(rng, 8, 12))
            )
        if labels.schmorl.get(joint, False):
            side_up = rng.random() < 0.5
            body = up if side_up else lo
            nodes.append(
                Node(body, side=1 if side_up else -1, b0=uniform(rng, -0.45, 0.25) * body.w,
                     r=uniform(rng, 3.2, 5.0), x0=uniform(rng, -3, 3), lat=uniform(rng, 6, 9),
                     value_t2=uniform(rng, 0.55, 0.75))
            )

    dc_base = uniform(rng, 13.0, 17.5)
    dc: dict[str, float] = {}
    for name in BODIES + JOINTS:
        if name.startswith("S"):
            k = {"S1": 0.8, "S1-S2": 0.65, "S2": 0.55, "S2-S3": 0.5, "S3": 0.45, "S3-S4": 0.4, "S4": 0.35}[name]
            dc[name] = dc_base * k
        else:
            dc[name] = dc_base * uniform(rng, 0.93, 1.07)

    spinous: list[Spinous] = []
    for name in BODIES[:9]:
        b = bodies[name]
        sac = name.startswith("S")
        spinous.append(
            Spinous(
                b,
                b0=b.w + dc[name] - 1.0,
                length=uniform(rng, 9.0, 13.0) if sac else uniform(rng, 24.0, 34.0),
                tilt=math.radians(uniform(rng, 10, 25)),
                a_off=b.h * uniform(rng, 0.1, 0.3),
                h0=b.h * (0.75 if sac else uniform(rng, 0.55, 0.7)),
                h1=b.h * (0.55 if sac else uniform(rng, 0.38, 0.5)),
            )
        )

    # centre line through all centres, extended, smoothed and resampled every 2 mm
    order = []
    for i, n in enumerate(BODIES):
        order.append(n)
        if i < len(JOINTS):
            order.append(JOINTS[i])
    pts = [place[n] for n in order]
    t_top = rotate(tvec(psi["T11"]), theta)
    t_bot = rotate(tvec(psi["S4"]), theta)
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

    spine = Spine(bodies, discs, hernias, nodes, spinous, curve, s2, tang, dc, uniform(rng, 9.0, 12.0), lat_body)
    extras = {"theta": theta, "psi": psi}
    return spine, extras


def project_to_curve(curve: np.ndarray, s: np.ndarray, tang: np.ndarray, px: np.ndarray, py: np.ndarray):
    """Arc length S and signed normal distance B (posterior > 0) of points to the centre line."""
    d2 = (px[:, None] - curve[None, :, 0]) ** 2 + (py[:, None] - curve[None, :, 1]) ** 2
    k = np.argmin(d2, axis=1)
    cx, cy = curve[k, 0], curve[k, 1]
    tx, ty = tang[k, 0], tang[k, 1]
    ox, oy = px - cx, py - cy
    return s[k] + ox * tx + oy * ty, ox * ty - oy * tx


