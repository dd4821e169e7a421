"""Foreground colour estimation by blur fusion (Forte & Pitié, "Approximate Fast Foreground Colour
Estimation", ICIP 2021): two passes, box radius 90 then 6, float32.

Where alpha is 1 the estimate is the frame itself, and where it is 0 it does not matter (it is composited
away), so the per-pixel result is only computed in the matte's uncertain band. The box-blurred local
foreground and background means (``F_bar``, ``B_bar``) are smooth fields: both passes run on the small
work-grid copy of the frame (radii scaled with it), and the fields are sampled bilinearly at the band's
pixels, where ``F = F_bar + a (I - a F_bar - (1 - a) B_bar)`` uses the full-resolution pixel ``I``.
"""

from __future__ import annotations

import numpy as np

from bgservice.matte._types import F32, U8, Band, box

_EPS = np.float32(1e-5)


def blur_fusion_fields(image: F32, alpha: F32, r1: int, r2: int) -> tuple[F32, F32]:
    """The two-pass blur-fusion fields (F_bar, B_bar) of the second pass, float32 [h,w,3].

    image: float32 [h,w,3] 0..1; alpha: float32 [h,w]. Radii in pixels of this (possibly reduced) grid.
    """
    a = alpha[:, :, None]
    one_minus = 1.0 - a
    b_alpha = box(alpha, r1)[:, :, None]
    f_bar = box(image * a, r1) / (b_alpha + _EPS)
    b_bar = box(image * one_minus, r1) / ((1.0 - b_alpha) + _EPS)
    f1 = f_bar + a * (image - a * f_bar - one_minus * b_bar)
    np.clip(f1, 0.0, 1.0, out=f1)
    b_alpha2 = box(alpha, r2)[:, :, None]
    f_bar2 = box(f1 * a, r2) / (b_alpha2 + _EPS)
    b_bar2 = box(b_bar * one_minus, r2) / ((1.0 - b_alpha2) + _EPS)
    return f_bar2, b_bar2


def estimate_foreground(frame: U8, alpha: F32, out: U8, band: Band, image_small: F32, alpha_small: F32,
                        *, scale: float, radii: tuple[int, int] = (90, 6)) -> None:
    """Write the blur-fusion foreground of ``frame`` into ``out`` (uint8 [H,W,3]) at the band's pixels.

    ``out`` must already hold the frame (outside the band alpha is 0 or 1: where it is 1 the estimate is
    the frame itself). ``image_small`` (float32 [h,w,3] 0..1) and ``alpha_small`` are the frame and the
    matte on the work grid, ``scale`` = full width / work width (radii are divided by it).
    """
    if band.size == 0:
        return
    s = max(1.0, float(scale))
    r1 = max(1, round(radii[0] / s))
    r2 = max(1, round(radii[1] / s))
    # only the band's pixels with 0 < alpha < 1 (where alpha is 1 the estimate is the frame, which ``out``
    # already holds; where it is 0 the colour is composited away)
    a_band = band.take(alpha)
    keep = np.flatnonzero((a_band > 0.0) & (a_band < 1.0))
    if keep.size == 0:
        return
    f_bar, b_bar = blur_fusion_fields(image_small, alpha_small, r1, r2)
    # np.take along rows: several times faster than ``x[keep]`` on [k,3]; the maths in place (the band
    # is up to a third of a 1080p frame: fresh temporaries cost page faults)
    fb = np.take(band.sample(f_bar), keep, axis=0)
    bb = np.take(band.sample(b_bar), keep, axis=0)
    a = a_band[keep][:, None]
    f = band.take(frame, keep).astype(np.float32)
    f *= np.float32(1.0 / 255.0)
    # F = F_bar + a (I - a F_bar - (1 - a) B_bar) = F_bar + a (I - B_bar - a (F_bar - B_bar))
    f -= bb
    np.subtract(fb, bb, out=bb)
    bb *= a
    f -= bb
    f *= a
    f += fb
    np.clip(f, 0.0, 1.0, out=f)
    f *= np.float32(255.0)
    f += np.float32(0.5)
    band.put(out, f.astype(np.uint8), keep)
