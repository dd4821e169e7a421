"""Foreground colour estimation by blur fusion (Forte & Pitié, "Approximate Fast Foreground Colour
Estimation", ICIP 2021): two passes, box radius 90 then 6, float32.

Where alpha is 1 the estimate is the frame itself, and where it is 0 it does not matter (it is composited
away), so the per-pixel result is only computed where 0 < alpha < 1. The box-blurred local foreground
and background means (``blurred_F``, ``blurred_B``) are smooth fields: both passes run on a reduced copy of
the frame (radii scaled with it) and the fields are sampled bilinearly at the uncertain pixels, where the
final estimate ``F = F_bar + a (I - a F_bar - (1 - a) B_bar)`` uses the full-resolution pixel ``I``.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from bgservice.matte._types import F32, U8, Bool, f32, full_to_work_coords, resize, sample_bilinear
from bgservice.matte._types import box as _box

_EPS = np.float32(1e-5)


def blur_fusion_fields(image: F32, alpha: F32, r1: int, r2: int) -> tuple[F32, F32]:
    """The two-pass blur-fusion fields (F_bar, B_bar) of the second pass, float32 [h,w,3].

    image: float32 [h,w,3] 0..1; alpha: float32 [h,w]. Radii in pixels of this (possibly reduced) size.
    """
    a = alpha[:, :, None]
    one_minus = 1.0 - alpha
    b_alpha = _box(alpha, r1)[:, :, None]
    b_fa = _box(image * a, r1)
    f_bar = b_fa / (b_alpha + _EPS)
    b_bar = _box(image * one_minus[:, :, None], r1) / ((1.0 - b_alpha) + _EPS)
    f1 = f_bar + a * (image - a * f_bar - (1.0 - a) * b_bar)
    np.clip(f1, 0.0, 1.0, out=f1)
    b_alpha2 = _box(alpha, r2)[:, :, None]
    f_bar2 = _box(f1 * a, r2) / (b_alpha2 + _EPS)
    b_bar2 = _box(b_bar * one_minus[:, :, None], r2) / ((1.0 - b_alpha2) + _EPS)
    return f_bar2, b_bar2


def estimate_foreground(frame: U8, alpha: F32, out: U8, *, work_scale: float = 1.0,
                        radii: tuple[int, int] = (90, 6),
                        band: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]] | None = None) -> int:
    """Write the blur-fusion foreground of ``frame`` into ``out`` (uint8 [H,W,3]) where 0 < alpha < 1.

    ``out`` must already hold the frame (pixels outside the band are left as they are: where alpha is 1
    the estimate is the frame itself). ``work_scale`` >= 1 is the reduction of the fields' resolution.
    ``band``: (rows, cols) of the pixels to compute, if the caller knows a superset of 0 < alpha < 1
    (saves a pass over the frame). Returns the number of pixels computed.
    """
    if band is None:
        inside: Bool = (alpha > 0.0) & (alpha < 1.0)
        ys_i, xs_i = np.nonzero(inside)
    else:
        ys_i, xs_i = band
    k = int(ys_i.size)
    if k == 0:
        return 0
    h, w = alpha.shape
    s = max(1.0, float(work_scale))
    r1 = max(1, round(radii[0] / s))
    r2 = max(1, round(radii[1] / s))
    if s > 1.0:
        hs, ws = max(1, round(h / s)), max(1, round(w / s))
        small = f32(cv2.resize(frame, (ws, hs), interpolation=cv2.INTER_AREA).astype(np.float32))
        small *= np.float32(1.0 / 255.0)
        a_small = resize(alpha, ws, hs, cv2.INTER_AREA)
        f_bar, b_bar = blur_fusion_fields(small, a_small, r1, r2)
        ys = full_to_work_coords(ys_i, h, hs)
        xs = full_to_work_coords(xs_i, w, ws)
        fb = sample_bilinear(f_bar, ys.copy(), xs.copy())
        bb = sample_bilinear(b_bar, ys, xs)
    else:
        img = frame.astype(np.float32)
        img *= np.float32(1.0 / 255.0)
        f_bar, b_bar = blur_fusion_fields(img, alpha, r1, r2)
        fb = f_bar[ys_i, xs_i]
        bb = b_bar[ys_i, xs_i]
    a = alpha[ys_i, xs_i][:, None]
    i = frame[ys_i, xs_i].astype(np.float32) * np.float32(1.0 / 255.0)
    f = fb + a * (i - a * fb - (1.0 - a) * bb)
    np.clip(f, 0.0, 1.0, out=f)
    out[ys_i, xs_i] = (f * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return k
