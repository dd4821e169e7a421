"""Temporal smoothing of the work-size (guided-filtered) mattes over a finite window of frames.

For each frame t the smoothed mask is a per-pixel weighted mean of the masks t-R..t+R. A neighbour's
weight falls off with how much its mask differs from frame t's (a moving arm or head changes the mask by
a lot: weight ~0, so no ghost); small differences, which are the model's flicker on a still edge, are
averaged away. (A second cue, the change of the blurred frame, was tried and dropped: on moving
backgrounds it switches the smoothing off exactly at the edges, and it bought nothing on DAVIS.)
Only frames inside the window are used, so the result for a frame does not depend on where a video is
cut into shards, as long as R context frames are supplied on each side.
"""

from __future__ import annotations

import numpy as np

from bgservice.matte._types import F32


def temporal_smooth(masks: F32, index: int, radius: int, sigma: float) -> F32:
    """The smoothed mask of frame ``index``.

    masks: float32 [M,h,w] low-resolution masks of consecutive frames. Frames outside 0..M-1 are
    simply absent (the start or end of the video). Weight of frame j at pixel x:
    ``exp(-(m_j(x) - m_t(x))^2 / sigma^2)``.
    """
    lo = max(0, index - radius)
    hi = min(masks.shape[0], index + radius + 1)
    m0 = masks[index]
    inv = np.float32(-1.0 / (sigma * sigma))
    acc = m0.copy()
    wsum = np.ones_like(m0)
    for j in range(lo, hi):
        if j == index:
            continue
        d = masks[j] - m0
        wgt = np.exp(d * d * inv)
        acc += wgt * masks[j]
        wsum += wgt
    out: F32 = acc / wsum
    return out
