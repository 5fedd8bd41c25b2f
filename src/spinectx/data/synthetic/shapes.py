"""Drawing primitives of the phantom: local frames, pixel patches, soft-edged shapes, smooth texture.

Image-plane coordinates are millimetres: ``X`` along the columns, ``Y`` along the rows, so pixel
``(row r, col c)`` lies at ``(X, Y) = (c·dx, r·dy)``. Shapes are drawn as signed distances (mm,
positive inside) turned into a coverage in [0, 1] by :func:`soft`, and blended into the T1 and T2
frames at once by :class:`Canvas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Frame", "Grid", "Patch", "make_patch", "soft", "superellipse_dist", "ellipse_dist", "smooth_field",
           "Canvas"]


@dataclass
class Frame:
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
class Grid:
    """Pixel grid of a frame: ``rows × cols`` pixels of ``dy × dx`` mm; ``edge`` the soft-edge width (mm)."""

    rows: int
    cols: int
    dy: float
    dx: float
    edge: float  # soft-edge width, mm


@dataclass
class Patch:
    """The bounding box ``sl`` of a shape in a frame, with every pixel's local coordinates ``(a, b)`` (mm)
    in the shape's frame (``a`` along the spine, ``b`` posterior)."""

    sl: tuple[slice, slice]
    xs: np.ndarray  # (1, w) X - frame.cx
    ys: np.ndarray  # (h, 1) Y - frame.cy
    a: np.ndarray
    b: np.ndarray
    frame: Frame

    def coords_in(self, other: Frame) -> tuple[np.ndarray, np.ndarray]:
        ox = self.xs + np.float32(self.frame.cx - other.cx)
        oy = self.ys + np.float32(self.frame.cy - other.cy)
        return ox * other.tx + oy * other.ty, ox * other.nx + oy * other.ny


def make_patch(grid: Grid, f: Frame, a0: float, a1: float, b0: float, b1: float) -> Patch | None:
    """The pixels of ``grid`` covering the local box ``[a0, a1] × [b0, b1]`` (mm) of frame ``f``;
    None when the box lies outside the grid."""
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
    return Patch((slice(r0, r1), slice(c0, c1)), xs, ys, a, b, f)


def soft(dist: np.ndarray, edge: float) -> np.ndarray:
    """Coverage from a signed distance (mm, > 0 inside): linear ramp one ``edge`` wide."""
    out = dist * np.float32(1.0 / edge)
    out += np.float32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def superellipse_dist(a: np.ndarray, b: np.ndarray, h: float, w: float, p: float = 5.0) -> np.ndarray:
    """Approximate signed distance (mm, > 0 inside) to ``|a/h|^p + |b/w|^p = 1``."""
    ra = np.abs(a) * np.float32(1.0 / h)
    rb = np.abs(b) * np.float32(1.0 / w)
    rho = (ra**p + rb**p) ** np.float32(1.0 / p)
    scale = np.where(ra > rb, np.float32(h), np.float32(w))
    return (1.0 - rho) * scale


def ellipse_dist(u: np.ndarray, v: np.ndarray, eu: float, ev: float) -> np.ndarray:
    """Approximate signed distance (mm, > 0 inside) to the ellipse of half axes ``eu``, ``ev``."""
    r = np.sqrt((u * np.float32(1.0 / eu)) ** 2 + (v * np.float32(1.0 / ev)) ** 2)
    return (1.0 - r) * np.float32(min(eu, ev))


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell_r: float, cell_c: float) -> np.ndarray:
    """Smooth random field ~N(0, 1) with correlation length ~cell (pixels)."""
    h = max(2, int(shape[0] / max(cell_r, 1.0)) + 2)
    w = max(2, int(shape[1] / max(cell_c, 1.0)) + 2)
    g = rng.standard_normal((h, w)).astype(np.float32)
    out = cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    out *= np.float32(1.35)  # cubic interpolation shrinks the variance
    return out


class Canvas:
    """The T1 and T2 float frames (and optionally the tissue-label map) being drawn."""

    def __init__(self, t1: np.ndarray, t2: np.ndarray, lab: np.ndarray | None):
        self.t1, self.t2, self.lab = t1, t2, lab

    def blend(self, sl, alpha: np.ndarray, v1, v2, label: int | None = None) -> None:
        """Move ``t1[sl]``/``t2[sl]`` towards ``v1``/``v2`` by ``alpha``; mark ``label`` where alpha > 0.5."""
        x = self.t1[sl]
        x += alpha * (v1 - x)
        y = self.t2[sl]
        y += alpha * (v2 - y)
        if self.lab is not None and label is not None:
            self.lab[sl][alpha > 0.5] = label


