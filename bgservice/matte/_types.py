"""Array aliases and small helpers shared by the matte modules."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]


def f32(x: Any) -> F32:
    """Narrow what cv2 returns (typed loosely) to float32 arrays, without copying."""
    out: F32 = np.asarray(x, dtype=np.float32)
    return out


def box(x: F32, r: int) -> F32:
    """Normalised box filter of radius r (window 2r+1), float32, reflected border."""
    return f32(cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT))


def resize(x: F32, w: int, h: int, interpolation: int = cv2.INTER_LINEAR) -> F32:
    return f32(cv2.resize(x, (w, h), interpolation=interpolation))


def sample_bilinear(field: F32, ys: F32, xs: F32) -> F32:
    """Bilinear samples of ``field`` [h,w] or [h,w,C] at float pixel coordinates (clamped to the edge).

    Returns [K] or [K,C]. ``ys``/``xs`` are modified (clamped) in place.
    """
    h, w = field.shape[:2]
    np.clip(ys, 0.0, h - 1.0, out=ys)
    np.clip(xs, 0.0, w - 1.0, out=xs)
    y0 = ys.astype(np.intp)
    x0 = xs.astype(np.intp)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = ys - y0
    fx = xs - x0
    if field.ndim == 3:
        fy = fy[:, None]
        fx = fx[:, None]
    top = field[y0, x0] * (1.0 - fx) + field[y0, x1] * fx
    bot = field[y1, x0] * (1.0 - fx) + field[y1, x1] * fx
    return f32(top * (1.0 - fy) + bot * fy)


def full_to_work_coords(idx: npt.NDArray[np.intp], full: int, work: int) -> F32:
    """Pixel-centre-aligned coordinate of full-resolution pixel indices on a ``work``-sized axis."""
    return f32((idx.astype(np.float32) + np.float32(0.5)) * np.float32(work / full) - np.float32(0.5))
