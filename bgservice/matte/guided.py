"""Edge-aware upsampling of a low-resolution mask: the fast guided filter (He & Sun 2015) with a colour
guide (He, Sun & Tang 2013, the 3x3 covariance form).

The filter's linear coefficients (a, b) are computed at a reduced "work" resolution, where the mask and a
downscaled copy of the frame live; ``q = a . I + b`` is then evaluated with the full-resolution pixel I.
The coefficients are smooth, so the full-resolution result keeps the frame's edges (hair, fingers).
Where the work-resolution result is certain (saturates to 0 or 1 after the caller's contrast curve,
with a one-pixel margin) the full-resolution value is its bilinear upsampling; only the uncertain band is
evaluated per pixel at full resolution. cv2.ximgproc is not in opencv-python-headless: written with
cv2.boxFilter.
"""

from __future__ import annotations

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, box, f32, full_to_work_coords, resize, sample_bilinear


def guided_coefficients(guide: F32, mask: F32, radius: int, eps: float) -> tuple[F32, F32]:
    """Mean coefficients of the colour-guide guided filter: a float32 [h,w,3], b float32 [h,w].

    ``guide`` is the RGB frame in 0..1, [h,w,3], at the size of ``mask``. The 3x3 system is solved per
    pixel in closed form (adjugate), all float32.
    """
    r = max(1, int(radius))
    ir, ig, ib = guide[:, :, 0], guide[:, :, 1], guide[:, :, 2]
    m_r, m_g, m_b = box(ir, r), box(ig, r), box(ib, r)
    m_p = box(mask, r)
    c_r = box(ir * mask, r) - m_r * m_p
    c_g = box(ig * mask, r) - m_g * m_p
    c_b = box(ib * mask, r) - m_b * m_p
    e = np.float32(eps)
    v_rr = box(ir * ir, r) - m_r * m_r + e
    v_rg = box(ir * ig, r) - m_r * m_g
    v_rb = box(ir * ib, r) - m_r * m_b
    v_gg = box(ig * ig, r) - m_g * m_g + e
    v_gb = box(ig * ib, r) - m_g * m_b
    v_bb = box(ib * ib, r) - m_b * m_b + e
    # inverse of the symmetric covariance matrix through its adjugate
    i_rr = v_gg * v_bb - v_gb * v_gb
    i_rg = v_gb * v_rb - v_rg * v_bb
    i_rb = v_rg * v_gb - v_gg * v_rb
    i_gg = v_rr * v_bb - v_rb * v_rb
    i_gb = v_rb * v_rg - v_rr * v_gb
    i_bb = v_rr * v_gg - v_rg * v_rg
    inv_det = 1.0 / (v_rr * i_rr + v_rg * i_rg + v_rb * i_rb)
    a_r = (i_rr * c_r + i_rg * c_g + i_rb * c_b) * inv_det
    a_g = (i_rg * c_r + i_gg * c_g + i_gb * c_b) * inv_det
    a_b = (i_rb * c_r + i_gb * c_g + i_bb * c_b) * inv_det
    b = m_p - a_r * m_r - a_g * m_g - a_b * m_b
    a = f32(cv2.merge([box(f32(a_r), r), box(f32(a_g), r), box(f32(a_b), r)]))
    return a, box(f32(b), r)


def apply_coefficients(a: F32, b: F32, guide: F32) -> F32:
    """q = a . I + b at the coefficients' own size (guide float32 [h,w,3] 0..1)."""
    q = f32(np.einsum("hwc,hwc->hw", a, guide))
    q += b
    return q


def upsample(q_small: F32, frame: U8, coeffs: tuple[F32, F32] | None, *, gain: float = 1.0,
             detail_of: F32 | None = None) -> tuple[F32, tuple[np.ndarray, np.ndarray] | None]:
    """The full-resolution result of a work-resolution filter output.

    q_small: float32 [h,w], the (possibly temporally smoothed) guided-filter output at the work size.
    coeffs: the guided filter's (a, b) at the work size, or None for a plain bilinear upsampling.
    Everywhere the result is ``q_small`` upsampled bilinearly; in the uncertain band (work pixels with
    |q - 0.5| < 0.5 / gain, dilated by one) the full-resolution detail of this frame is added:
    ``a(x) . I(x) + b(x) - detail_of(x)`` where ``detail_of`` is the unsmoothed work-size output (so with no
    temporal smoothing the band is exactly the fast guided filter ``a . I + b``).
    Returns float32 [H,W] (not clipped) and the band's full-resolution (row, col) indices (None if the
    work grid is the full size: then there is nothing to upsample).
    """
    h, w = frame.shape[:2]
    hs, ws = q_small.shape
    if (hs, ws) == (h, w):
        return q_small.copy(), None
    q = resize(q_small, w, h)
    if coeffs is None:
        return q, None
    a, b = coeffs
    half = np.float32(0.5 / max(gain, 1e-6))
    ref = q_small if detail_of is None else detail_of
    unsure = (np.abs(q_small - np.float32(0.5)) < half) | (np.abs(ref - np.float32(0.5)) < half)
    unsure = unsure.astype(np.uint8)
    unsure = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    band = cv2.resize(unsure, (w, h), interpolation=cv2.INTER_NEAREST)
    ys_i, xs_i = np.nonzero(band)
    if ys_i.size == 0:
        return q, (ys_i, xs_i)
    ys = full_to_work_coords(ys_i, h, hs)
    xs = full_to_work_coords(xs_i, w, ws)
    stack = [a, b[:, :, None]] if detail_of is None else [a, b[:, :, None], detail_of[:, :, None]]
    fields = sample_bilinear(f32(np.concatenate(stack, axis=2)), ys, xs)
    pix = frame[ys_i, xs_i].astype(np.float32) * np.float32(1.0 / 255.0)
    detail = np.einsum("kc,kc->k", fields[:, :3], pix) + fields[:, 3]
    if detail_of is not None:
        detail -= fields[:, 4]
        detail += q[ys_i, xs_i]
    q[ys_i, xs_i] = detail
    return q, (ys_i, xs_i)
