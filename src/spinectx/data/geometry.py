"""Image pixels ⇄ patient coordinates (DICOM PS3.3 C.7.6.2.1.1), for moving points between slices.

A pixel ``(x, y) = (column, row)`` of an image with ImagePositionPatient ``P`` (mm, the centre of
pixel (0, 0)), ImageOrientationPatient ``(r, c)`` (unit row and column direction cosines: ``r``
points along increasing column index x, ``c`` along increasing row index y) and PixelSpacing
``(dy, dx)`` (mm between rows, between columns) lies at

    p = P + x · dx · r + y · dy · c          (patient LPS, mm)

and the unit slice normal is ``n = r × c``. The inverse projects any patient point onto the image
plane and gives its signed distance to that plane along ``n``. On top: the slice of any stack
nearest a patient point (a sagittal level point → its axial slice), and the patient's side of a
sagittal slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinectx.data.dicom import SliceHeader
from spinectx.data.errors import DataError


def _frame(h: SliceHeader) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    if h.orientation is None or h.position is None or h.pixel_spacing is None:
        raise DataError(h.path, "ImagePositionPatient, ImageOrientationPatient and PixelSpacing are needed to place "
                                "a point in patient space")
    r = np.asarray(h.orientation[:3], dtype=np.float64)
    c = np.asarray(h.orientation[3:6], dtype=np.float64)
    r, c = r / np.linalg.norm(r), c / np.linalg.norm(c)
    dy, dx = (float(v) for v in h.pixel_spacing)
    return np.asarray(h.position, dtype=np.float64), r, c, dy, dx


def pixel_to_patient(h: SliceHeader, xy) -> np.ndarray:
    """Pixel coordinates ``xy`` [..., 2] (x = column, y = row) of image ``h`` → patient LPS points
    [..., 3] in mm.

    Raises:
        DataError: the image lacks position, orientation or spacing (naming its file).
    """
    origin, r, c, dy, dx = _frame(h)
    xy = np.asarray(xy, dtype=np.float64)
    return origin + xy[..., :1] * dx * r + xy[..., 1:2] * dy * c


def patient_to_pixel(h: SliceHeader, points) -> tuple[np.ndarray, np.ndarray]:
    """Patient points [..., 3] (mm) → (pixel coordinates [..., 2] (x, y) of their projection on the
    plane of image ``h``, signed distance [...] in mm from that plane along its normal r × c).

    Raises:
        DataError: the image lacks position, orientation or spacing (naming its file).
    """
    origin, r, c, dy, dx = _frame(h)
    d = np.asarray(points, dtype=np.float64) - origin
    x = d @ r / dx
    y = d @ c / dy
    return np.stack([x, y], -1), d @ np.cross(r, c)


def slab_half_width_mm(slices: Sequence[SliceHeader], default_mm: float = 2.5) -> float:
    """Half the distance (mm) between neighbouring slice planes of a stack (median gap along the
    slice normal): how far a point may lie from its nearest slice and still belong to the stack.
    A one-slice stack gives ``default_mm``."""
    if len(slices) < 2:
        return float(default_mm)
    _, r, c, _, _ = _frame(slices[0])
    n = np.cross(r, c)
    positions = np.sort([float(np.asarray(h.position, dtype=np.float64) @ n) for h in slices])
    return float(np.median(np.diff(positions))) / 2


@dataclass(frozen=True)
class SlicePick:
    """The slice nearest to a patient point: the stack (any object holding ``slices``), the slice's
    index in it, the point's projection ``xy`` (x = column, y = row, pixels) on that slice and
    its signed distance (mm) from the slice's plane."""

    stack: Any
    index: int
    xy: tuple[float, float]
    distance_mm: float


def nearest_slice(stacks: Iterable[Any], point, margin_mm: float = 0.5) -> SlicePick | None:
    """The slice, over every stack given (each with ``slices``: SliceHeaders in slice order), whose
    plane lies nearest a patient point (LPS, mm) among those whose frame holds the point's
    projection — e.g. a level's 3-D point from a sagittal prediction projected onto every axial
    stack of a study, tilted stacks and several series included.

    A stack counts only if the point lies within its slab: at most half a slice gap
    (:func:`slab_half_width_mm`) + ``margin_mm`` from its nearest slice. None when no stack
    qualifies (the level lies outside every stack).

    Raises:
        DataError: a slice lacks position, orientation or spacing (naming its file).
    """
    point = np.asarray(point, dtype=np.float64)
    best: SlicePick | None = None
    for stack in stacks:
        slices = list(stack.slices)
        if not slices:
            continue
        reach = slab_half_width_mm(slices) + float(margin_mm)
        for i, h in enumerate(slices):
            xy, distance = patient_to_pixel(h, point)
            inside = -0.5 <= xy[0] <= h.cols - 0.5 and -0.5 <= xy[1] <= h.rows - 0.5
            if inside and abs(distance) <= reach and (best is None or abs(distance) < abs(best.distance_mm)):
                best = SlicePick(stack, i, (float(xy[0]), float(xy[1])), float(distance))
    return best


def patient_side(h: SliceHeader, midline_x_mm: float) -> str:
    """``"left"`` or ``"right"``: the patient's side of image ``h`` (a sagittal slice), from the
    patient-space x of its centre against the midline's x (LPS: +x points to the patient's
    left). It follows the geometry, never the image's orientation or the slice numbering.

    Raises:
        DataError: the image lacks position, orientation or spacing (naming its file).
    """
    centre = pixel_to_patient(h, ((h.cols - 1) / 2, (h.rows - 1) / 2))
    return "left" if float(centre[0]) > float(midline_x_mm) else "right"
