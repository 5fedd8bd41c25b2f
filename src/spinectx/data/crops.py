"""Fixed-size crops centred on points (stage 2 of the two-stage pipeline, SPEC §7).

Conventions (the suite's): a point is (x, y) in pixels, x = column, y = row, and pixel centres sit
at integer coordinates (pixel (r, c) covers [c − ½, c + ½] × [r − ½, r + ½]). Spacing is (dy, dx) in
mm per pixel (row spacing first, as DICOM PixelSpacing). Sizes given as a pair are (height, width).

A crop of a window of h × w pixels (``size_px``, or ``size_mm`` / spacing) resampled to
``out_size`` × ``out_size`` samples the image at

    x_j = x + (j − out_size // 2) · w / out_size,   y_i = y + (i − out_size // 2) · h / out_size,

so the point lands exactly on output pixel (out_size // 2, out_size // 2) and neighbouring samples
are w / out_size (h / out_size) pixels apart. With ``size_px == out_size`` and an integer centre
this is the seed's slice ``image[y − 16 : y + 16, x − 16 : x + 16]`` (for 32), an exact copy.
Values between pixels are interpolated bilinearly; samples outside the image are 0 (zero padding,
as the seed). There is no anti-aliasing: a window much larger than ``out_size`` is subsampled.

The sampling is a gather-based bilinear interpolation (not ``grid_sample``) so that integer
positions return the pixel values bit for bit; ``grid_sample``'s normalised coordinates round off
(errors of ~1e-2 on a 0–255 image of 512 px). The two agree up to that round-off.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

Size = int | float | Sequence[int | float]


def _pair(value: Size, name: str) -> tuple[float, float]:
    """A size given as one number or (height, width) → (h, w) floats > 0."""
    pair = (value, value) if isinstance(value, numbers.Real) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"crop {name} must be a number or a (height, width) pair, got {value!r}")
    h, w = (float(v) for v in pair)
    if not (h > 0 and w > 0 and h < float("inf") and w < float("inf")):
        raise ValueError(f"crop {name} must be finite and > 0, got {value!r}")
    return h, w


def window_px(batch: int, size_px: Size | None = None, size_mm: Size | None = None,
              spacing: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """The crop window's (height, width) in pixels for each of ``batch`` images → float32 [batch, 2].

    Exactly one of ``size_px`` (pixels) or ``size_mm`` (mm; needs ``spacing`` (dy, dx) mm per pixel,
    one pair for all images or a [batch, 2] tensor) must be given.

    Raises:
        ValueError: both or neither size given; ``size_mm`` without spacing; a size or spacing that is
        not finite and > 0; spacing of the wrong shape.
    """
    if (size_px is None) == (size_mm is None):
        raise ValueError("give the crop size either in pixels (size_px) or in mm (size_mm), exactly one of them; "
                         f"got size_px={size_px!r}, size_mm={size_mm!r}")
    if size_px is not None:
        return torch.tensor([_pair(size_px, "size_px")], dtype=torch.float32).expand(batch, 2)
    if spacing is None:
        raise ValueError(f"a crop size in mm (size_mm={size_mm!r}) needs the pixel spacing (dy, dx) in mm")
    sp = torch.as_tensor(spacing, dtype=torch.float32)
    if sp.shape == (2,):
        sp = sp.expand(batch, 2)
    if sp.shape != (batch, 2):
        raise ValueError(f"crop spacing must be (dy, dx) mm or [{batch}, 2], got shape {tuple(sp.shape)}")
    if not (torch.isfinite(sp).all() and (sp > 0).all()):
        raise ValueError(f"crop spacing must be finite and > 0 mm, got {sp.tolist()}")
    return torch.tensor([_pair(size_mm, "size_mm")], dtype=torch.float32) / sp


def _bilinear_zeros(images: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images [B, C, H, W] on the separable grids xs, ys [B, K, O] (pixel
    coordinates, columns and rows), zeros outside → [B, K, C, O, O] (row i from ys, column j from xs)."""
    b, c, h, w = images.shape
    k, o = xs.shape[1], xs.shape[2]
    flat = images.reshape(b, c, h * w)
    x0, y0 = torch.floor(xs), torch.floor(ys)
    fx, fy = xs - x0, ys - y0
    x0, y0 = x0.long(), y0.long()
    out = images.new_zeros(b, c, k, o, o)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        rows = y0 + dy
        row_ok = (rows >= 0) & (rows < h)
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            cols = x0 + dx
            ok = row_ok[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]  # [B, K, O, O]
            weight = (wy[..., :, None] * wx[..., None, :]) * ok
            index = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
            values = flat.gather(2, index.reshape(b, 1, -1).expand(b, c, -1)).reshape(b, c, k, o, o)
            out = out + values * weight.to(images.dtype)[:, None]
    return out.permute(0, 2, 1, 3, 4)


def crop_batch(images: torch.Tensor, centers: torch.Tensor, size_px: Size | None = None,
               size_mm: Size | None = None, spacing: Sequence[float] | torch.Tensor | None = None,
               out_size: int = 32) -> torch.Tensor:
    """K crops per image: images [B, C, H, W], centers [B, K, 2] (x, y) px → [B, K, C, out_size, out_size].

    Sizes and sampling as in the module docstring; ``spacing`` is (dy, dx) mm for all images or a
    [B, 2] tensor. Integer images are converted to float32; the output has the image's float dtype
    and device.

    Raises:
        ValueError: images not 4-D, centers not [B, K, 2], a non-finite centre, ``out_size`` < 1, or a
        size problem (see :func:`window_px`).
    """
    if images.ndim != 4:
        raise ValueError(f"crop_batch expects images [B, C, H, W], got shape {tuple(images.shape)}")
    centers = torch.as_tensor(centers)
    if centers.ndim != 3 or centers.shape[0] != images.shape[0] or centers.shape[2] != 2:
        raise ValueError(f"crop_batch expects centers [B={images.shape[0]}, K, 2] as (x, y) pixels, "
                         f"got shape {tuple(centers.shape)}")
    if not torch.isfinite(centers).all():
        bad = (~torch.isfinite(centers)).any(-1).nonzero().tolist()
        raise ValueError(f"crop centre must be finite (x, y) pixels; non-finite at [image, point] {bad[:5]}"
                         f"{' …' if len(bad) > 5 else ''}")
    if int(out_size) != out_size or out_size < 1:
        raise ValueError(f"crop out_size must be a positive integer, got {out_size!r}")
    if not images.is_floating_point():
        images = images.float()
    win = window_px(images.shape[0], size_px, size_mm, spacing).to(images.device)  # [B, 2] (h, w)
    offsets = torch.arange(out_size, device=images.device, dtype=torch.float32) - out_size // 2  # [O]
    step = win / out_size  # [B, 2] pixels between samples (rows, columns)
    c = centers.to(device=images.device, dtype=torch.float32)
    xs = c[..., 0:1] + offsets * step[:, None, 1:2]  # [B, K, O]
    ys = c[..., 1:2] + offsets * step[:, None, 0:1]
    return _bilinear_zeros(images, xs, ys)


def crop_around(image: torch.Tensor, center: Sequence[float] | torch.Tensor, size_px: Size | None = None,
                size_mm: Size | None = None, spacing: Sequence[float] | None = None,
                out_size: int = 32) -> torch.Tensor:
    """One crop centred on ``center`` = (x, y) pixels (x = column) of image [C, H, W] or [H, W]
    → [C, out_size, out_size] ([1, out, out] for a 2-D image).

    Give the window either as ``size_px`` (pixels, a number or (h, w)) or as ``size_mm`` (mm, a number
    or (h, w)) with ``spacing`` = (dy, dx) mm per pixel; anisotropic spacing gives a non-square pixel
    window resampled to out_size × out_size. Zero padding outside the image. See :func:`crop_batch`.

    Raises:
        ValueError: image not 2-D/3-D, centre not two finite numbers, size given both or neither way,
        ``size_mm`` without spacing, sizes/spacing not finite and > 0.
    """
    image = torch.as_tensor(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"crop_around expects an image [C, H, W] or [H, W], got shape {tuple(image.shape)}")
    point = torch.as_tensor(center, dtype=torch.float32)
    if point.shape != (2,):
        raise ValueError(f"crop_around expects center = (x, y) pixels, got {center!r}")
    return crop_batch(image[None], point.reshape(1, 1, 2), size_px=size_px, size_mm=size_mm, spacing=spacing,
                      out_size=out_size)[0, 0]
