"""The composite: ``fg * alpha + plate * (1 - alpha)``, float32 maths, uint8 out."""

from __future__ import annotations

import cv2
import numpy as np

from bgservice.matte._types import F32, U8


def composite(fg: U8, alpha: F32, plate: U8, *, out: U8 | None = None) -> U8:
    """Composite foreground frames over one background plate.

    fg: uint8 [N,H,W,3]; alpha: float32 [N,H,W] in 0..1; plate: uint8 [H,W,3]. Returns uint8 [N,H,W,3],
    rounded to nearest. cv2.blendLinear computes exactly ``fg * w1 + plate * w2`` in float32 per pixel.
    ``out``: where to write (may be ``fg`` itself, when the caller no longer needs it: on this machine
    first-touch page faults of a fresh 1080p frame cost more than the blend).
    """
    if fg.ndim != 4 or fg.shape[-1] != 3:
        raise ValueError(f"fg must be [N,H,W,3], got {fg.shape}")
    if alpha.shape != fg.shape[:3]:
        raise ValueError(f"alpha {alpha.shape} does not match fg {fg.shape}")
    if plate.shape != fg.shape[1:]:
        raise ValueError(f"plate {plate.shape} does not match the frame size {fg.shape[1:]}")
    if out is None:
        out = np.empty_like(fg)
    elif out.shape != fg.shape or out.dtype != np.uint8:
        raise ValueError(f"out {out.shape} {out.dtype} does not match fg {fg.shape}")
    plate_c = np.ascontiguousarray(plate)
    for i in range(fg.shape[0]):
        a = np.ascontiguousarray(alpha[i], dtype=np.float32)
        cv2.blendLinear(fg[i], plate_c, a, 1.0 - a, dst=out[i])
    return out
