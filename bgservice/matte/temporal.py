"""Temporal smoothing of low-resolution masks over a finite, symmetric window of neighbour frames.

For each frame t the smoothed mask is a per-pixel weighted mean of the masks t-R..t+R. A neighbour's
weight falls off with how much its mask differs from frame t's (a moving arm or head changes the mask by
a lot: weight ~0, so no ghost) and with how much the blurred frame itself changed at that pixel (motion
the mask has not caught up with). Small differences, which are the model's flicker on a still edge, are
averaged away. Only frames inside the window are used, so the result for a frame does not depend on
where a video is cut into shards, as long as R context frames are supplied on each side.
"""

from __future__ import annotations

import numpy as np

from bgservice.matte._types import F32


def temporal_smooth(masks: F32, guides: F32, index: int, radius: int, sigma_mask: float,
                    sigma_image: float) -> F32:
    """The smoothed mask of frame ``index``.

    masks:  float32 [M,h,w] low-resolution masks of consecutive frames (0..1).
    guides: float32 [M,h,w] the frames, grey, blurred, 0..1, same size (the motion cue).
    Frames outside 0..M-1 are simply absent (the start or end of the video).
    """
    lo = max(0, index - radius)
    hi = min(masks.shape[0], index + radius + 1)
    m0 = masks[index]
    g0 = guides[index]
    inv_m = np.float32(-1.0 / (sigma_mask * sigma_mask))
    inv_g = np.float32(-1.0 / (sigma_image * sigma_image))
    acc = m0.copy()
    wsum = np.ones_like(m0)
    for j in range(lo, hi):
        if j == index:
            continue
        dm = masks[j] - m0
        dg = guides[j] - g0
        w = np.exp(dm * dm * inv_m + dg * dg * inv_g)
        acc += w * masks[j]
        wsum += w
    out: F32 = acc / wsum
    return out
