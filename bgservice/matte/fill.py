"""Fill the parts of an image a weight leaves out from their surroundings (push-pull, float32).

Used twice by the outputs: the blurred background fills the subject's area from the background around it
before blurring (so no subject colour and no sharp background smears into the blur), and transparent
outputs extend the subject's colours outwards under alpha = 0 (so chroma subsampling and an editor's
scaling never pull the old background's colour into the edge: no green fringe).

Push-pull (Gortler et al. 1996): average colour x weight and weight down a 2x pyramid until the holes are
covered, then pull back up, each level keeping its own colour where it has weight and taking the coarser
estimate where it has none. Holes of any size are filled; cost ~1.4x one pass over the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from bgservice.matte._types import F32, f32

_EPS = np.float32(1e-6)


def push_pull(image: F32, weight: F32) -> F32:
    """``image`` (float32 [h,w,C]) with every pixel of weight 0 filled from the weighted ones around it.

    ``weight``: float32 [h,w] in 0..1 (1 = keep). Pixels of weight 1 keep their value; with no weight
    anywhere the result is zeros."""
    if image.ndim != 3 or weight.shape != image.shape[:2]:
        raise ValueError(f"image [h,w,C] and weight [h,w] expected, got {image.shape} {weight.shape}")
    w0 = np.clip(weight, 0.0, 1.0).astype(np.float32)
    levels: list[tuple[F32, F32]] = [(f32(image * w0[:, :, None]), w0)]
    while min(levels[-1][1].shape) > 1 and float(levels[-1][1].min()) <= 0.0:
        c, w = levels[-1]
        h, wd = w.shape
        nh, nw = max(1, (h + 1) // 2), max(1, (wd + 1) // 2)
        c2 = f32(cv2.resize(c, (nw, nh), interpolation=cv2.INTER_AREA))
        w2 = f32(cv2.resize(w, (nw, nh), interpolation=cv2.INTER_AREA))
        if c2.ndim == 2:
            c2 = c2[:, :, None]
        levels.append((c2, w2))
    c, w = levels[-1]
    est = c / np.maximum(w, _EPS)[:, :, None]
    for c, w in reversed(levels[:-1]):
        h, wd = w.shape
        up = f32(cv2.resize(est, (wd, h), interpolation=cv2.INTER_LINEAR))
        if up.ndim == 2:
            up = up[:, :, None]
        own = c / np.maximum(w, _EPS)[:, :, None]
        # a pixel's confidence in its own average: full from half coverage up
        k = np.minimum(w * np.float32(2.0), np.float32(1.0))[:, :, None]
        est = own * k + up * (np.float32(1.0) - k)
    out: F32 = np.where(w0[:, :, None] >= 1.0, image, est).astype(np.float32)
    return out
