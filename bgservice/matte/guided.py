"""Edge-aware upsampling of a low-resolution mask: the fast guided filter (He & Sun 2015) with a colour
guide (He, Sun & Tang 2013, the 3x3 covariance form).

The filter's linear coefficients (a, b) are computed on the small work grid, where the mask and a
downscaled copy of the frame live. At full resolution the matte is the work-grid result upsampled
bilinearly, except in the uncertain band (work pixels whose value is not saturated by the contrast curve,
plus one pixel) where ``q = a . I + b`` is evaluated with the full-resolution pixel ``I``: the
coefficients are smooth, so that keeps the frame's own edges (hair, fingers) at the cost of the band
only. cv2.ximgproc is not in opencv-python-headless: written with cv2.boxFilter.
"""

from __future__ import annotations

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, Band, box, f32


def guided_coefficients(guide: F32, mask: F32, radius: int, eps: float) -> tuple[F32, F32]:
    """Mean coefficients of the colour-guide guided filter: a float32 [h,w,3], b float32 [h,w].

    ``guide`` is the RGB frame in 0..1, [h,w,3], at the size of ``mask``. The 3x3 system is solved per
    pixel in closed form (adjugate), all float32.
    """
    r = max(1, int(radius))
    mean_i = box(guide, r)  # [h,w,3]
    mean_p = box(mask, r)
    cov_ip = box(guide * mask[:, :, None], r)
    cov_ip -= mean_i * mean_p[:, :, None]
    ir, ig, ib = guide[:, :, 0], guide[:, :, 1], guide[:, :, 2]
    prods = cv2.merge([ir * ir, ir * ig, ir * ib, ig * ig, ig * ib, ib * ib])
    var = box(f32(prods), r)
    m_r, m_g, m_b = mean_i[:, :, 0], mean_i[:, :, 1], mean_i[:, :, 2]
    e = np.float32(eps)
    v_rr = var[:, :, 0] - m_r * m_r + e
    v_rg = var[:, :, 1] - m_r * m_g
    v_rb = var[:, :, 2] - m_r * m_b
    v_gg = var[:, :, 3] - m_g * m_g + e
    v_gb = var[:, :, 4] - m_g * m_b
    v_bb = var[:, :, 5] - m_b * m_b + e
    # inverse of the symmetric covariance matrix through its adjugate
    i_rr = v_gg * v_bb - v_gb * v_gb
    i_rg = v_gb * v_rb - v_rg * v_bb
    i_rb = v_rg * v_gb - v_gg * v_rb
    i_gg = v_rr * v_bb - v_rb * v_rb
    i_gb = v_rb * v_rg - v_rr * v_gb
    i_bb = v_rr * v_gg - v_rg * v_rg
    inv_det = 1.0 / (v_rr * i_rr + v_rg * i_rg + v_rb * i_rb)
    c_r, c_g, c_b = cov_ip[:, :, 0], cov_ip[:, :, 1], cov_ip[:, :, 2]
    ab = np.empty((*mask.shape, 4), np.float32)
    ab[:, :, 0] = (i_rr * c_r + i_rg * c_g + i_rb * c_b) * inv_det
    ab[:, :, 1] = (i_rg * c_r + i_gg * c_g + i_gb * c_b) * inv_det
    ab[:, :, 2] = (i_rb * c_r + i_gb * c_g + i_bb * c_b) * inv_det
    ab[:, :, 3] = mean_p - ab[:, :, 0] * m_r - ab[:, :, 1] * m_g - ab[:, :, 2] * m_b
    ab = box(ab, r)
    return ab[:, :, :3], ab[:, :, 3]


def apply_coefficients(a: F32, b: F32, guide: F32) -> F32:
    """q = a . I + b on the coefficients' own grid (guide float32 [h,w,3] 0..1)."""
    q = f32(np.einsum("hwc,hwc->hw", a, guide))
    q += b
    return q


def contrast(q: F32, gain: float, snap: float, center: float = 0.5) -> F32:
    """In place: ``(q - center) * gain + 0.5``, clipped to 0..1; values within ``snap`` of 0/1 become 0/1."""
    if gain != 1.0 or center != 0.5:
        q -= np.float32(center)
        q *= np.float32(gain)
        q += np.float32(0.5)
    np.clip(q, 0.0, 1.0, out=q)
    if snap > 0.0:
        q[q < snap] = 0.0
        q[q > 1.0 - snap] = 1.0
    return q


def upsample_matte(q_smooth: F32, q_raw: F32 | None, coeffs: tuple[F32, F32] | None, frame: U8, out: F32,
                   *, gain: float, snap: float, center: float = 0.5,
                   detail: float = 1.0) -> tuple[Band, F32]:
    """Write the full-resolution matte into ``out`` (float32 [H,W]); return its uncertain band and the
    matte on the work grid.

    q_smooth: the work-grid result (after temporal smoothing); q_raw: the same before smoothing (the
    guided-filter output of this frame), or None when there was no smoothing. coeffs: the guided filter's
    (a, b) on the work grid, or None for plain bilinear upsampling.
    In the band the value is ``a(x) . I(x) + b(x) + (q_smooth - q_raw)(x)``: the frame's own
    full-resolution detail on top of the temporally smoothed matte.
    """
    h, w = out.shape
    if q_smooth.shape == (h, w):  # the work grid is the full grid
        out[...] = q_smooth
        contrast(out, gain, snap, center)
        return Band.from_full((out > 0.0) & (out < 1.0)), out
    small = contrast(q_smooth.copy(), gain, snap, center)
    cv2.resize(small, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    unsure = (small > 0.0) & (small < 1.0)
    if q_raw is not None:
        unsure |= np.abs(q_raw - np.float32(center)) < np.float32(0.5 / max(gain, 1e-6))
    grown: U8 = np.asarray(cv2.dilate(unsure.astype(np.uint8), np.ones((3, 3), np.uint8)), dtype=np.uint8)
    band = Band(grown, (h, w))
    if coeffs is None or band.size == 0:
        return band, small
    a, b = coeffs
    if detail != 1.0:  # q = q_smooth + detail * (a . I + b - q_raw)
        a = a * np.float32(detail)
        b = b * np.float32(detail)
    ref = q_raw if q_raw is not None else q_smooth
    c = b + (q_smooth - ref) if detail == 1.0 else b + (q_smooth - np.float32(detail) * ref)
    fields = band.sample(f32(cv2.merge([a[:, :, 0], a[:, :, 1], a[:, :, 2], c])))
    pix = band.take(frame).astype(np.float32)
    pix *= np.float32(1.0 / 255.0)
    vals = f32(np.einsum("kc,kc->k", fields[:, :3], pix))
    vals += fields[:, 3]
    band.put(out, contrast(vals, gain, snap, center))
    return band, small
