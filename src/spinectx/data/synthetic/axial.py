"""Axial T2 rendering of the phantom: one slice across the spine at a disc level.

:func:`render_axial` draws the TianChi slice through a disc centre; :func:`render_axial_section`
the RSNA slice near a disc level, with the canal's CSF width and each lateral recess's size given.

In-plane coordinates (mm): ``xx`` lateral, positive towards the patient's left (+x in LPS), ``yy``
posterior; ``(0, 0)`` is the disc centre. With ``ImageOrientationPatient = [1,0,0, 0,1,0]`` (or any
orientation whose row direction is +x), columns increase towards the patient's left, so the patient's
left is on the image's right, as radiologists view axial images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Disc, Hernia, Spine, mix_tissue
from .seeding import noise, uniform
from .shapes import ellipse_dist, smooth_field, soft

__all__ = ["render_axial", "AxialSection", "AxialSurroundings", "axial_surroundings", "render_axial_section"]


def render_axial(rng: np.random.Generator, shape: tuple[int, int], spacing: tuple[float, float], centre_rc,
                 disc: Disc, hernia: Hernia | None, spine: Spine, tis: dict, gain: float,
                 sigma: float) -> np.ndarray:
    """The TianChi axial T2 slice through the centre of ``disc``: uint16 ``shape`` (rows, cols).

    ``spacing`` is (dy, dx) mm; ``centre_rc`` the (row, col) pixel of the disc centre; ``hernia`` the
    disc's herniation (drawn unless a bulge); ``gain``/``sigma`` as for the sagittal frames.
    """
    R, C = shape
    dya, dxa = spacing
    yy = ((np.arange(R, dtype=np.float32) - np.float32(centre_rc[0])) * np.float32(dya))[:, None]
    xx = ((np.arange(C, dtype=np.float32) - np.float32(centre_rc[1])) * np.float32(dxa))[None, :]
    xx2 = np.broadcast_to(xx, (R, C))
    yy2 = np.broadcast_to(yy, (R, C))
    e = 0.9 * max(dxa, dya)
    wd, lb = disc.w, spine.lat_body
    dc = spine.dc.get(disc.name, 14.0)
    wc = spine.canal_half_width
    cls = disc.cls
    T2 = {k: v[1] for k, v in tis.items()}
    tex = smooth_field(rng, (R, C), 10.0 / dya, 10.0 / dxa)
    tex2 = smooth_field(rng, (R, C), 5.0 / dya, 5.0 / dxa)

    def put(alpha: np.ndarray, value) -> None:
        nonlocal img
        img += alpha * (value - img)

    # retroperitoneal fat around the spine, bowel further anterior, subcutaneous fat and air behind
    img = T2["fat"] * 0.85 * (1.0 + 0.05 * tex2)
    back = wd + dc + uniform(rng, 38, 55)
    fat = uniform(rng, 8, 28)
    skin_y = back + fat - (xx2**2) / np.float32(2 * 260.0)
    gut_y = -wd - uniform(rng, 14, 24) + (xx2**2) / np.float32(2 * 90.0)  # bowel boundary curving round the spine
    bowel = T2["bowel"] + np.clip(tex * 0.5 + 0.2, 0, 1) * (T2["fat"] - T2["bowel"]) + 0.05 * tex2
    put(soft(gut_y - yy2, 3 * e), bowel)
    # psoas (anterolateral) and paraspinal muscles (posterior, up to the subcutaneous fat)
    mus = T2["muscle"] * (1.0 + 0.08 * tex2)
    ps = uniform(rng, 11, 17)
    for sgn in (-1, 1):
        put(soft(ellipse_dist(xx2 - sgn * (lb + ps * 0.7), yy2 + 0.1 * wd, ps, ps * 1.25), e), mus)
        put(soft(ellipse_dist(xx2 - sgn * (wc + 19), yy2 - (wd + dc + 24), 19.0, back - wd - dc - 22), e), mus)
    put(soft(yy2 - (skin_y - fat), e), T2["fat"])
    put(soft(yy2 - skin_y, e), T2["air"])
    # posterior arch: laminae / facets ring around the canal (dark rim, marrow inside), spinous process
    ring_d = ellipse_dist(xx2, yy2 - (wd + dc / 2 + 2), wc + 8, dc / 2 + 8)
    post = soft(yy2 - (wd + 3), e)
    put(soft(ring_d, e) * post, T2["cortex"])
    put(soft(ring_d - 1.3, e) * post, T2["pedicle"])
    sp_d = np.minimum(3.5 - np.abs(xx2), np.minimum(yy2 - (wd + dc), wd + dc + 32 - yy2))
    put(soft(sp_d, e), T2["cortex"])
    put(soft(sp_d - 1.2, e), T2["spinous"])
    # canal: CSF with the cauda equina roots lying dorsally
    put(soft(ellipse_dist(xx2, yy2 - (wd + dc / 2), wc, dc / 2), e), T2["csf"])
    for j in range(-2, 3):
        put(soft(1.1 - np.sqrt((xx2 - 2.6 * j) ** 2 + (yy2 - (wd + dc * 0.72 - 0.3 * abs(j))) ** 2), e) * 0.8,
            T2["cord"])
    # disc: kidney-shaped (posterior concavity), bulging v2 loses the concavity
    bulge = disc.bulge if cls == "v2" else 0.0
    d_out = ellipse_dist(xx2, yy2, lb + bulge, wd + bulge)
    notch = -ellipse_dist(xx2, yy2 - (wd + 6.0), wc * 0.9, 7.0)
    a_d = soft(d_out if cls == "v2" else np.minimum(d_out, notch), e)
    put(a_d, mix_tissue(T2, "annulus_n", "annulus_d", disc.desiccation))
    put(soft(ellipse_dist(xx2, yy2, 0.62 * lb, 0.55 * wd), 3 * e) * a_d,
        mix_tissue(T2, "nucleus_n", "nucleus_d", disc.desiccation))
    if hernia is not None and hernia.kind != "bulge":
        a_h = soft(ellipse_dist(xx2 - hernia.x0 * 1.5, yy2 - (wd - 1), 6.0 if hernia.kind == "v3" else 9.0,
                                  hernia.depth + 1), e) * soft(yy2 - (wd - 3.0), e)
        put(a_h, T2["herniation"])
    bias = 0.6 + 0.4 * np.exp(-np.maximum(skin_y - yy2, 0.0) / np.float32(150.0))
    img = img * bias
    return rician_uint16(img, rng, sigma, gain)




@dataclass
class AxialSection:
    """What one RSNA axial slice cuts, in its own plane (mm). The origin is the centre of the spinal
    canal; ``xx`` runs towards the patient's left, ``yy`` posterior.

    ``through_disc``: the slice crosses the disc (else a vertebral body). ``canal_ap`` is the
    canal's CSF width (anterior-posterior) here, ``canal_ap_normal`` the level's width without
    stenosis; ``centre_depth`` the distance from the disc / body centre to the canal centre.
    ``recess`` (left, right) are the half sizes of the lateral recesses (subarticular stenosis
    shrinks them), centred ``recess_x`` mm either side of the midline and ``recess_y`` mm behind
    the canal centre: the subarticular label points.
    """

    through_disc: bool
    disc_w: float
    lat_body: float
    canal_half_width: float
    canal_ap: float
    canal_ap_normal: float
    centre_depth: float
    bulge: float
    hydrated: bool
    recess: tuple[float, float]
    recess_x: float
    recess_y: float


def rician_uint16(img: np.ndarray, rng: np.random.Generator, sigma: float, gain: float) -> np.ndarray:
    """Magnitude-MR noise on a noiseless [R, C] image: |img + σ·n1 + iσ·n2| × gain, clipped to
    12 bits and rounded → uint16 (σ in the image's intensity units)."""
    n1 = noise(rng, img.shape)
    n2 = noise(rng, img.shape)
    s = np.float32(sigma)
    out = np.sqrt((img + s * n1) ** 2 + (s * n2) ** 2) * np.float32(gain)
    np.clip(out, 0, 4095, out=out)
    return (out + 0.5).astype(np.uint16)


def _plane(shape: tuple[int, int], spacing: tuple[float, float], origin_rc: tuple[float, float]):
    """Per-pixel ``xx``, ``yy`` (mm from the canal centre at ``origin_rc``) and the soft-edge width."""
    R, C = shape
    dya, dxa = spacing
    yy = ((np.arange(R, dtype=np.float32) - np.float32(origin_rc[0])) * np.float32(dya))[:, None]
    xx = ((np.arange(C, dtype=np.float32) - np.float32(origin_rc[1])) * np.float32(dxa))[None, :]
    return np.broadcast_to(xx, (R, C)), np.broadcast_to(yy, (R, C)), 0.9 * max(dxa, dya)


@dataclass
class AxialSurroundings:
    """What the slices of one axial block share: the T2 image (0..1 scale) of everything around the
    spine (bowel in front, psoas, paraspinal muscles, subcutaneous fat, air), its texture and the skin
    line (``yy`` mm of the skin per pixel, for the coil bias)."""

    img: np.ndarray
    tex: np.ndarray
    skin_y: np.ndarray


def axial_surroundings(rng: np.random.Generator, shape: tuple[int, int], spacing: tuple[float, float],
                       origin_rc: tuple[float, float], sec: AxialSection, tis: dict) -> AxialSurroundings:
    """The surroundings of the slices of a block at the level described (without stenosis) by ``sec``."""
    R, C = shape
    dya, dxa = spacing
    xx2, yy2, e = _plane(shape, spacing, origin_rc)
    depth = sec.disc_w + sec.canal_ap_normal / 2  # disc / body centre → canal centre, without stenosis
    yd = yy2 + np.float32(depth)
    wd, lb, wc = sec.disc_w, sec.lat_body, sec.canal_half_width
    post_wall = depth + sec.canal_ap_normal / 2
    T2 = {k: v[1] for k, v in tis.items()}
    tex = smooth_field(rng, (R, C), 10.0 / dya, 10.0 / dxa)
    tex2 = smooth_field(rng, (R, C), 5.0 / dya, 5.0 / dxa)
    img = T2["fat"] * 0.85 * (1.0 + 0.05 * tex2)
    back = post_wall + uniform(rng, 38, 55)
    fat = uniform(rng, 8, 28)
    skin_y = back + fat - (xx2**2) / np.float32(2 * 260.0)
    gut_y = -wd - uniform(rng, 14, 24) + (xx2**2) / np.float32(2 * 90.0)
    bowel = T2["bowel"] + np.clip(tex * 0.5 + 0.2, 0, 1) * (T2["fat"] - T2["bowel"]) + 0.05 * tex2
    img += soft(gut_y - yd, 3 * e) * (bowel - img)
    mus = T2["muscle"] * (1.0 + 0.08 * tex2)
    ps = uniform(rng, 11, 17)
    for sgn in (-1, 1):
        img += soft(ellipse_dist(xx2 - sgn * (lb + ps * 0.7), yd + 0.1 * wd, ps, ps * 1.25), e) * (mus - img)
        muscle = ellipse_dist(xx2 - sgn * (wc + 19), yd - (post_wall + 24), 19.0, back - post_wall - 22)
        img += soft(muscle, e) * (mus - img)
    img += soft(yd - (skin_y - fat), e) * (T2["fat"] - img)
    img += soft(yd - skin_y, e) * (T2["air"] - img)
    return AxialSurroundings(img=img.astype(np.float32), tex=tex, skin_y=skin_y - np.float32(depth))


def render_axial_section(rng: np.random.Generator, shape: tuple[int, int], spacing: tuple[float, float],
                         origin_rc: tuple[float, float], sec: AxialSection, around: AxialSurroundings, tis: dict,
                         gain: float, sigma: float) -> np.ndarray:
    """An RSNA axial T2 slice: uint16 ``shape`` (rows, cols), values ≤ 4095.

    ``spacing`` (dy, dx) mm; ``origin_rc`` the (row, col) pixel of the canal centre; ``around`` the
    block's :func:`axial_surroundings`; ``gain`` and ``sigma`` the T2 gain and Rician noise level
    (0..1 scale). Columns increase towards the patient's left, rows posteriorly.
    """
    R, C = shape
    xx2, yy2, e = _plane(shape, spacing, origin_rc)
    yd = yy2 + np.float32(sec.centre_depth)  # relative to the disc / body centre
    wd, lb, wc = sec.disc_w, sec.lat_body, sec.canal_half_width
    post_wall = sec.centre_depth + sec.canal_ap_normal / 2  # posterior canal wall without stenosis
    T2 = {k: v[1] for k, v in tis.items()}
    tex = around.tex
    img = around.img.copy()

    def put(alpha: np.ndarray, value) -> None:
        img[...] += alpha * (value - img)

    # disc (kidney-shaped unless bulging) or vertebral body (marrow in a dark cortex)
    if sec.through_disc:
        d_out = ellipse_dist(xx2, yd, lb + sec.bulge, wd + sec.bulge)
        notch = -ellipse_dist(xx2, yd - (wd + 6.0), wc * 0.9, 7.0)
        a_d = soft(d_out if sec.bulge > 1.5 else np.minimum(d_out, notch), e)
        put(a_d, T2["annulus_n" if sec.hydrated else "annulus_d"])
        nucleus = soft(ellipse_dist(xx2, yd, 0.62 * lb, 0.55 * wd), 3 * e) * a_d
        put(nucleus, T2["nucleus_n" if sec.hydrated else "nucleus_d"])
    else:
        body = ellipse_dist(xx2, yd, lb, wd)
        put(soft(body, e), T2["cortex"])
        put(soft(body - 1.4, e), T2["marrow"] * (1.0 + 0.06 * tex))
    # posterior arch: pedicles / laminae / facets around the canal, spinous process
    ring_d = ellipse_dist(xx2, yy2 - 2.0, wc + 8, sec.canal_ap_normal / 2 + 8)
    post = soft(yd - (wd + sec.bulge + 1.0), e)
    put(soft(ring_d, e) * post, T2["cortex"])
    put(soft(ring_d - 1.3, e) * post, T2["pedicle"])
    sp_d = np.minimum(3.5 - np.abs(xx2), np.minimum(yd - post_wall, post_wall + 32 - yd))
    put(soft(sp_d, e), T2["cortex"])
    put(soft(sp_d - 1.2, e), T2["spinous"])
    # canal: central CSF, the lateral recesses (left = +xx), cauda equina roots lying dorsally
    put(soft(ellipse_dist(xx2, yy2, 0.62 * wc, sec.canal_ap / 2), e), T2["csf"])
    for side, r in zip((1, -1), sec.recess):
        if r > 0.05:
            put(soft(ellipse_dist(xx2 - side * sec.recess_x, yy2 - sec.recess_y, 1.2 * r, 0.9 * r), e), T2["csf"])
    root_y = 0.25 * sec.canal_ap
    for j in range(-2, 3):
        put(soft(0.9 - np.sqrt((xx2 - 1.8 * j) ** 2 + (yy2 - root_y) ** 2), e) * 0.8, T2["cord"])
    bias = 0.6 + 0.4 * np.exp(-np.maximum(around.skin_y - yy2, 0.0) / np.float32(150.0))
    img *= bias
    return rician_uint16(img, rng, sigma, gain)
