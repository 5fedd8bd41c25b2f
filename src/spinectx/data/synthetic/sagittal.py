"""Sagittal rendering of the phantom: T1 and T2 slices at any lateral offset from the midline.

:class:`SagittalRenderer` prepares the per-study full-frame fields once (background layers, the
canal with CSF / cord / cauda, the coil bias) and the patches of every structure, then draws one slice
at a time at lateral offset ``d`` mm (``d > 0``: towards the patient's left, +x in LPS). Midline
structures (canal CSF, cord, spinous processes) fade laterally; bodies and discs narrow towards their
lateral edge; beyond the canal the canal band shows pedicles and foramina.
:func:`render_stacks` turns slices into uint16 frames with bias, Rician noise and gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .anatomy import LABELS, Acquisition, Spine, mix_tissue, project_to_curve
from .seeding import noise, uniform
from .shapes import Canvas, Frame, Grid, Patch, ellipse_dist, make_patch, smooth_field, soft, superellipse_dist

__all__ = ["SagittalRenderer", "Foramen", "ForaminaRenderer", "render_stacks"]


class SagittalRenderer:
    """Per-study fields (background, canal, bias) and structure patches, then one slice at a time."""

    def __init__(self, spine: Spine, acq: Acquisition, tis: dict[str, tuple[float, float]], rng: np.random.Generator):
        self.spine, self.acq, self.tis, self.rng = spine, acq, tis, rng
        self.grid = Grid(acq.rows, acq.cols, acq.dy, acq.dx, edge=0.9 * max(acq.dx, acq.dy))
        self._prepare_fields()
        self._prepare_structures()

    def point_at(self, s: float, b: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """Image-plane point (X, Y) mm at arc length ``s`` along the centre line and ``b`` mm from it
        (posterior > 0), and the unit tangent (towards the feet) there."""
        cxy, cs, ct = self.curve
        k = int(np.argmin(np.abs(cs - s)))
        tx, ty = float(ct[k, 0]), float(ct[k, 1])
        ds = s - float(cs[k])
        return (float(cxy[k, 0]) + ds * tx + b * ty, float(cxy[k, 1]) + ds * ty - b * tx), (tx, ty)

    # ---- per-study full-frame fields ------------------------------------------------------------
    def _prepare_fields(self) -> None:
        sp, g, rng, tis = self.spine, self.grid, self.rng, self.tis
        R, C, step = g.rows, g.cols, 8
        nr, nc = -(-R // step), -(-C // step)
        rr = (np.arange(nr + 2) - 0.5) * step - 0.5
        cc = (np.arange(nc + 2) - 0.5) * step - 0.5
        gy, gx = np.meshgrid(rr * g.dy, cc * g.dx, indexing="ij")
        lo = np.array([-150.0, -150.0])
        hi = np.array([C * g.dx + 150.0, R * g.dy + 150.0])
        keep = np.all((sp.curve_xy > lo) & (sp.curve_xy < hi), axis=1)
        cs, ct, cxy = sp.curve_s[keep], sp.curve_t[keep], sp.curve_xy[keep]
        S, B = project_to_curve(cxy, cs, ct, gx.ravel(), gy.ravel())

        # 1-D profiles along the centre line from the structures
        def project_point(x: float, y: float) -> tuple[float, float]:
            s_, b_ = project_to_curve(cxy, cs, ct, np.array([x]), np.array([y]))
            return float(s_[0]), float(b_[0])

        names = list(sp.bodies) + list(sp.discs)
        prof = []
        for n in names:
            st = sp.bodies.get(n) or sp.discs[n]
            s_c, _ = project_point(st.frame.cx, st.frame.cy)
            _, b_post = project_point(*st.frame.point(0.0, st.w))
            _, b_ant = project_point(*st.frame.point(0.0, -st.w))
            prof.append((s_c, b_post, b_ant, sp.dc[n], 1.0 if n in sp.bodies else 0.0))
        #: B (mm, posterior > 0) of every structure's posterior wall, from the centre line
        self.posterior_wall = {n: row[1] for n, row in zip(names, prof)}
        self.curve = (cxy, cs, ct)
        prof.sort()
        ps = np.array(prof)
        self.s_of = {n: project_point(*(sp.bodies.get(n) or sp.discs[n]).frame.point(0, 0))[0] for n in names}
        P = np.interp(S, ps[:, 0], ps[:, 1])
        A = np.interp(S, ps[:, 0], ps[:, 2])
        Dc = np.interp(S, ps[:, 0], ps[:, 3])
        G = np.interp(S, ps[:, 0], ps[:, 4])
        q = (B - P) / Dc
        s_conus = self.s_of["L1-L2"] + uniform(rng, -14, 10)
        s_sac = self.s_of["S2"] + uniform(rng, -6, 4)
        s_end = self.s_of["S3"] + uniform(rng, 0, 8)
        sp.s_conus, sp.s_sac_end, sp.s_canal_end = s_conus, s_sac, s_end
        cordness = np.clip((s_conus - S) / 12.0 + 1.0, 0.0, 1.0)  # 1 cord, 0 below the conus
        hw = 1.3 + 3.2 * cordness
        qc = 0.45 + 0.15 * (1.0 - cordness)
        yc = B - (P + qc * Dc)
        cstr = (0.55 + 0.45 * cordness) * np.clip((s_sac - 8.0 - S) / 10.0, 0.0, 1.0)
        sac = np.clip((s_sac - S) / 6.0 + 0.5, 0.0, 1.0)
        clen = np.clip((s_end - S) / 4.0 + 0.5, 0.0, 1.0)
        # background layout, in mm behind the posterior canal wall / in front of the anterior wall
        post = (q - 1.0) * Dc
        ant = A - B
        m1 = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (nc + 2, nr + 2),
                        interpolation=cv2.INTER_CUBIC).ravel()
        m2 = cv2.resize(rng.standard_normal((5, 5)).astype(np.float32), (nc + 2, nr + 2),
                        interpolation=cv2.INTER_CUBIC).ravel()
        muscle_len = uniform(rng, 38.0, 58.0)
        fat_th = uniform(rng, 8.0, 32.0)
        prev = uniform(rng, 4.0, 12.0)
        a_skin = uniform(rng, 110.0, 220.0)
        a_fat = uniform(rng, 8.0, 25.0)
        pf = post - (muscle_len + 6.0 * m1)
        pskin = pf - fat_th * (1.0 + 0.25 * m2)
        aa = ant - prev * (1.0 + 0.3 * m2)
        askin = ant - a_skin - 10.0 * m1
        af = askin + a_fat
        coil_d = np.maximum(-pskin, 0.0)
        coil = 0.55 + 0.45 * np.exp(-coil_d / 150.0)
        bias = []
        for _ in range(2):
            mb = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (nc + 2, nr + 2),
                            interpolation=cv2.INTER_CUBIC).ravel()
            bias.append(coil * np.exp(0.12 * mb))
        chans = np.stack([q, Dc, yc, hw, cstr, sac, G, clen, pf, pskin, aa, af, askin, bias[0], bias[1]], axis=1)
        chans = chans.astype(np.float32).reshape(nr + 2, nc + 2, -1)
        full = cv2.resize(chans, ((nc + 2) * step, (nr + 2) * step), interpolation=cv2.INTER_LINEAR)
        full = full[step : step + R, step : step + C]
        (q, Dc, yc, hw, cstr, sac, G, clen, pf, pskin, aa, af, askin, b1, b2) = (
            np.ascontiguousarray(full[..., i]) for i in range(full.shape[-1])
        )
        self.bias = (b1, b2)
        e = g.edge

        # background per contrast
        tex_mus = smooth_field(rng, (R, C), 9.0 / g.dy, 3.0 / g.dx)
        tex_ab1 = smooth_field(rng, (R, C), 14.0 / g.dy, 14.0 / g.dx)
        tex_ab2 = smooth_field(rng, (R, C), 9.0 / g.dy, 9.0 / g.dx)
        a_pf = soft(pf, e)
        a_ab = soft(aa, 2.0 * e)
        a_af = soft(af, e)
        a_air = np.maximum(soft(pskin, e), soft(askin, e))
        fatmix = np.clip(tex_ab1 * 0.4 + 0.3, 0.0, 1.0)
        fluid = np.clip(tex_ab2 * 0.6 - 1.1, 0.0, 0.5)
        self.a_soft = 1.0 - a_air
        bgs = []
        for c in range(2):
            img = tis["muscle"][c] * (1.0 + 0.09 * tex_mus)
            abd = tis["bowel"][c] + fatmix * (tis["fat"][c] - tis["bowel"][c])
            abd += fluid * (tis["fluid"][c] - abd)
            abd *= 1.0 + 0.06 * tex_ab2
            img += a_ab * (abd - img)
            img += a_pf * (tis["fat"][c] - img)
            img += a_af * (tis["fat"][c] - img)
            img += a_air * (tis["air"][c] - img)
            bgs.append(img.astype(np.float32))
        self.bg = bgs

        # canal layers (restricted to their bounding box)
        qd = q * Dc
        a_canal = soft(qd, e) * soft(Dc - qd, e) * clen
        a_lf = soft(qd - Dc, e) * soft(Dc + 2.6 - qd, e) * clen
        a_cord = soft(hw - np.abs(yc), e) * cstr * a_canal
        rows_any = np.flatnonzero((a_canal + a_lf).max(axis=1) > 0)
        cols_any = np.flatnonzero((a_canal + a_lf).max(axis=0) > 0)
        if rows_any.size:
            self.canal_sl = (slice(rows_any[0], rows_any[-1] + 1), slice(cols_any[0], cols_any[-1] + 1))
        else:
            self.canal_sl = (slice(0, 0), slice(0, 0))
        sl = self.canal_sl
        self.a_canal, self.a_lf, self.a_cord = a_canal[sl].copy(), a_lf[sl].copy(), a_cord[sl].copy()
        self.csf_target = []
        self.lat_target = []
        for c in range(2):
            csf = tis["fat"][c] + sac[sl] * (tis["csf"][c] - tis["fat"][c])
            lat = tis["foramen"][c] + G[sl] * (tis["pedicle"][c] - tis["foramen"][c])
            self.csf_target.append(csf.astype(np.float32))
            self.lat_target.append(lat.astype(np.float32))
        self.sac_full = sac
        self.g_canal = G[sl]  # 1 at the bodies, 0 at the discs (canal box)

    # ---- per-study structure patches --------------------------------------------------------------
    def _prepare_structures(self) -> None:
        sp, g, rng = self.spine, self.grid, self.rng
        self.body_patches: dict[str, tuple[Patch, np.ndarray, np.ndarray]] = {}
        for name, b in sp.bodies.items():
            m = 9.0
            p = make_patch(g, b.frame, -b.h - m, b.h + m, -b.w - m, b.w + 2.0)
            if p is None:
                continue
            shape = p.a.shape
            cell = 3.5 / g.dx
            ta = smooth_field(rng, shape, cell, cell)
            tb = smooth_field(rng, shape, cell, cell)
            self.body_patches[name] = (p, ta, tb)
        self.disc_patches: dict[str, tuple[Patch, np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, d in sp.discs.items():
            wedge = d.w * 0.5 + 3.0
            p = make_patch(g, d.frame, -d.height / 2 - wedge, d.height / 2 + wedge, -d.w - 3.0, d.w + d.bulge + 2.0)
            if p is None:
                continue
            au, _ = p.coords_in(d.upper.frame)
            al, _ = p.coords_in(d.lower.frame)
            td = au - np.float32(d.upper.h)  # below the upper endplate
            ed = -np.float32(d.lower.h) - al  # above the lower endplate
            tot = np.maximum(td + ed, np.float32(0.3))
            an = np.clip((td - ed) / tot, -1.0, 1.0)  # -1 upper endplate .. +1 lower
            vert = np.minimum(td, ed) + np.float32(2.0)
            self.disc_patches[name] = (p, an, vert, tot)
        self.hernia_patches = []
        for h in sp.hernias:
            d = h.disc
            a_lo = min(-d.height / 2 - 2, d.height * 0 - h.ha - 2)
            a_hi = max(d.height / 2 + 2, h.ha + 2)
            if h.kind == "v4":
                reach = d.height / 2 + h.migration + 4
                a_lo, a_hi = (min(a_lo, -reach), a_hi) if h.direction < 0 else (a_lo, max(a_hi, reach))
            p = make_patch(g, d.frame, a_lo, a_hi, d.w - 2.0, d.w + h.depth + 3.0)
            if p is not None:
                self.hernia_patches.append((h, p))
        self.node_patches = []
        for nd in sp.nodes:
            b = nd.body
            a_c = nd.side * b.h
            p = make_patch(g, b.frame, a_c - nd.r - 3, a_c + nd.r + 3, nd.b0 - nd.r - 3, nd.b0 + nd.r + 3)
            if p is not None:
                self.node_patches.append((nd, p))
        self.spinous_patches = []
        for s in sp.spinous:
            b = s.body
            reach = s.length * math.tan(s.tilt)
            p = make_patch(g, b.frame, -s.h0 - 3 + s.a_off, s.a_off + reach + s.h0 + 3, s.b0 - 2, s.b0 + s.length + 2)
            if p is not None:
                self.spinous_patches.append((s, p))

    # ---- drawing ---------------------------------------------------------------------------------
    def render_slice(
        self, d: float, phase: float, labelled: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """T1 and T2 float frames of the slice at lateral offset ``d`` mm (+ tissue labels if asked)."""
        g, tis, sp = self.grid, self.tis, self.spine
        t1, t2 = self.bg[0].copy(), self.bg[1].copy()
        lab = None
        if labelled:
            lab = np.where(self.a_soft > 0.5, LABELS["soft"], LABELS["air"]).astype(np.uint8)
        cv = Canvas(t1, t2, lab)
        ad = abs(d)
        e = g.edge

        # canal: CSF (fat below the thecal sac) fading to pedicles / foramina laterally
        f_c = float(np.clip((sp.canal_half_width - ad) / 3.0 + 0.5, 0.0, 1.0))
        sl = self.canal_sl
        for c, img in enumerate((t1, t2)):
            target = self.lat_target[c] + f_c * (self.csf_target[c] - self.lat_target[c])
            x = img[sl]
            x += self.a_canal * (target - x)
        if lab is not None:
            lab[sl][(self.a_canal * f_c > 0.5) & (self.sac_full[sl] > 0.5)] = LABELS["csf"]
        f_cord = float(np.clip((8.0 - ad) / 4.0, 0.0, 1.0))
        if f_cord > 0:
            cv.blend(sl, self.a_cord * np.float32(f_cord * f_c), tis["cord"][0], tis["cord"][1], LABELS["cord"])
        cv.blend(sl, self.a_lf, tis["ligament"][0], tis["ligament"][1])

        # posterior elements: spinous processes at the midline, laminae / facets laterally
        f_sp = float(np.clip((7.0 - ad) / 4.0, 0.0, 1.0))
        for s, p in self.spinous_patches:
            length = s.length * (0.3 + 0.7 * f_sp)
            tan_t = math.tan(s.tilt)
            bb = p.b - np.float32(s.b0)
            frac = np.clip(bb / np.float32(length), 0.0, 1.0)
            h = np.float32(s.h0) + np.float32(s.h1 - s.h0) * frac
            ac = p.a - np.float32(s.a_off) - bb * np.float32(tan_t)
            rb = np.abs(bb - np.float32(length / 2)) / np.float32(length / 2)
            ra = np.abs(ac) / h
            rho = (rb**4 + ra**4) ** 0.25
            dist = (1.0 - rho) * np.minimum(h, np.float32(length / 2))
            alpha = soft(dist, e)
            cv.blend(p.sl, alpha, tis["cortex"][0], tis["cortex"][1], LABELS["posterior"])
            inner = soft(dist - np.float32(1.2), e)
            cv.blend(p.sl, inner, tis["spinous"][0], tis["spinous"][1])

        # discs (with their bulge), then herniations
        for name, (p, an, vert, tot) in self.disc_patches.items():
            dsc = sp.discs[name]
            sb = math.sqrt(max(0.0, 1.0 - (d / dsc.lat) ** 2))
            fade = float(np.clip((dsc.lat - ad) / 3.0, 0.0, 1.0))
            if fade <= 0:
                continue
            wd = dsc.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(dsc.w - wd)
            an2 = an * an
            prof = np.sqrt(np.clip(1.0 - an2 * an2, 0.0, 1.0))
            post_lim = np.float32(wd) + np.float32(dsc.bulge) * prof
            ant_lim = -np.float32(wd) - np.float32(1.2) * np.sqrt(np.clip(1.0 - an2, 0.0, 1.0))
            alpha = soft(vert, e) * soft(post_lim - b, e) * soft(b - ant_lim, e)
            if fade < 1:
                alpha *= np.float32(fade)
            if dsc.cls == "remnant":
                cv.blend(p.sl, alpha, tis["remnant"][0], tis["remnant"][1])
                continue
            ann = mix_tissue(tis, "annulus_n", "annulus_d", dsc.desiccation)
            nuc = mix_tissue(tis, "nucleus_n", "nucleus_d", dsc.desiccation)
            cv.blend(p.sl, alpha, ann[0], ann[1], LABELS["disc"])
            bn = np.float32(dsc.nucleus_shift * wd)
            r2 = ((b - bn) * np.float32(1.0 / (0.55 * wd))) ** 2 + an2 * np.float32(1.0 / 0.72**2)
            a_n = np.clip((1.0 - r2) * np.float32(2.5), 0.0, 1.0) * alpha
            cv.blend(p.sl, a_n, nuc[0], nuc[1])
        for h, p in self.hernia_patches:
            dsc = h.disc
            fh = math.sqrt(max(0.0, 1.0 - ((d - h.x0) / h.lat) ** 2))
            if fh < 0.05:
                continue
            sb = math.sqrt(max(0.0, 1.0 - (d / dsc.lat) ** 2))
            wd = dsc.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(dsc.w - wd)
            depth = h.depth * fh
            base = np.float32(wd - 1.0)
            dist = ellipse_dist(p.a - np.float32(h.a0), b - base, h.ha, depth + 1.0)
            if h.kind == "v4":
                mig = h.migration * (0.6 + 0.4 * fh)
                ac = h.direction * (dsc.height / 2 + mig / 2)
                frag = ellipse_dist(p.a - np.float32(ac), b - np.float32(wd + 0.5 * depth), mig / 2 + 3.0,
                                     0.5 * depth + 0.3)
                dist = np.maximum(dist, frag)
            alpha = soft(dist, e) * soft(b - np.float32(wd - 0.6), e) * np.float32(min(1.0, 4 * fh))
            if h.kind == "bulge":
                cv.blend(p.sl, alpha, tis["annulus_d"][0], tis["annulus_d"][1], LABELS["disc"])
            else:
                cv.blend(p.sl, alpha, tis["herniation"][0], tis["herniation"][1], LABELS["herniation"])

        # vertebral bodies (osteophytes, cortex, marrow texture, Modic band)
        for name, (p, ta, tb) in self.body_patches.items():
            bd = sp.bodies[name]
            sb = math.sqrt(max(0.0, 1.0 - (d / bd.lat) ** 2))
            fade = float(np.clip((bd.lat - ad) / 3.0, 0.0, 1.0))
            if fade <= 0:
                continue
            wv = bd.w * (0.5 + 0.5 * sb)
            b = p.b - np.float32(bd.w - wv)
            ff = np.float32(fade)
            tex = ta * np.float32(math.cos(phase)) + tb * np.float32(math.sin(phase))
            marrow = tis[bd.marrow]
            spur_fill = []
            for side, length, width, ang in bd.osteophytes:
                # base on the rounded corner (superellipse p=5 passes through 0.87·(h, w))
                da_ = p.a - np.float32(side * 0.86 * bd.h)
                db_ = b + np.float32(0.86 * wv)
                ua, ub = side * math.sin(ang), -math.cos(ang)  # outwards: towards the disc and anterior
                along = da_ * np.float32(ua) + db_ * np.float32(ub) - np.float32(length / 2 - 2.5)
                across = -da_ * np.float32(ub) + db_ * np.float32(ua)
                dist_o = ellipse_dist(along, across, length / 2 + 2.5, width / 2)
                a_o = soft(dist_o, e) * ff
                cv.blend(p.sl, a_o, tis["cortex"][0], tis["cortex"][1], LABELS["osteophyte"])
                spur_fill.append(soft(dist_o - np.float32(0.9), e) * ff)
            dist = superellipse_dist(p.a, b, bd.h, wv, 5.0)
            alpha = soft(dist, e) * ff
            cv.blend(p.sl, alpha, tis["cortex"][0], tis["cortex"][1], LABELS["bone"])
            rim = 1.4
            inner = soft(dist - np.float32(rim), e) * ff
            gain = 1.0 + np.float32(bd.tex_amp) * np.clip(tex, -1.2, 1.8)
            cv.blend(p.sl, inner, marrow[0] * gain, marrow[1] * gain)
            for a_oi in spur_fill:  # spur marrow continuous with the body's (no cortex between)
                cv.blend(p.sl, a_oi, marrow[0] * 0.9 * gain, marrow[1] * 0.9 * gain)
            if bd.modic_sides:
                mv = tis["modic1" if bd.modic_type == 1 else "modic2"]
                am = None
                for side in bd.modic_sides:
                    irregular = np.float32(0.7) * np.clip(tb, -2.0, 2.0)
                    edge_d = p.a * np.float32(side) - np.float32(bd.h - rim - bd.modic_band) - irregular
                    s_ = soft(edge_d, 1.5 * e)
                    am = s_ if am is None else np.maximum(am, s_)
                a_m = am * inner * np.float32(bd.modic_alpha)
                cv.blend(p.sl, a_m, mv[0] * (1 + 0.08 * ta), mv[1] * (1 + 0.08 * ta))

        # Schmorl's nodes: a pit of disc material with a dark sclerotic rim
        for nd, p in self.node_patches:
            fr = math.sqrt(max(0.0, 1.0 - ((d - nd.x0) / nd.lat) ** 2))
            if fr < 0.2:
                continue
            bd = nd.body
            r = nd.r * fr
            a_end = nd.side * bd.h
            ac = a_end - nd.side * 0.25 * r
            rr = np.sqrt((p.a - np.float32(ac)) ** 2 + (p.b - np.float32(nd.b0)) ** 2)
            into = (p.a - np.float32(a_end)) * np.float32(-nd.side)  # > 0 inside the body
            keep = soft(into + np.float32(0.3), e)
            a_rim = soft(np.float32(r + 1.3) - rr, e) * keep
            cv.blend(p.sl, a_rim, tis["cortex"][0], tis["cortex"][1] * 1.2, LABELS["schmorl"])
            a_in = soft(np.float32(r) - rr, e) * keep
            cv.blend(p.sl, a_in, tis["node"][0], nd.value_t2)
        return t1, t2, lab




@dataclass
class Foramen:
    """A neural foramen (RSNA phantom): an oval of fat around the exiting nerve root, behind a disc.

    ``centre`` (X, Y) image mm and ``tangent`` (unit, along the spine) place it in the sagittal
    plane; it is largest on the slice at lateral offset ``d`` mm (> 0: patient left) and shrinks to
    nothing ``lateral`` mm either side. ``half_t``/``half_n`` are its half sizes (mm) along the spine
    and anterior-posterior on that slice: foraminal narrowing shrinks them.
    """

    centre: tuple[float, float]
    tangent: tuple[float, float]
    d: float
    half_t: float
    half_n: float
    lateral: float = 5.5


class ForaminaRenderer(SagittalRenderer):
    """The sagittal renderer of the RSNA phantom: the canal band beside the canal shows pedicles at
    the bodies and dark facet / ligament tissue at the discs, and each :class:`Foramen` in
    ``foramina`` is drawn as bright fat (T1) with its dark root, so its size on the parasagittal T1
    slice measures foraminal narrowing."""

    def __init__(self, spine: Spine, acq: Acquisition, tis: dict[str, tuple[float, float]], rng: np.random.Generator):
        super().__init__(spine, acq, tis, rng)
        self.foramina: list[Foramen] = []
        facet = {c: 0.6 * tis["pedicle"][c] + 0.4 * tis["ligament"][c] for c in (0, 1)}
        self.lat_target = [
            (facet[c] + self.g_canal * (tis["pedicle"][c] - facet[c])).astype(np.float32) for c in (0, 1)
        ]

    def render_slice(
        self, d: float, phase: float, labelled: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As :meth:`SagittalRenderer.render_slice`, plus the foramina this slice cuts."""
        t1, t2, lab = super().render_slice(d, phase, labelled)
        cv = Canvas(t1, t2, None)
        e, tis = self.grid.edge, self.tis
        root = (0.7 * tis["cord"][0] + 0.3 * tis["ligament"][0], 0.7 * tis["cord"][1] + 0.3 * tis["ligament"][1])
        for f in self.foramina:
            u = (d - f.d) / f.lateral
            if abs(u) >= 1.0:
                continue
            fr = math.sqrt(1.0 - u * u)
            ht, hn = f.half_t * fr, f.half_n * fr
            frame = Frame(f.centre[0], f.centre[1], f.tangent[0], f.tangent[1])
            p = make_patch(self.grid, frame, -ht - 3.0, ht + 3.0, -hn - 3.0, hn + 3.0)
            if p is None or min(ht, hn) < 0.2:
                continue
            cv.blend(p.sl, soft(ellipse_dist(p.a, p.b, ht, hn), e), tis["fat"][0], tis["fat"][1])
            r_root = min(1.3, 0.4 * min(ht, hn))
            if r_root > 0.3:  # the exiting root in the upper part of the foramen
                dist = np.float32(r_root) - np.sqrt((p.a + np.float32(0.5 * ht)) ** 2 + p.b**2)
                cv.blend(p.sl, soft(dist, e), root[0], root[1])
        return t1, t2, lab


def render_stacks(
    sag: SagittalRenderer,
    offsets: Sequence[float],
    phases: Sequence[float],
    labelled: int | None,
    sigmas: tuple[float, float],
    gains: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Render the T1 and T2 stacks of the slices at lateral ``offsets`` (mm), in that order.

    ``phases`` turn the marrow texture from slice to slice; slice ``labelled`` also gets its tissue
    label map. Each frame gets the coil bias, Rician noise of level ``sigmas`` (0..1 scale; the noise is
    read from ``rng``, T1 then T2 for every slice) and the gain ``gains``. Returns ``(t1, t2,
    label_map)``: uint16 ``(n, rows, cols)`` stacks (values ≤ 4095) and the uint8 label map (None when
    ``labelled`` is None).
    """
    n, R, C = len(offsets), sag.acq.rows, sag.acq.cols
    t1_stack = np.empty((n, R, C), np.uint16)
    t2_stack = np.empty((n, R, C), np.uint16)
    label_map = None
    for i, (d, phase) in enumerate(zip(offsets, phases)):
        img1, img2, lab = sag.render_slice(d, phase, labelled=(i == labelled))
        if lab is not None:
            label_map = lab
        for c, (img, stack) in enumerate(((img1, t1_stack), (img2, t2_stack))):
            img *= sag.bias[c]
            s = np.float32(sigmas[c])
            n1 = noise(rng, (R, C))
            n2 = noise(rng, (R, C))
            img += s * n1
            np.square(img, out=img)
            img += (s * n2) ** 2
            np.sqrt(img, out=img)
            img *= np.float32(gains[c])
            img += np.float32(0.5)
            np.clip(img, 0, 4095, out=img)
            stack[i] = img.astype(np.uint16)
    return t1_stack, t2_stack, label_map
