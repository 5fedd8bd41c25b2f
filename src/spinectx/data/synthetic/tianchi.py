"""Synthetic lumbar-spine MR studies in the TianChi 2020 layout (SPEC §1–2).

:func:`generate_dataset` writes::

    OUT/<split>/study<k>/image<j>.dcm      # T1 sag + T2 sag + T2 axial, one flat folder, shuffled names
    OUT/<split>_annotation.json            # SPEC §2 format, one entry per study

Every study is the parametric phantom of :mod:`.anatomy` rendered on a sagittal stack; the annotated
frame is the middle slice of the T2 sagittal series. Each landmark class has its own visible
appearance (SPEC §1):

* vertebra ``v1`` homogeneous marrow; ``v2`` a random non-empty subset of three subtle cues
  (:data:`~.anatomy.VERTEBRA_CUES`, each with probability 1/2): mottled marrow, a 2.5–4.5 mm Modic-like
  band along one or both endplates (a partial signal change, 25–50 % of the way to Modic tissue), 5–9 mm
  corner osteophyte(s);
* disc ``v1`` bright (hydrated) on T2 with a brighter nucleus (15 % of them mildly desiccated, a
  distractor); ``v2`` posterior margin bulging 2–4 mm over the whole height; ``v3`` a focal 4–6 mm knob
  into the canal; ``v4`` a 6–10 mm herniation migrating up or down the canal. A degenerated disc
  (``v2``–``v4``) is also dark (desiccated) and/or low, each with probability 1/2
  (:data:`~.anatomy.DISC_CUES`), so brightness alone does not give the class. ``v5`` (extra tag)
  Schmorl's node: a pit of disc signal with a dark rim in the adjacent endplate.

``SyntheticStudy.cues`` names the cues each landmark shows, for tests and overlays.

Determinism: study ``k`` depends only on ``(seed, k)`` (:mod:`.seeding`), so ``workers > 1`` writes
byte-identical files.

Geometry conventions (patient LPS): sagittal ``ImageOrientationPatient = [0,1,0, 0,0,-1]`` (columns run
anterior→posterior, rows head→feet), slice normal ``row × col = (-1,0,0)``, slices in slice-position
order = ascending projection of ``ImagePositionPatient`` on that normal (``InstanceNumber`` follows
it). Axial ``[1,0,0, 0,1,0]``, one slice through each of the lowest 5–6 discs. Pixel ``(row r, col c)``
of a sagittal frame lies at ``(X, Y) = (c·dx, r·dy)`` mm in the plane; annotation ``coord = [c, r]``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset

from .anatomy import build_spine, sample_acquisition, study_tissues
from .axial import render_axial
from .dicom import SyntheticSeries, hhmmss, instance_dataset, series_template
from .labels import DISCS, VERTEBRAE, StudyLabels, sample_labels
from .sagittal import SagittalRenderer, render_stacks
from .seeding import hash_int, make_uid, study_rng, uniform

__all__ = ["ANNOTATOR", "SyntheticLandmark", "SyntheticStudy", "render_study", "generate_dataset", "preview_image"]

#: annotator id written into every annotation entry
ANNOTATOR = 54
_VERSION = "v0.1"

_DESC = {
    "t1_sag": ("T1_TSE_SAG", "t1_tse_sag_320", "SAG T1", "T1W_TSE_SAG", "Sag T1 FSE", "t1_tse_sag", "T1 SAG"),
    "t2_sag": ("T2_TSE_SAG", "t2_tse_sag_384", "SAG T2", "T2W_TSE_SAG", "Sag T2 FSE", "t2_tse_sag", "T2 SAG"),
    "t2_ax": ("T2_TSE_TRA", "t2_tse_tra_320", "AX T2", "T2W_TSE_TRA", "Ax T2 FSE", "t2_tse_tra", "T2 TRA"),
}
_DESC_NEUTRAL = {"t1_sag": "SAG_TSE", "t2_sag": "SAG_TSE", "t2_ax": "TRA_TSE"}  # TE/TR must decide



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
    cues: dict[str, tuple[str, ...]]  # landmark → the degeneration cues it shows (VERTEBRA_CUES / DISC_CUES)

    @property
    def annotated_frame(self) -> np.ndarray:
        return self.series[self.annotated_role].pixels[self.annotated_index]




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
    geo_rng = study_rng(seed, index, "geometry")
    pix_rng = study_rng(seed, index, "pixels")
    hdr_rng = study_rng(seed, index, "headers")
    acq = sample_acquisition(geo_rng)
    spine, _ = build_spine(geo_rng, labels, acq)
    tis = study_tissues(geo_rng)
    gains = (uniform(geo_rng, 1700, 3300), uniform(geo_rng, 1700, 3300))
    sigmas = (uniform(geo_rng, 0.012, 0.04), uniform(geo_rng, 0.012, 0.04))

    # ---- sagittal stacks
    sag = SagittalRenderer(spine, acq, tis, pix_rng)
    n, mid = acq.n_slices, acq.n_slices // 2
    R, C = acq.rows, acq.cols
    phase0 = uniform(pix_rng, 0, 2 * math.pi)
    offsets = [(mid - i) * acq.spacing for i in range(n)]  # x_i - x_mid, x_i = x_mid - (i - mid) * spacing
    phases = [phase0 + 0.55 * (i - mid) for i in range(n)]
    t1_stack, t2_stack, label_map = render_stacks(sag, offsets, phases, mid, sigmas, gains, pix_rng)
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
    dxa = round(uniform(geo_rng, 0.6, 0.78) * (256 / ax_R), 4)
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
            render_axial(pix_rng, (ax_R, ax_C), (dxa, dxa), centre_rc, spine.discs[name], hernia_of.get(name),
                          spine, tis, gains[1], sigmas[1])
        )
    ax_pos_arr = np.array(ax_pos)

    # ---- series / UIDs / files
    study_uid = make_uid(seed, index, "study")
    roles = ("t1_sag", "t2_sag", "t2_ax")
    neutral = hdr_rng.random() < 0.1
    desc = {r: (_DESC_NEUTRAL[r] if neutral and r != "t2_ax" else _DESC[r][int(hdr_rng.integers(0, len(_DESC[r])))])
            for r in roles}
    numbers = list(hdr_rng.permutation([2, 3, 4]) + int(hdr_rng.choice([0, 0, 1, 2])))
    te_tr = {
        "t1_sag": (round(uniform(hdr_rng, 9.5, 15.0), 2), round(uniform(hdr_rng, 400.0, 700.0), 1)),
        "t2_sag": (round(uniform(hdr_rng, 88.0, 120.0), 2), round(uniform(hdr_rng, 2500.0, 4000.0), 1)),
        "t2_ax": (round(uniform(hdr_rng, 88.0, 120.0), 2), round(uniform(hdr_rng, 2500.0, 4500.0), 1)),
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
            uid=make_uid(seed, index, "series", r),
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
            sop_uids=[make_uid(seed, index, "sop", r, i) for i in range(m)],
            filenames=[f"image{int(j)}.dcm" for j in perm[k : k + m]],
        )
        k += m

    base_day = date(2019, 1, 7) + timedelta(days=hash_int("date", seed, index) % 700)
    secs = 8 * 3600 + hash_int("time", seed, index) % (10 * 3600)
    common = {
        "study_uid": study_uid,
        "frame_uid": make_uid(seed, index, "frame"),
        "date": base_day.strftime("%Y%m%d"),
        "time": hhmmss(secs),
        "series_time": {
            r: hhmmss(secs + 120 * (j + 1)) for j, r in enumerate(roles)
        },
        "accession": str(hash_int("acc", seed, index) % 10**8),
        "patient_id": f"SYN{hash_int('pid', seed, index) % 10**10:010d}",
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
        template = series_template(common, ser)
        for i in range(ser.pixels.shape[0]):
            files.append((ser.filenames[i], instance_dataset(template, ser, i)))
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
    order = study_rng(seed, index, "point-order").permutation(len(points))
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
        cues={**{n: b.cues for n, b in spine.bodies.items()}, **{n: d.cues for n, d in spine.discs.items()}},
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
