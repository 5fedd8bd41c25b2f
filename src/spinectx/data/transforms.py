"""Sample transforms: resize, training augmentation and numpy → torch conversion.

Every transform takes a sample dict and returns a new one; the image, the landmarks, the
labels and the pixel spacing travel together, so a geometric change of the image is always
mirrored on the keypoints and the spacing.

Conventions
-----------
* Keypoints are ``(x, y) = (column, row)`` in pixels, with pixel *centres* at integer
  coordinates: pixel ``[r, c]`` covers ``[c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)``. The frame
  spans ``0 <= x <= W - 1``, ``0 <= y <= H - 1``; a point is *visible* when it is annotated and
  lies inside that range.
* Resizing an ``H x W`` frame to ``S_h x S_w`` maps (the OpenCV ``cv2.resize`` geometry)::

      x' = (x + 0.5) * S_w / W - 0.5        y' = (y + 0.5) * S_h / H - 0.5

  and the spacing ``(dy, dx)`` (mm per pixel) becomes ``(dy * H / S_h, dx * W / S_w)``.
* The horizontal flip maps ``x -> W - 1 - x``. On a sagittal frame landmark identities never
  change. On an axial frame the flip swaps the patient's left and right: a transform given the
  landmark set's ``flip_permutation`` (RSNA subarticular: ``left`` ⇄ ``right``) reorders the
  keypoints, ``annotated``, ``labels`` and ``tags`` with it, so row ``k`` stays landmark ``k``.
* Rotation, shift and zoom are one affine map about the frame centre
  ``c = (W/2 - 0.5, H/2 - 0.5)``: ``p' = c + Z R (p - c) + t``, applied to the image with a
  single ``cv2.warpAffine`` (bilinear, border 0) and to the keypoints with the same matrix.
  In training that warp also does the resize (``M = A R``), so each sample is interpolated
  once; only a frame that shrinks by more than 2x per axis is resized first (``INTER_AREA``,
  against aliasing).

Missing landmarks (NaN rows) stay NaN and are never visible; keypoints that leave the frame
are kept (finite, outside the range) with ``visible`` False.

Randomness
----------
All random draws of one :class:`SpineTransform` come from one numpy ``Generator`` plus one
``random.Random`` that are shared by every albumentations transform of its pipeline (via
``Compose.set_random_state``). ``A.Compose(seed=...)`` is deliberately not used: it gives every
child transform its own generator started from the *same* seed, so their draws are correlated
(the first "apply with probability p?" draw of every child is the same number). The generators
are (re)initialised lazily on the first call in each process, from
``(seed, torch.initial_seed(), worker id)`` (the worker id is −1 in the main process), so workers
draw different streams, a seeded torch (``lightning.seed_everything``) makes runs repeat, and
non-persistent workers draw new streams every epoch while staying reproducible under a seeded
torch (e.g. ``lightning.seed_everything``).
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import math  # noqa: E402
import random  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import get_worker_info  # noqa: E402

__all__ = [
    "RandomIntensityScale",
    "RandomPolynomialBiasField",
    "RandomRotateShiftZoom",
    "SpineTransform",
    "bias_field",
    "bias_field_buffer_shape",
    "channels_last",
    "resize_keypoints",
    "resize_image",
    "resize_matrix",
    "to_tensor_sample",
]

_ARRAY_KEYS_F32 = ("labels", "tags")
_CV_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX


# --------------------------------------------------------------------------------------------
# deterministic helpers
# --------------------------------------------------------------------------------------------
def _as_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``S`` or ``(S_h, S_w)`` → ``(S_h, S_w)``."""
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        seq = tuple(int(s) for s in image_size)
        if len(seq) != 2:
            raise ValueError(f"image_size must be an int or a (height, width) pair, got {image_size!r}")
        size = seq
    if min(size) < 2:
        raise ValueError(f"image_size must be at least 2 pixels, got {size}")
    return size


def channels_last(image: np.ndarray) -> np.ndarray:
    """Channels-first ``[C, H, W]`` → C-contiguous channels-last ``[H, W, C]`` float32.

    OpenCV and albumentations work on ``[H, W, C]``; a strided view would be copied again by
    every transform of the pipeline, so the layout is changed once here (``cv2.merge`` for up to
    512 channels: ~8x faster than numpy's strided copy for 3 slices at 384 x 384).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected a channels-first [C, H, W] image, got shape {image.shape}")
    if 1 < image.shape[0] <= _CV_MAX_CHANNELS:
        return cv2.merge([np.ascontiguousarray(plane) for plane in image])
    return np.ascontiguousarray(np.moveaxis(image, 0, -1))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``[H, W]`` or ``[H, W, C]`` float image to ``size = (S_h, S_w)``.

    Uses ``cv2.INTER_AREA`` when neither axis grows (anti-aliased shrink) and ``cv2.INTER_LINEAR``
    otherwise. Always returns a new array (never a view of the input).
    """
    h, w = image.shape[:2]
    sh, sw = size
    if (h, w) == (sh, sw):
        return np.array(image, dtype=np.float32, order="C", copy=True)
    interp = cv2.INTER_AREA if (sh <= h and sw <= w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (sw, sh), interpolation=interp)
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing singleton channel
        out = out[:, :, None]
    return out.astype(np.float32, copy=False)


def resize_keypoints(keypoints: np.ndarray, in_shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` pixel-centre keypoints of an ``in_shape = (H, W)`` frame to ``size = (S_h, S_w)``.

    ``x' = (x + 0.5) * S_w / W - 0.5``, ``y' = (y + 0.5) * S_h / H - 0.5`` (NaN stays NaN).
    """
    h, w = in_shape
    sh, sw = size
    scale = np.array([sw / w, sh / h], dtype=np.float64)
    out = (keypoints.astype(np.float64) + 0.5) * scale - 0.5
    return out.astype(np.float32)


def resize_matrix(in_shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """3x3 affine matrix of the pixel-centre resize of :func:`resize_keypoints`
    (``x' = (x + 0.5) S_w / W - 0.5``, same for y), ``in_shape = (H, W)``, ``size = (S_h, S_w)``."""
    h, w = in_shape
    sh, sw = size
    sx, sy = sw / w, sh / h
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _poly_exponents(order: int) -> list[tuple[int, int]]:
    """Monomials ``x^i y^j`` with ``i + j <= order`` (constant term included)."""
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]


def _coarse_axis(n: int, grid: int) -> tuple[int, int, np.ndarray]:
    """Coarse lattice along one axis of length ``n`` for :func:`bias_field`.

    Returns ``(g, m, u)``: ``g`` nodes, a margin ``m`` and the normalised coordinates ``u`` of the
    nodes, such that ``cv2.resize`` (linear) of the ``g`` nodes to ``n + 2 m`` samples, cropped
    by ``m`` on both sides, interpolates between the nodes at every pixel of the frame (no
    clamping at the border). ``cv2.resize`` puts node ``k`` at output pixel
    ``(k + 0.5) (n + 2 m) / g - 0.5``; ``m >= (n / (2 g) - 0.5) / (1 - 1 / g)`` keeps the first
    and last pixel centres between the first and last node.
    """
    g = max(2, min(grid, n))
    m = max(0, math.ceil((n / (2.0 * g) - 0.5) / (1.0 - 1.0 / g) - 1e-9))
    x_nodes = (np.arange(g) + 0.5) * (n + 2 * m) / g - 0.5 - m  # in pixels of the frame
    u = 2.0 * (x_nodes + 0.5) / n - 1.0
    return g, m, u


def bias_field(
    coefficients: np.ndarray,
    order: int,
    shape: tuple[int, int],
    grid: int = 32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Multiplicative field ``exp(sum_k c_k x^i_k y^j_k)`` of an ``(H, W)`` frame, float32, > 0.

    ``x, y`` are the pixel centres normalised to ``[-1, 1]`` (``u = 2 (x + 0.5) / W - 1``);
    ``coefficients`` follow the order of the monomials ``x^i y^j``, ``i + j <= order``, ``i``
    outer. The field is evaluated exactly on a coarse lattice (about ``grid x grid`` nodes) and
    upsampled bilinearly with ``cv2.resize``, which keeps it smooth and cheap (~0.1 ms at
    512 x 512); the error in ``log(field)`` stays around 1e-2 or below for ``order = 3``,
    coefficients in ``[-0.5, 0.5]`` and ``grid = 32``.

    ``out``: optional float32 work buffer of shape ``bias_field_buffer_shape(shape, grid)``
    (avoids a large allocation per call); the result is then a view into it.
    """
    h, w = shape
    exps = _poly_exponents(order)
    coefficients = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if coefficients.size != len(exps):
        raise ValueError(f"order {order} needs {len(exps)} coefficients, got {coefficients.size}")
    # C[j, i] multiplies y^j x^i
    cmat = np.zeros((order + 1, order + 1), dtype=np.float64)
    for c, (i, j) in zip(coefficients, exps):
        cmat[j, i] = c
    gw, mw, ux = _coarse_axis(w, grid)
    gh, mh, uy = _coarse_axis(h, grid)
    powers = np.arange(order + 1)[:, None]
    log_field = (uy[None, :] ** powers).T @ cmat @ (ux[None, :] ** powers)  # [gh, gw]
    coarse = np.exp(log_field).astype(np.float32)
    if (gh, gw) == (h, w) and mh == mw == 0:
        return coarse
    dsize = (w + 2 * mw, h + 2 * mh)
    if out is not None:
        if out.shape != (dsize[1], dsize[0]) or out.dtype != np.float32:
            raise ValueError(f"bias field buffer must be float32 {(dsize[1], dsize[0])}, got {out.dtype} {out.shape}")
        full = cv2.resize(coarse, dsize, dst=out, interpolation=cv2.INTER_LINEAR)
    else:
        full = cv2.resize(coarse, dsize, interpolation=cv2.INTER_LINEAR)
    return full[mh : mh + h, mw : mw + w]


def bias_field_buffer_shape(shape: tuple[int, int], grid: int = 32) -> tuple[int, int]:
    """Shape of the work buffer :func:`bias_field` upsamples into for a frame of ``shape``."""
    h, w = shape
    return h + 2 * _coarse_axis(h, grid)[1], w + 2 * _coarse_axis(w, grid)[1]


# --------------------------------------------------------------------------------------------
# albumentations transforms
# --------------------------------------------------------------------------------------------
class RandomRotateShiftZoom(A.Affine):
    """Rotation, shift and anisotropic crop-and-rescale zoom as one affine warp.

    Each component is switched on independently with its own probability (``p_rotate``,
    ``p_shift``, ``p_zoom``) and the enabled ones are composed into one matrix, so the image is
    interpolated once. About the centre ``c = (W/2 - 0.5, H/2 - 0.5)``::

        p' = c + Z R (p - c) + t

    * ``R``: rotation by ``U(-rotate, rotate)`` degrees,
    * ``t = (U(-shift_x, shift_x) W, U(-shift_y, shift_y) H)`` pixels,
    * ``Z = diag(1 / (1 - a_x), 1 / (1 - a_y))`` with ``a ~ U(0, zoom)`` per axis: a central
      crop losing up to ``zoom`` of each side length, rescaled to the full frame.

    Reuses :class:`albumentations.Affine` for the warp (bilinear, constant border ``fill``) and
    for the keypoints (same matrix), so image and points cannot disagree.

    ``output_size = (S_h, S_w)``: the frame is also resized to ``S_h x S_w`` by the same warp
    (``M = A R`` with ``R`` the pixel-centre resize of :func:`resize_matrix` and ``A`` built on
    the output frame), so a sample is interpolated once instead of twice; keypoints then come in
    the input frame's pixels and leave in the output frame's.
    """

    def __init__(
        self,
        rotate: float = 45.0,
        shift: tuple[float, float] = (0.2, 0.3),
        zoom: tuple[float, float] = (0.2, 0.3),
        p_rotate: float = 0.8,
        p_shift: float = 0.8,
        p_zoom: float = 0.8,
        fill: float = 0.0,
        output_size: tuple[int, int] | None = None,
        p: float = 1.0,
    ):
        shift_x, shift_y = (float(s) for s in shift)
        zoom_x, zoom_y = (float(z) for z in zoom)
        if not (0.0 <= zoom_x < 1.0 and 0.0 <= zoom_y < 1.0):
            raise ValueError(f"zoom fractions must lie in [0, 1), got {zoom}")
        if rotate < 0 or shift_x < 0 or shift_y < 0:
            raise ValueError("rotate and shift must be non-negative")
        super().__init__(
            rotate=(-float(rotate), float(rotate)),
            translate_percent={"x": (-shift_x, shift_x), "y": (-shift_y, shift_y)},
            scale={"x": (1.0, 1.0 / (1.0 - zoom_x)), "y": (1.0, 1.0 / (1.0 - zoom_y))},
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_CONSTANT,
            fill=float(fill),
            fill_mask=float(fill),
            p=p,
        )
        self.rotate_limit = float(rotate)
        self.shift_limit = (shift_x, shift_y)
        self.zoom_limit = (zoom_x, zoom_y)
        self.p_rotate = float(p_rotate)
        self.p_shift = float(p_shift)
        self.p_zoom = float(p_zoom)
        self.output_size = None if output_size is None else _as_size(output_size)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("rotate_limit", "shift_limit", "zoom_limit", "p_rotate", "p_shift", "p_zoom", "fill", "output_size")

    def _gate(self, prob: float) -> bool:
        if prob <= 0.0:
            return False
        return self.py_random.random() < prob

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        in_shape = params["shape"][:2]
        h, w = self.output_size or in_shape
        rnd = self.py_random
        angle = rnd.uniform(-self.rotate_limit, self.rotate_limit) if self._gate(self.p_rotate) else 0.0
        if self._gate(self.p_shift):
            tx = rnd.uniform(-self.shift_limit[0], self.shift_limit[0]) * w
            ty = rnd.uniform(-self.shift_limit[1], self.shift_limit[1]) * h
        else:
            tx = ty = 0.0
        if self._gate(self.p_zoom):
            zx = 1.0 / (1.0 - rnd.uniform(0.0, self.zoom_limit[0]))
            zy = 1.0 / (1.0 - rnd.uniform(0.0, self.zoom_limit[1]))
        else:
            zx = zy = 1.0
        matrix = self.build_matrix((h, w), angle, (tx, ty), (zx, zy)) @ resize_matrix(in_shape, (h, w))
        return {
            "rotate": angle,
            "scale": {"x": zx, "y": zy},
            "matrix": matrix,
            "bbox_matrix": matrix,
            "output_shape": (h, w),
        }

    @staticmethod
    def build_matrix(
        shape: tuple[int, int],
        angle_deg: float,
        translate: tuple[float, float],
        zoom: tuple[float, float],
    ) -> np.ndarray:
        """3x3 matrix of ``p' = c + Z R (p - c) + t`` for a frame of ``shape = (H, W)``."""
        h, w = shape
        cx, cy = w / 2.0 - 0.5, h / 2.0 - 0.5
        th = math.radians(angle_deg)
        cos, sin = math.cos(th), math.sin(th)
        lin = np.diag([zoom[0], zoom[1]]) @ np.array([[cos, sin], [-sin, cos]])
        m = np.eye(3)
        m[:2, :2] = lin
        m[:2, 2] = np.array([cx, cy]) - lin @ np.array([cx, cy]) + np.asarray(translate, dtype=np.float64)
        return m


class RandomIntensityScale(A.ImageOnlyTransform):
    """Multiply the float image by ``U(1 - intensity, 1 + intensity)`` (no clipping).

    ``inplace=True`` writes into the input array (only for pipelines that own their arrays, such
    as :class:`SpineTransform`; saves one frame-sized allocation per call).
    """

    def __init__(self, intensity: float = 0.3, inplace: bool = False, p: float = 0.5):
        super().__init__(p=p)
        if not 0.0 <= intensity < 1.0:
            raise ValueError(f"intensity must lie in [0, 1), got {intensity}")
        self.intensity = float(intensity)
        self.inplace = bool(inplace)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("intensity", "inplace")

    def get_params(self) -> dict[str, Any]:
        return {"factor": self.py_random.uniform(1.0 - self.intensity, 1.0 + self.intensity)}

    def apply(self, img: np.ndarray, factor: float = 1.0, **params: Any) -> np.ndarray:
        if self.inplace and img.dtype == np.float32 and img.flags.writeable:
            return np.multiply(img, np.float32(factor), out=img)
        return (img * np.float32(factor)).astype(np.float32, copy=False)


class RandomPolynomialBiasField(A.ImageOnlyTransform):
    """Smooth multiplicative intensity inhomogeneity ``img * exp(poly(x, y))``.

    ``poly`` has all monomials ``x^i y^j`` with ``i + j <= order`` (``order = 3``: 10 terms,
    constant included), coefficients ``U(-coefficient, coefficient)``, on pixel-centre
    coordinates normalised to ``[-1, 1]``; see :func:`bias_field`. The field is strictly
    positive, so a non-negative image stays non-negative; values are never clipped or wrapped.
    ``inplace=True`` writes into the input array (see :class:`RandomIntensityScale`).
    """

    def __init__(
        self,
        order: int = 3,
        coefficient: float = 0.5,
        grid: int = 32,
        inplace: bool = False,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        if coefficient < 0:
            raise ValueError(f"coefficient must be >= 0, got {coefficient}")
        if grid < 2:
            raise ValueError(f"grid must be >= 2, got {grid}")
        self.order = int(order)
        self.coefficient = float(coefficient)
        self.grid = int(grid)
        self.inplace = bool(inplace)
        self._n_terms = len(_poly_exponents(self.order))
        self._buffer: np.ndarray | None = None  # upsampling work buffer, reused across calls

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_buffer"] = None
        return state

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("order", "coefficient", "grid", "inplace")

    def get_params(self) -> dict[str, Any]:
        coefs = self.random_generator.uniform(-self.coefficient, self.coefficient, self._n_terms)
        return {"coefficients": coefs}

    def apply(self, img: np.ndarray, coefficients: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if coefficients is None:
            return img
        shape = img.shape[:2]
        buf_shape = bias_field_buffer_shape(shape, self.grid)
        if self._buffer is None or self._buffer.shape != buf_shape:
            self._buffer = np.empty(buf_shape, dtype=np.float32)
        field = bias_field(coefficients, self.order, shape, self.grid, out=self._buffer)
        inplace = self.inplace and img.dtype == np.float32 and img.flags.writeable
        if img.ndim == 3 and img.dtype == np.float32 and img.flags.c_contiguous and 1 < img.shape[2] <= _CV_MAX_CHANNELS:
            # [H, W, C]: a channel-interleaved copy of the field lets OpenCV multiply contiguously
            # (numpy's broadcast over the last axis is ~4x slower at 384 x 384 x 3)
            field = cv2.merge([np.ascontiguousarray(field)] * img.shape[2])
            return cv2.multiply(img, field, dst=img if inplace else None)
        if img.ndim == 3:
            field = field[:, :, None]
        if inplace:
            return np.multiply(img, field, out=img)
        return (img * field).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# numpy → torch
# --------------------------------------------------------------------------------------------
def _visible(keypoints: np.ndarray, annotated: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    x, y = keypoints[:, 0], keypoints[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return annotated & np.isfinite(keypoints).all(axis=1) & inside


def _to_f32_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(torch.float32)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32)))


def to_tensor_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a numpy sample to torch (shared by the eval and train paths).

    ``image`` ``[H, W]`` or channels-first ``[C, H, W]`` → float32 ``[C, H, W]`` (C = 1 for 2-D);
    ``keypoints`` → float32 ``[K, 2]``; ``annotated`` → bool ``[K]`` (all finite rows when
    absent); ``visible`` → bool ``[K]``, recomputed from the image size (annotated, finite and
    inside ``[0, W-1] x [0, H-1]``); ``labels``, ``tags``, ``spacing`` → float32. Other keys
    (``study_uid`` and unknown ones) are passed through untouched.
    """
    out = dict(sample)
    image = np.asarray(sample["image"], dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    elif image.ndim != 3:
        raise ValueError(f"image must be [H, W] or [C, H, W], got shape {image.shape}")
    out["image"] = torch.from_numpy(np.ascontiguousarray(image))
    if "keypoints" in sample:
        kp = np.asarray(sample["keypoints"], dtype=np.float32).reshape(-1, 2)
        if "annotated" in sample:
            annotated = np.asarray(sample["annotated"], dtype=bool).reshape(-1)
        else:
            annotated = np.isfinite(kp).all(axis=1)
        if annotated.shape[0] != kp.shape[0]:
            raise ValueError(f"annotated has {annotated.shape[0]} entries for {kp.shape[0]} keypoints")
        out["keypoints"] = torch.from_numpy(np.ascontiguousarray(kp))
        out["annotated"] = torch.from_numpy(annotated.copy())
        out["visible"] = torch.from_numpy(_visible(kp, annotated, image.shape[-2:]))
    for key in _ARRAY_KEYS_F32:
        if key in sample and sample[key] is not None:
            out[key] = _to_f32_tensor(sample[key])
    if "spacing" in sample and sample["spacing"] is not None:
        out["spacing"] = _to_f32_tensor(sample["spacing"]).reshape(2)
    return out


# --------------------------------------------------------------------------------------------
# the sample transform
# --------------------------------------------------------------------------------------------
class SpineTransform:
    """Resize (+ training augmentation) of a sample dict, then conversion to torch.

    Args:
        image_size: output size ``S`` or ``(S_h, S_w)``.
        train: False → resize + conversion only (deterministic). True → in this order:
            landmark jitter, one affine warp that resizes and rotates / shifts / zooms (each with
            probability ``p``), intensity scaling (``p``), polynomial bias field (``p``),
            horizontal flip (probability ``flip``).
        p: probability of each of rotation, shift, zoom, intensity and bias field.
        rotate: rotation range ``±rotate`` degrees.
        shift: maximum shift as fractions ``(x, y)`` of the width / height.
        scale: crop-and-rescale fractions ``(x, y)``: a central crop losing up to this fraction
            of each side is rescaled to the frame (zoom factor ``1 / (1 - U(0, scale))`` per
            axis, i.e. zoom-in only; up to 1.25 / 1.43 for the defaults).
        intensity: multiplicative intensity change ``±intensity``.
        bias_field_order / bias_field_coef: polynomial order and coefficient range of the bias
            field (:class:`RandomPolynomialBiasField`).
        flip: probability of the horizontal flip (``x -> W - 1 - x``).
        jitter_mm: each annotated landmark moves by ``U(-jitter_mm, jitter_mm)`` mm per axis,
            converted to pixels with the spacing of the resized frame (SPEC: 6 mm / 4).
        seed: makes the instance reproducible (see module docstring for DataLoader workers).
        flip_permutation: row k of a flipped sample is row ``flip_permutation[k]`` of the
            unflipped one (:attr:`~spinectx.data.landmarks.LandmarkSet.flip_permutation`); None =
            identity (no left/right landmarks).

    Input keys: ``image`` float32 ``[H, W]`` (or channels-first ``[C, H, W]``), ``keypoints``
    float32 ``[K, 2]`` (NaN rows = missing), ``annotated`` bool ``[K]``, ``spacing`` ``(dy, dx)``
    mm/pixel, plus ``labels``, ``tags``, ``study_uid`` and any other keys (passed through).
    Output: see :func:`to_tensor_sample`; ``spacing`` is that of the resized frame (the random
    zoom does not change it).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        train: bool,
        *,
        p: float = 0.8,
        rotate: float = 45.0,
        shift: tuple[float, float] = (0.2, 0.3),
        scale: tuple[float, float] = (0.2, 0.3),
        intensity: float = 0.3,
        bias_field_order: int = 3,
        bias_field_coef: float = 0.5,
        flip: float = 0.5,
        jitter_mm: float = 1.5,
        seed: int | None = None,
        flip_permutation: tuple[int, ...] | None = None,
    ):
        self.size = _as_size(image_size)
        perm = None if flip_permutation is None else np.asarray(flip_permutation, dtype=np.int64)
        self.flip_permutation = None if perm is None or (perm == np.arange(len(perm))).all() else perm
        self.train = bool(train)
        if not 0.0 <= p <= 1.0 or not 0.0 <= flip <= 1.0:
            raise ValueError(f"probabilities must lie in [0, 1], got p={p}, flip={flip}")
        if jitter_mm < 0:
            raise ValueError(f"jitter_mm must be >= 0, got {jitter_mm}")
        self.p = float(p)
        self.rotate = float(rotate)
        self.shift = (float(shift[0]), float(shift[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.intensity = float(intensity)
        self.bias_field_order = int(bias_field_order)
        self.bias_field_coef = float(bias_field_coef)
        self.flip = float(flip)
        self.jitter_mm = float(jitter_mm)
        self.seed = seed
        self._rng_owner: tuple[int, int] | None = None
        self._geometric = False  # the pipeline moves keypoints (warp or flip)
        self._warps = False  # the pipeline starts with the affine warp, which also resizes
        self._np_rng: np.random.Generator | None = None
        self._compose: A.Compose | None = self._build_compose() if self.train else None

    # ---------------------------------------------------------------------------------------
    def _build_compose(self) -> A.Compose | None:
        transforms: list[A.BasicTransform] = []
        geometric = self.rotate > 0 or max(self.shift) > 0 or max(self.scale) > 0
        if self.p > 0 and geometric:
            transforms.append(
                RandomRotateShiftZoom(
                    rotate=self.rotate,
                    shift=self.shift,
                    zoom=self.scale,
                    p_rotate=self.p if self.rotate > 0 else 0.0,
                    p_shift=self.p if max(self.shift) > 0 else 0.0,
                    p_zoom=self.p if max(self.scale) > 0 else 0.0,
                    fill=0.0,
                    output_size=self.size,
                    p=1.0,
                )
            )
        if self.p > 0 and self.intensity > 0:
            transforms.append(RandomIntensityScale(self.intensity, inplace=True, p=self.p))
        if self.p > 0 and self.bias_field_coef > 0:
            transforms.append(
                RandomPolynomialBiasField(
                    order=self.bias_field_order, coefficient=self.bias_field_coef, inplace=True, p=self.p
                )
            )
        self._flip_transform = A.HorizontalFlip(p=self.flip) if self.flip > 0 else None
        if self._flip_transform is not None:
            transforms.append(self._flip_transform)
        if not transforms:
            return None
        # image-only pipelines (no geometry, no flip) get no keypoint processor: albumentations
        # warns about an unused one, and the keypoints are left as they are anyway
        self._geometric = any(isinstance(t, A.DualTransform) for t in transforms)
        self._warps = isinstance(transforms[0], RandomRotateShiftZoom)
        return A.Compose(
            transforms,
            keypoint_params=(
                A.KeypointParams(format="xy", remove_invisible=False, check_each_transform=False)
                if self._geometric
                else None
            ),
            p=1.0,
        )

    def reseed(self, seed: int | None) -> None:
        """Set a new seed; the generators restart from it on the next call."""
        self.seed = seed
        self._rng_owner = None

    def _ensure_rng(self) -> np.random.Generator:
        """(Re)initialise the shared generators once per process / DataLoader worker."""
        info = get_worker_info()
        owner = (os.getpid(), -1 if info is None else int(info.id))
        if self._rng_owner == owner and self._np_rng is not None:
            return self._np_rng
        # from torch's seed (set by seed_everything; random per process otherwise) and the worker id
        entropy = [int(torch.initial_seed()) & 0xFFFFFFFFFFFFFFFF, -1 if info is None else int(info.id)]
        if self.seed is not None:
            entropy = [int(self.seed) & 0xFFFFFFFFFFFFFFFF, *entropy]
        seq = np.random.SeedSequence([e & 0xFFFFFFFFFFFFFFFF for e in entropy])
        np_seq, py_seq = seq.spawn(2)
        self._np_rng = np.random.default_rng(np_seq)
        py_rng = random.Random(int(py_seq.generate_state(2, dtype=np.uint64)[0]))
        if self._compose is not None:
            self._compose.set_random_state(self._np_rng, py_rng)
        self._rng_owner = owner
        return self._np_rng

    # ---------------------------------------------------------------------------------------
    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        image = np.asarray(sample["image"], dtype=np.float32)
        channels_first = image.ndim == 3
        if image.ndim not in (2, 3):
            raise ValueError(f"image must be [H, W] or [C, H, W], got shape {image.shape}")
        if channels_first:
            image = channels_last(image)
        h, w = image.shape[:2]
        kp = np.asarray(sample["keypoints"], dtype=np.float32).reshape(-1, 2)
        annotated = (
            np.asarray(sample["annotated"], dtype=bool).reshape(-1)
            if "annotated" in sample
            else np.isfinite(kp).all(axis=1)
        )

        spacing = frame_spacing = None
        if sample.get("spacing") is not None:
            frame_spacing = np.asarray(sample["spacing"], dtype=np.float64).reshape(2)
            spacing = (frame_spacing * np.array([h / self.size[0], w / self.size[1]])).astype(np.float32)
            out["spacing"] = spacing
        # training with the affine warp: the warp also resizes (one interpolation, see
        # RandomRotateShiftZoom), unless the frame shrinks by more than 2x (INTER_AREA first then,
        # so that fine texture does not alias)
        fold = self.train and self._warps and (h, w) != self.size and h <= 2 * self.size[0] and w <= 2 * self.size[1]
        if not fold:
            image = resize_image(image, self.size)
            kp = resize_keypoints(kp, (h, w), self.size)
            frame_spacing = spacing

        if self.train:
            image, kp = self._augment(image, kp, annotated, frame_spacing)
            if self.flip_permutation is not None and self._flip_transform is not None and self._flip_transform.params:
                perm = self.flip_permutation  # the flip was applied: the patient's left and right swapped
                kp, annotated = kp[perm], annotated[perm]
                for key in _ARRAY_KEYS_F32:
                    if out.get(key) is not None:
                        out[key] = np.asarray(out[key])[perm]

        out["image"] = np.moveaxis(image, -1, 0) if channels_first else image
        out["keypoints"] = kp
        out["annotated"] = annotated
        return to_tensor_sample(out)

    def _augment(
        self,
        image: np.ndarray,
        kp: np.ndarray,
        annotated: np.ndarray,
        spacing: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jitter (``spacing``: the mm per pixel of ``image``'s frame) + the albumentations pipeline;
        returns the augmented frame at ``self.size`` and its keypoints."""
        rng = self._ensure_rng()
        missing = ~np.isfinite(kp).all(axis=1)
        if self.jitter_mm > 0:
            if spacing is None:
                raise KeyError("landmark jitter needs the sample's 'spacing' (dy, dx) in mm per pixel")
            # spacing is (dy, dx); keypoints are (x, y)
            step = self.jitter_mm / np.array([spacing[1], spacing[0]], dtype=np.float64)
            noise = rng.uniform(-1.0, 1.0, size=kp.shape) * step
            moving = annotated & ~missing
            kp = kp.copy()
            kp[moving] += noise[moving].astype(np.float32)
        if self._compose is None:
            return image, kp
        if not self._geometric:
            res = self._compose(image=image)
            out_img = np.asarray(res["image"], dtype=np.float32)
            return (out_img[:, :, 0] if image.ndim == 2 and out_img.ndim == 3 else out_img), kp
        kp_in = kp.copy()
        kp_in[missing] = 0.0  # keep NaN away from albumentations' geometry; restored below
        res = self._compose(image=image, keypoints=kp_in)
        out_img = np.asarray(res["image"], dtype=np.float32)
        if image.ndim == 2 and out_img.ndim == 3:
            out_img = out_img[:, :, 0]
        out_kp = np.asarray(res["keypoints"], dtype=np.float32).reshape(-1, 2).copy()
        if out_kp.shape[0] != kp.shape[0]:  # cannot happen with remove_invisible=False
            raise RuntimeError(f"albumentations returned {out_kp.shape[0]} keypoints for {kp.shape[0]}")
        out_kp[missing] = np.nan
        return out_img, out_kp

    def __repr__(self) -> str:
        if not self.train:
            return f"SpineTransform(size={self.size}, train=False)"
        return (
            f"SpineTransform(size={self.size}, train=True, p={self.p}, rotate={self.rotate}, shift={self.shift}, "
            f"scale={self.scale}, intensity={self.intensity}, bias_field=({self.bias_field_order}, "
            f"{self.bias_field_coef}), flip={self.flip}, jitter_mm={self.jitter_mm}, seed={self.seed})"
        )
