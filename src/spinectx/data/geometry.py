"""Image pixels ⇄ patient coordinates (DICOM PS3.3 C.7.6.2.1.1), for moving points between slices.

A pixel ``(x, y) = (column, row)`` of an image with ImagePositionPatient ``P`` (mm, the centre of
pixel (0, 0)), ImageOrientationPatient ``(r, c)`` (unit row and column direction cosines: ``r``
points along increasing column index x, ``c`` along increasing row index y) and PixelSpacing
``(dy, dx)`` (mm between rows, between columns) lies at

    p = P + x · dx · r + y · dy · c          (patient LPS, mm)

and the unit slice normal is ``n = r × c``. The inverse projects any patient point onto the image
plane and gives its signed distance to that plane along ``n``.
"""

from __future__ import annotations

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
