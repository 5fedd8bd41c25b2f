"""Rendering of one synthetic RSNA 2024 study in memory (see :mod:`.rsna` for the layout and what
each severity looks like).

:func:`render_rsna_study` draws the labels (:mod:`.rsna_labels`), builds the phantom, narrows the
canal, foramina and recesses per grade, renders the Sagittal T1 / T2 stacks and the Axial T2 blocks,
numbers the instances, applies the study's quirk, places the label points and builds the DICOM
datasets. Geometry (patient LPS, mm): sagittal ``ImageOrientationPatient = [0,1,0, 0,0,-1]``,
slice ``i`` at ``x = x_mid − (i − mid)·spacing`` (slice-position order runs from the patient's left to
right); axial row direction +x (patient left), column direction posterior (tilted with the discs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from pydicom.dataset import Dataset

from .anatomy import Acquisition, Spine, build_spine, study_tissues
from .axial import AxialSection, axial_surroundings, render_axial_section
from .dicom import SyntheticSeries, hhmmss, instance_dataset, series_template
from .labels import DISCS, VERTEBRAE, StudyLabels
from .rsna_labels import CONDITIONS, LEVELS, RsnaLabels, sample_rsna_labels
from .sagittal import Foramen, ForaminaRenderer, render_stacks
from .seeding import hash_int, make_uid, study_rng, uniform

__all__ = ["RsnaSeries", "RsnaLabelPoint", "RsnaStudy", "render_rsna_study", "study_id_of"]

_LEVEL_DISC = dict(zip(LEVELS, ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")))
# per grade (0 Normal/Mild, 1 Moderate, 2 Severe): range of the measurable size
_CANAL_FRACTION = ((0.8, 0.95), (0.4, 0.5), (0.15, 0.25))  # CSF width / normal canal depth at the disc
_FORAMEN_SCALE = ((0.9, 1.05), (0.5, 0.6), (0.24, 0.32))  # foramen half axes / the level's normal ones
_RECESS_SCALE = ((0.9, 1.05), (0.5, 0.6), (0.18, 0.26))  # recess size / the level's normal one
_ROLE_DESCRIPTION = {"t1_sag": "Sagittal T1", "t2_sag": "Sagittal T2/STIR", "t2_ax": "Axial T2", "t2_ax2": "Axial T2"}
_SERIES_NUMBER = {"t2_sag": 1, "t1_sag": 2, "t2_ax": 3, "t2_ax2": 4}
_SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class RsnaSeries(SyntheticSeries):
    """One RSNA series: :class:`~.dicom.SyntheticSeries` (frames in slice-position order, per stack)
    plus its integer ``series_id``, per-frame ``instance_numbers`` (= file names), per-frame
    ``orientations`` (ImageOrientationPatient; frames of one series may differ: two stacks),
    whether it is written (``on_disk``) and which frames are RLE Lossless (``rle_frames``)."""

    series_id: int = 0
    instance_numbers: list[int] = field(default_factory=list)
    orientations: list[tuple[float, ...]] = field(default_factory=list)
    on_disk: bool = True
    rle_frames: frozenset[int] = frozenset()

    def frame_of(self, instance_number: int) -> int:
        """Index (slice-position order) of the frame with ``instance_number``."""
        return self.instance_numbers.index(int(instance_number))

    def to_patient(self, frame: int, x: float, y: float) -> np.ndarray:
        """LPS position (mm, (3,)) of pixel (column ``x``, row ``y``) of ``frame``:
        ImagePositionPatient + x·PixelSpacing[1]·row direction + y·PixelSpacing[0]·column direction."""
        iop = np.asarray(self.orientations[frame], dtype=float)
        dy, dx = self.pixel_spacing
        return np.asarray(self.positions[frame], dtype=float) + x * dx * iop[:3] + y * dy * iop[3:]


@dataclass(frozen=True)
class RsnaLabelPoint:
    """One row of ``train_label_coordinates.csv``: ``x, y`` = (column, row) pixels of the instance."""

    condition: str
    level: str
    series_id: int
    instance_number: int
    x: float
    y: float


@dataclass
class RsnaStudy:
    """One rendered RSNA study (in memory).

    ``series`` in ``train_series_descriptions.csv`` order (also those not on disk); ``points`` the
    coordinate rows (none for the ``blank_all`` quirk); ``files`` ``(path relative to the dataset
    root, dataset)`` of every file written; ``truth[level]`` the drawn geometry (mm): ``canal_width``,
    ``foramen`` and ``recess`` sizes per side (``"left"``/``"right"``), ``canal_point`` (LPS).
    """

    seed: int
    index: int
    study_id: int
    labels: RsnaLabels
    series: list[RsnaSeries]
    points: list[RsnaLabelPoint]
    files: list[tuple[str, Dataset]]
    truth: dict[str, dict]

    @property
    def quirk(self) -> str | None:
        return self.labels.quirk

    def series_by_id(self, series_id: int) -> RsnaSeries:
        """The series with ``series_id``.

        Raises:
            KeyError: no such series in this study.
        """
        for s in self.series:
            if s.series_id == int(series_id):
                return s
        raise KeyError(f"study {self.study_id} has no series {series_id}")

    def train_row(self) -> list:
        """The study's ``train.csv`` row: ``study_id`` then the 25 severities (``""`` when blank)."""
        return [self.study_id] + [self.labels.written(c, lv) for c in CONDITIONS for lv in LEVELS]

    def series_rows(self) -> list[list]:
        """The study's ``train_series_descriptions.csv`` rows."""
        return [[self.study_id, s.series_id, s.description] for s in self.series]

    def coordinate_rows(self) -> list[list]:
        """The study's ``train_label_coordinates.csv`` rows (x, y rounded to 4 decimals)."""
        return [[self.study_id, p.series_id, p.instance_number, p.condition, p.level, _num(p.x), _num(p.y)]
                for p in self.points]


def _num(v: float) -> str:
    return repr(round(float(v), 4))


# --------------------------------------------------------------------------------------------------
# identifiers and per-study draws
# --------------------------------------------------------------------------------------------------


def study_id_of(seed: int, index: int) -> int:
    """``study_id`` of study ``index``: ``(index + 1)·10⁵ + a hashed part`` (unique, ascending)."""
    return (int(index) + 1) * 100_000 + hash_int("rsna-study", seed, index) % 100_000


def _series_id(seed: int, index: int, k: int) -> int:
    # an injective map of (index, k) to 9-digit integers (the multiplier is coprime with 9·10⁸)
    offset = hash_int("rsna-series", seed) % 900_000_000
    return 100_000_000 + ((int(index) * 4 + k) * 738_846_547 + offset) % 900_000_000


def _appearance(rng: np.random.Generator) -> StudyLabels:
    """TianChi classes used only for the look of bodies and discs (no herniations: the canal is
    narrowed by the spinal stenosis grade alone)."""
    vert = {v: "v2" if rng.random() < 0.6 else "v1" for v in (*VERTEBRAE, "T11", "T12")}
    disc = {d: "v2" if rng.random() < 0.35 else "v1" for d in (*DISCS, "T11-T12")}
    schmorl = {d: bool(rng.random() < 0.04) for d in DISCS}
    schmorl["T11-T12"] = False
    return StudyLabels(vertebra=vert, disc=disc, schmorl=schmorl, missing=frozenset(), extra=False)


def _sagittal_acquisition(rng: np.random.Generator) -> Acquisition:
    """Sagittal matrix 256–384 px (sometimes 64 rows taller), 240–300 mm field of view, 13–17 slices
    3.5–4.2 mm apart."""
    cols = int(rng.choice([256, 320, 384], p=[0.4, 0.4, 0.2]))
    dx = round(uniform(rng, 240.0, 300.0) / cols, 4)
    rows = cols if rng.random() < 0.8 else cols + 64
    n = int(rng.choice([13, 15, 17], p=[0.2, 0.6, 0.2]))
    spacing = round(uniform(rng, 3.5, 4.2), 2)
    thickness = round(spacing * uniform(rng, 0.8, 1.0), 2)
    return Acquisition(rows=rows, cols=cols, dy=dx, dx=dx, n_slices=n, spacing=spacing, thickness=thickness,
                       x_mid=round(uniform(rng, -8, 8), 3), y_c=round(uniform(rng, -10, 50), 3),
                       z_c=round(uniform(rng, -60, 60), 3))


def _posterior_of(tangent: tuple[float, float]) -> np.ndarray:
    """LPS posterior unit vector across the spine for a sagittal-plane tangent (tx, ty) (image mm)."""
    tx, ty = tangent
    return np.array([0.0, ty, tx])


def _axial_orientation(posteriors: list[np.ndarray], exact_axial: bool) -> tuple[float, ...]:
    """ImageOrientationPatient of axial slices across discs of mean posterior direction: row +x,
    column the mean posterior direction (tilt rounded to 0.5°), or exactly [1,0,0, 0,1,0]."""
    if exact_axial:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    mean = np.mean(posteriors, axis=0)
    beta = round(math.degrees(math.atan2(mean[2], mean[1])) * 2) / 2
    b = math.radians(beta)
    return (1.0, 0.0, 0.0, 0.0, round(math.cos(b), 4), round(math.sin(b), 4))  # as written (DS, 4 decimals)


# --------------------------------------------------------------------------------------------------
# render_rsna_study
# --------------------------------------------------------------------------------------------------


def render_rsna_study(seed: int, index: int, frequencies: Mapping | None = None) -> RsnaStudy:
    """Render study ``index`` of the synthetic RSNA set ``seed`` in memory.

    Returns its series, label points, DICOM datasets (paths relative to the dataset root) and the
    drawn geometry. Depends only on ``(seed, index, frequencies)``.

    Raises:
        ValueError: bad ``frequencies`` (see :func:`~.rsna_labels.merge_rsna_frequencies`).
    """
    labels = sample_rsna_labels(seed, index, frequencies)
    geo = study_rng(seed, index, "rsna-geometry")
    pix = study_rng(seed, index, "rsna-pixels")
    hdr = study_rng(seed, index, "rsna-headers")
    qrng = study_rng(seed, index, "rsna-quirk-details")
    study_id = study_id_of(seed, index)

    acq = _sagittal_acquisition(geo)
    look = _appearance(geo)
    spine, _ = build_spine(geo, look, acq, subtle=False)  # the look of bodies / discs, not labels
    tis = study_tissues(geo)
    gains = (uniform(geo, 1700, 3300), uniform(geo, 1700, 3300))
    sigmas = (uniform(geo, 0.012, 0.035), uniform(geo, 0.012, 0.035))
    truth = _grade_geometry(geo, labels, spine)  # sets the canal depth: before the renderer is built
    mid = acq.n_slices // 2
    foramen_slice = {}
    for side, sign in (("left", -1), ("right", 1)):  # slice index grows towards the patient's right
        k = int(round((spine.canal_half_width + uniform(geo, 4.5, 7.0)) / acq.spacing))
        foramen_slice[side] = mid + sign * min(max(k, 2), mid - 1)

    t1_stack, t2_stack, sag_pos, plane = _sagittal_stacks(pix, spine, acq, tis, gains, sigmas, truth, foramen_slice)
    plan = [("t2_ax", LEVELS, [LEVELS])]
    if labels.quirk == "two_axial_series":
        plan = [("t2_ax", LEVELS[:3], [LEVELS[:3]]), ("t2_ax2", LEVELS[3:], [LEVELS[3:]])]
    elif labels.quirk == "axial_two_stacks":
        plan = [("t2_ax", LEVELS, [LEVELS[:2], LEVELS[2:]])]
    exact_axial = bool(geo.random() < 0.3)
    axial = [_axial_block_series(geo, pix, role, levels, stacks, exact_axial, spine, look, tis, gains[1], sigmas[1],
                                 truth, plane) for role, levels, stacks in plan]

    te_tr = {
        "t1_sag": (round(uniform(hdr, 9.5, 15.0), 2), round(uniform(hdr, 400.0, 700.0), 1)),
        "t2_sag": (round(uniform(hdr, 88.0, 120.0), 2), round(uniform(hdr, 2500.0, 4000.0), 1)),
        "t2_ax": (round(uniform(hdr, 88.0, 120.0), 2), round(uniform(hdr, 2500.0, 4500.0), 1)),
    }
    te_tr["t2_ax2"] = te_tr["t2_ax"]
    series = [
        _series("t1_sag", _series_id(seed, index, 0), te_tr["t1_sag"], [_SAG_IOP] * acq.n_slices,
                (acq.dy, acq.dx), acq.thickness, acq.spacing, sag_pos.copy(), t1_stack),
        _series("t2_sag", _series_id(seed, index, 1), te_tr["t2_sag"], [_SAG_IOP] * acq.n_slices,
                (acq.dy, acq.dx), acq.thickness, acq.spacing, sag_pos.copy(), t2_stack),
    ]
    for k, block in enumerate(axial, start=2):
        series.append(_series(block.role, _series_id(seed, index, k), te_tr[block.role], block.orientations,
                              (block.dxa, block.dxa), block.thickness, None, block.positions, block.pixels))
    _number_instances(series, labels.quirk, qrng, study_id)

    # ---- label points (train_label_coordinates.csv rows)
    by_role = {s.role: s for s in series}
    t1, t2 = by_role["t1_sag"], by_role["t2_sag"]
    spinal_slice = {lv: mid for lv in LEVELS}
    if labels.quirk == "spinal_two_slices":
        other = mid + (1 if qrng.random() < 0.5 else -1)
        spinal_slice.update({"L4/L5": other, "L5/S1": other})
    label_of = {lv: (block.role, frame, xy) for block in axial for lv, (frame, xy) in block.labels.items()}
    points: list[RsnaLabelPoint] = []
    for condition in CONDITIONS if labels.quirk != "blank_all" else ():
        side = condition.split()[0].lower()
        for level in LEVELS:
            if condition == "Spinal Canal Stenosis":
                (x, y), ser, frame = plane[level]["canal"], t2, spinal_slice[level]
                x, y = x / acq.dx, y / acq.dy
            elif "Foraminal" in condition:
                (x, y), ser, frame = plane[level]["foramen"], t1, foramen_slice[side]
                x, y = x / acq.dx, y / acq.dy
            else:
                role, frame, xy = label_of[level]
                (x, y), ser = xy[side], by_role[role]
            points.append(RsnaLabelPoint(condition, level, ser.series_id, ser.instance_numbers[frame], x, y))

    files = _datasets(seed, index, study_id, series, hdr, gains)
    return RsnaStudy(seed=seed, index=index, study_id=study_id, labels=labels, series=series, points=points,
                     files=files, truth=truth)


def _grade_geometry(rng: np.random.Generator, labels: RsnaLabels, spine: Spine) -> dict[str, dict]:
    """Turn the 25 severities into sizes (mm) per level and narrow the canal of ``spine`` at each disc.

    The canal's CSF width at the disc becomes ``canal_width``: the disc bulges into the canal by 50-60 %
    of the loss (``bulge``), the posterior wall (ligamentum flavum) moves forward by the rest.
    """
    bulge_hernia = {h.disc.name: h for h in spine.hernias if h.kind == "bulge"}
    truth: dict[str, dict] = {}
    for level in LEVELS:
        name = _LEVEL_DISC[level]
        dcn = spine.dc[name]
        width = dcn * uniform(rng, *_CANAL_FRACTION[labels.grade("Spinal Canal Stenosis", level)])
        bulge = uniform(rng, 0.5, 0.6) * (dcn - width)
        spine.discs[name].bulge = bulge
        if name in bulge_hernia:
            bulge_hernia[name].depth = bulge
        spine.dc[name] = bulge + width
        base_t, base_n, base_r = uniform(rng, 5.5, 6.5), uniform(rng, 3.8, 4.6), uniform(rng, 3.2, 4.0)
        foramen, recess = {}, {}
        for side in ("left", "right"):
            s = uniform(rng, *_FORAMEN_SCALE[labels.grade(f"{side.title()} Neural Foraminal Narrowing", level)])
            foramen[side] = (base_t * s, base_n * s)
            grade = labels.grade(f"{side.title()} Subarticular Stenosis", level)
            recess[side] = base_r * uniform(rng, *_RECESS_SCALE[grade])
        truth[level] = {"canal_width": width, "canal_depth_normal": dcn, "bulge": bulge, "foramen": foramen,
                        "recess": recess, "recess_normal": base_r}
    return truth


def _sagittal_stacks(rng: np.random.Generator, spine: Spine, acq: Acquisition, tis: dict,
                     gains: tuple[float, float], sigmas: tuple[float, float], truth: dict[str, dict],
                     foramen_slice: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, dict]]:
    """The T1 and T2 stacks (slice-position order: patient left → right), their ImagePositionPatient
    (n, 3) and per level the image-plane points (mm) of the canal centre and the foramen at the disc
    (``truth[level]["canal_point"]`` gets the canal centre in LPS)."""
    n, mid = acq.n_slices, acq.n_slices // 2
    sag = ForaminaRenderer(spine, acq, tis, rng)
    plane: dict[str, dict] = {}
    for level in LEVELS:
        name, tr = _LEVEL_DISC[level], truth[level]
        s_c, wall = sag.s_of[name], sag.posterior_wall[name]
        canal, tangent = sag.point_at(s_c, wall + tr["bulge"] + tr["canal_width"] / 2)
        hole, _ = sag.point_at(s_c, wall + tr["canal_depth_normal"] / 2)
        plane[level] = {"canal": canal, "foramen": hole, "tangent": tangent}
        for side, i in foramen_slice.items():
            sag.foramina.append(Foramen(hole, tangent, (mid - i) * acq.spacing, *tr["foramen"][side]))
    phase0 = uniform(rng, 0, 2 * math.pi)
    offsets = [(mid - i) * acq.spacing for i in range(n)]  # x_i - x_mid (> 0: patient left)
    phases = [phase0 + 0.55 * (i - mid) for i in range(n)]
    t1_stack, t2_stack, _ = render_stacks(sag, offsets, phases, None, sigmas, gains, rng)
    y0 = acq.y_c - (acq.cols - 1) / 2 * acq.dx
    z0 = acq.z_c + (acq.rows - 1) / 2 * acq.dy
    positions = np.round(np.array([[acq.x_mid - (i - mid) * acq.spacing, y0, z0] for i in range(n)]), 4)
    for level in LEVELS:
        cx, cy = plane[level]["canal"]
        truth[level]["canal_point"] = np.array([acq.x_mid, y0 + cx, z0 - cy])
    return t1_stack, t2_stack, positions, plane


@dataclass
class _AxialBlocks:
    """An axial series of slice blocks, frames in slice-position order (feet → head); ``labels[level]``
    the frame through the level and its (left, right) recess pixels."""

    role: str
    dxa: float
    thickness: float
    positions: np.ndarray
    orientations: list[tuple[float, ...]]
    pixels: np.ndarray
    labels: dict[str, tuple[int, dict[str, tuple[float, float]]]]


def _axial_block_series(geo: np.random.Generator, pix: np.random.Generator, role: str, levels: tuple[str, ...],
                        stacks: list[tuple[str, ...]], exact_axial: bool, spine: Spine, look: StudyLabels,
                        tis: dict, gain: float, sigma: float, truth: dict[str, dict],
                        plane: dict[str, dict]) -> _AxialBlocks:
    """3-4 parallel slices per level, the middle one (offset 0) through the level's canal centre; the
    levels of each group of ``stacks`` share one orientation (tilted to their discs' mean angle)."""
    side = int(geo.choice([256, 256, 256, 320]))
    dxa = round(uniform(geo, 0.6, 0.78) * 256 / side, 4)
    step = round(uniform(geo, 3.5, 4.5), 2)
    thickness = round(step * uniform(geo, 0.85, 1.0), 2)
    n_per = int(geo.choice([3, 3, 4]))
    r0 = (side - 1) / 2 - uniform(geo, 8, 18) / dxa  # canal centre pixel (row, col)
    c0 = (side - 1) / 2 + uniform(geo, -6, 6) / dxa
    wc = spine.canal_half_width
    iop_of: dict[str, tuple[float, ...]] = {}
    for group in stacks:
        iop = _axial_orientation([_posterior_of(plane[lv]["tangent"]) for lv in group],
                                 exact_axial and len(stacks) == 1)
        iop_of.update({lv: iop for lv in group})
    frames, label_frames = [], {}
    for level in levels:
        iop = np.array(iop_of[level])
        normal = np.cross(iop[:3], iop[3:])
        tr, disc = truth[level], spine.discs[_LEVEL_DISC[level]]
        around = None
        for j in range(n_per):
            a = (j - (n_per - 1) // 2) * step
            w = float(np.clip(1.0 - abs(a) / 5.0, 0.0, 1.0))  # how much of the level's narrowing shows here
            through_disc = abs(a) < 0.45 * disc.height
            ap = tr["canal_depth_normal"] + (tr["canal_width"] - tr["canal_depth_normal"]) * w
            bulge = tr["bulge"] * w if through_disc else 0.0
            recess = tuple(tr["recess_normal"] + (tr["recess"][s] - tr["recess_normal"]) * w for s in ("left", "right"))
            sec = AxialSection(through_disc=through_disc, disc_w=disc.w, lat_body=spine.lat_body, canal_half_width=wc,
                               canal_ap=ap, canal_ap_normal=tr["canal_depth_normal"],
                               centre_depth=disc.w + bulge + ap / 2, bulge=bulge, hydrated=disc.desiccation < 0.5,
                               recess=recess, recess_x=0.62 * wc + 1.0, recess_y=0.0)
            centre = tr["canal_point"] + a * normal
            ipp = np.round(centre - c0 * dxa * iop[:3] - r0 * dxa * iop[3:], 4)
            if around is None:  # bowel, muscles, fat: shared by the slices of the block
                around = axial_surroundings(pix, (side, side), (dxa, dxa), (r0, c0), sec, tis)
            pixels = render_axial_section(pix, (side, side), (dxa, dxa), (r0, c0), sec, around, tis, gain, sigma)
            if a == 0:  # the recesses: left at larger column (patient left = +x = +columns)
                label_frames[level] = (len(frames), {"left": (c0 + sec.recess_x / dxa, r0),
                                                     "right": (c0 - sec.recess_x / dxa, r0)})
            frames.append((float(centre[2]), ipp, tuple(float(v) for v in iop), pixels))
    order = sorted(range(len(frames)), key=lambda f: frames[f][0])  # slice-position order: feet → head
    rank = {f: k for k, f in enumerate(order)}
    return _AxialBlocks(role=role, dxa=dxa, thickness=thickness, positions=np.array([frames[f][1] for f in order]),
                        orientations=[frames[f][2] for f in order], pixels=np.stack([frames[f][3] for f in order]),
                        labels={lv: (rank[f], xy) for lv, (f, xy) in label_frames.items()})


def _number_instances(series: list[RsnaSeries], quirk: str | None, rng: np.random.Generator, study_id: int) -> None:
    """Instance numbers 1..n in slice-position order, file names and SOP UIDs, and the per-series quirks
    (numbering offset / gaps, reversed numbering, a missing series, RLE frames)."""
    for s in series:
        s.instance_numbers = list(range(1, s.pixels.shape[0] + 1))
    if quirk == "instance_offset":
        for s in series:
            numbers = [int(rng.integers(2, 40))]
            while len(numbers) < s.pixels.shape[0]:
                numbers.append(numbers[-1] + (2 if rng.random() < 0.25 else 1))
            s.instance_numbers = numbers
    elif quirk == "instance_reversed":
        s = series[int(rng.integers(len(series)))]
        s.instance_numbers = s.instance_numbers[::-1]
    elif quirk == "missing_series":
        series[int(rng.integers(3))].on_disk = False
    elif quirk == "rle":
        s = series[int(rng.integers(len(series)))]
        s.rle_frames = frozenset(int(i) for i in rng.choice(s.pixels.shape[0], size=3, replace=False))
    for s in series:
        s.filenames = [f"{m}.dcm" for m in s.instance_numbers]
        s.sop_uids = [f"{study_id}.{s.series_id}.{m}" for m in s.instance_numbers]


def _series(role: str, series_id: int, te_tr: tuple[float, float], orientations: list[tuple[float, ...]],
            spacing: tuple[float, float], thickness: float, between: float | None, positions: np.ndarray,
            pixels: np.ndarray) -> RsnaSeries:
    """An :class:`RsnaSeries` (instance numbers, file names and SOP UIDs come later)."""
    return RsnaSeries(role=role, uid=str(series_id), number=_SERIES_NUMBER[role], description=_ROLE_DESCRIPTION[role],
                      echo_time=te_tr[0], repetition_time=te_tr[1], orientation=orientations[0],
                      pixel_spacing=spacing, slice_thickness=thickness, spacing_between_slices=between,
                      positions=positions, pixels=pixels, sop_uids=[], filenames=[], series_id=series_id,
                      orientations=list(orientations))


def _datasets(seed: int, index: int, study_id: int, series: list[RsnaSeries], hdr: np.random.Generator,
              gains: tuple[float, float]) -> list[tuple[str, Dataset]]:
    """The datasets of every frame of the series on disk, with their paths below the dataset root.
    Anonymised as on Kaggle: PatientID / StudyInstanceUID = study_id, SeriesInstanceUID = series_id,
    SOPInstanceUID = ``study_id.series_id.instance_number``."""
    base_day = date(2017, 3, 6) + timedelta(days=hash_int("rsna-date", seed, index) % 1500)
    secs = 7 * 3600 + hash_int("rsna-time", seed, index) % (11 * 3600)
    roles = [s.role for s in series]
    gain_of = {r: gains[0] if r == "t1_sag" else gains[1] for r in roles}
    window = {r: (str(int(g * 0.45)), str(int(g * 0.9))) for r, g in gain_of.items()}
    common = {
        "study_uid": str(study_id),
        "frame_uid": make_uid(seed, index, "rsna-frame"),
        "date": base_day.strftime("%Y%m%d"),
        "time": hhmmss(secs),
        "series_time": {r: hhmmss(secs + 150 * (j + 1)) for j, r in enumerate(roles)},
        "accession": "",
        "patient_id": str(study_id),
        "patient_name": str(study_id),
        "sex": "F" if hdr.random() < 0.5 else "M",
        "age": f"{int(hdr.integers(20, 90)):03d}Y",
        "manufacturer": str(hdr.choice(["SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems"])),
        "field": "1.5" if hdr.random() < 0.5 else "3",
        "window": window,
    }
    files: list[tuple[str, Dataset]] = []
    for s in series:
        if not s.on_disk:
            continue
        template = series_template(common, s)
        for i in range(s.pixels.shape[0]):
            ds = instance_dataset(template, s, i, instance_number=s.instance_numbers[i],
                                  orientation=s.orientations[i] if s.orientations[i] != s.orientation else None,
                                  rle=i in s.rle_frames)
            files.append((f"train_images/{study_id}/{s.series_id}/{s.filenames[i]}", ds))
    return files
