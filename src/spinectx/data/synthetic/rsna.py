"""Synthetic lumbar-spine MR studies in the RSNA 2024 Kaggle layout (SPEC §6).

:func:`generate_rsna_dataset` writes exactly the downloaded training layout::

    OUT/train.csv                       study_id + 25 columns {condition}_{level}: Normal/Mild, Moderate, Severe, blank
    OUT/train_label_coordinates.csv     study_id,series_id,instance_number,condition,level,x,y
    OUT/train_series_descriptions.csv   study_id,series_id,series_description
    OUT/train_images/<study_id>/<series_id>/<instance_number>.dcm

Each study is the phantom of :mod:`.anatomy` with three series sharing one frame of reference:
**Sagittal T1** and **Sagittal T2/STIR** stacks (13–17 slices, 256–384 px, covering the spine from
the patient's left to right; ``ImageOrientationPatient = [0,1,0, 0,0,-1]``, the first slice in
slice-position order is the leftmost) and an **Axial T2** series of 3–4 slices per disc level
(256 px, row direction +x, column direction posterior, tilted to the discs' mean angle or exactly
``[1,0,0, 0,1,0]``): **on axial frames columns increase towards the patient's left, so the patient's
left is on the image's right** (radiological view). Every axial block is centred on the canal point
of its level, so the sagittal label points of a level lie in (or within a millimetre or two of)
the plane of the axial slice holding that level's subarticular labels.

Severities are visible, each by a measurable geometric change (Normal/Mild > Moderate > Severe):

* spinal canal stenosis — the canal's CSF width (anterior-posterior) at the disc on the sagittal
  T2 slices: 80–95 % / 40–50 % / 15–25 % of the level's normal canal depth (12–19 mm, so the grades
  do not overlap in mm either: ≥ 9.7 / 4.8–9.4 / ≤ 4.7 mm), taken from the front
  (disc bulge, 50–60 % of the loss) and the back (ligamentum flavum); the label is the canal
  centre at the disc on the mid-sagittal T2 slice;
* neural foraminal narrowing — the size of the fat-filled foramen behind each disc on the
  parasagittal T1 slices of that side (0.9–1.05 / 0.5–0.6 / 0.24–0.32 of 5.5–6.5 × 3.8–4.6 mm
  half axes), left and right drawn independently; the label is the foramen centre on the T1 slice
  through that side's foramina (left: a slice left of the midline, right: one right of it);
* subarticular stenosis — the size of each lateral recess of the canal on the axial slices of the
  level (0.9–1.05 / 0.5–0.6 / 0.18–0.26 of 3.2–4 mm), left and right independently; the labels are
  the recess centres on the axial slice through the level.

Frequencies and quirks: see :mod:`.rsna_labels` (``study_quirk`` says which study has which quirk).
Determinism: study ``k`` depends only on ``(seed, k)`` (and ``frequencies``); ``workers > 1`` writes
byte-identical files; ``study_id``/``series_id`` are integers unique by construction.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

from .rsna_labels import TRAIN_COLUMNS, merge_rsna_frequencies
from .rsna_render import RsnaLabelPoint, RsnaSeries, RsnaStudy, render_rsna_study, study_id_of

__all__ = ["RsnaSeries", "RsnaLabelPoint", "RsnaStudy", "render_rsna_study", "generate_rsna_dataset",
           "study_id_of", "RSNA_FILES"]

#: the entries of a generated dataset folder
RSNA_FILES = ("train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv", "train_images")


# --------------------------------------------------------------------------------------------------
# writing a dataset
# --------------------------------------------------------------------------------------------------


def _write_rsna_study(args: tuple) -> tuple[list, list, list]:
    seed, index, frequencies, root = args
    study = render_rsna_study(seed, index, frequencies)
    for rel, ds in study.files:
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    (Path(root) / "train_images" / str(study.study_id)).mkdir(parents=True, exist_ok=True)
    return study.train_row(), study.coordinate_rows(), study.series_rows()


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def generate_rsna_dataset(
    out: str | Path,
    studies: int = 100,
    seed: int = 0,
    workers: int = 1,
    frequencies: Mapping | None = None,
) -> Path:
    """Write ``studies`` synthetic studies in the RSNA 2024 training layout into ``out``; returns ``out``.

    The study count and seed fully define the output (also with ``workers > 1``). Generation goes to
    a temporary sibling folder renamed at the end, so an interrupted run never leaves a half dataset;
    an existing ``out`` is replaced only when it is empty or holds nothing but a previous dataset's
    entries (``RSNA_FILES``).

    Raises:
        ValueError: ``studies`` < 1, ``workers`` < 1 or bad ``frequencies``.
        FileExistsError: ``out`` holds other files.
    """
    if int(studies) < 1:
        raise ValueError(f"studies must be >= 1, got {studies}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    merge_rsna_frequencies(frequencies)  # validate before writing anything
    out = Path(out).absolute()
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder; refusing to overwrite")
        foreign = sorted(e.name for e in out.iterdir() if e.name not in RSNA_FILES)
        if foreign:
            raise FileExistsError(f"{out} exists and holds entries that are not a synthetic RSNA dataset "
                                  f"({foreign[0]}); refusing to overwrite")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train_images").mkdir(parents=True)
    freq = None if frequencies is None else {k: dict(v) for k, v in dict(frequencies).items()}
    jobs = [(int(seed), k, freq, str(tmp)) for k in range(int(studies))]
    try:
        if workers > 1 and studies > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, studies), mp_context=ctx,
                                     initializer=_worker_init) as ex:
                results = list(ex.map(_write_rsna_study, jobs, chunksize=max(1, studies // (4 * workers))))
        else:
            results = [_write_rsna_study(j) for j in jobs]
        _write_csv(tmp / "train_series_descriptions.csv", ["study_id", "series_id", "series_description"],
                   [row for r in results for row in r[2]])
        _write_csv(tmp / "train_label_coordinates.csv",
                   ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"],
                   [row for r in results for row in r[1]])
        _write_csv(tmp / "train.csv", ["study_id", *TRAIN_COLUMNS], [r[0] for r in results])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(out.name + f".old{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out

