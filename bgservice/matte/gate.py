"""The person-presence gate and the fast mode's matting prior: pure functions on low-resolution masks.

- :func:`person_evidence`: does a frame hold a person? The main mask and a second opinion from another
  model family must agree wherever they mark a noticeable area: each one's > 0.5 mask at least 30 %
  inside the other's. Measured on the tuning set's person-free pans: the Selfie ensemble calls a coffee
  cup "person" (54-70 % of the frame) where MODNet sees 0-6 % (0-10 % of Selfie's mask inside MODNet's),
  and MODNet calls a cat "person" (85-97 %) where Selfie sees 2-27 % (2-28 % of MODNet's inside
  Selfie's); with a real person in the frame both shares are 0.33-1.0 (talking heads 0.96-1.0; an
  over-the-shoulder view 0.33-0.63). Small full-body subjects
  MODNet (a portrait model) misses are caught by the caller's second test, MediaPipe Pose's presence score.
- :func:`hold`: hysteresis in time -- a frame counts as "person" while any frame within +-H does, so an
  occluder passing over a person for up to 2H frames does not blank them out.
- :func:`apply_prior`: multiplies a mask by a grown, feathered copy of the prior's person mask.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from bgservice.matte._types import F32, resize


def person_evidence(main: F32, other: F32, *, agreement: float, min_area: float) -> bool:
    """True when the two low-resolution masks agree on a person -- each model's > 0.5 mask lies at least
    ``agreement`` inside the other's -- or mark less than ``min_area`` of the frame between them (nothing
    to gate); False when they disagree (the caller may still ask the pose model)."""
    h, w = main.shape
    a = main > 0.5
    b = (resize(other, w, h) if other.shape != main.shape else other) > 0.5
    union = int(np.count_nonzero(a | b))
    if union < min_area * h * w:
        return True
    inter = int(np.count_nonzero(a & b))
    return inter >= agreement * max(int(np.count_nonzero(a)), int(np.count_nonzero(b)))


def hold(present: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """``present`` dilated in time by ``radius`` frames on each side (within the frames given)."""
    if radius <= 0 or present.all() or not present.any():
        return present.copy()
    out = present.copy()
    for d in range(1, radius + 1):
        out[d:] |= present[:-d]
        out[:-d] |= present[d:]
    return out


def apply_prior(mask: F32, prior: F32, threshold: float, grow: float, min_area: float) -> None:
    """``mask *= feathered(dilate(prior > threshold))`` in place, on the mask's grid: 1 on and near the
    prior's person (within ``grow`` x the grid's diagonal), falling to 0 over as much again beyond.
    Nothing changes where the prior's person covers under ``min_area`` of the frame: MODNet, a portrait
    model, misses small full-body subjects the Selfie model and the pose crop pass find."""
    h, w = mask.shape
    p = resize(prior, w, h) if prior.shape != mask.shape else prior
    r = max(1, round(grow * float(np.hypot(h, w))))
    core = (p > threshold).astype(np.uint8)
    if np.count_nonzero(core) < min_area * h * w:
        return
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    grown = cv2.dilate(core, kernel).astype(np.float32)
    soft = cv2.blur(grown, (2 * r + 1, 2 * r + 1))
    np.minimum(soft * np.float32(2.0), np.float32(1.0), out=soft)
    mask *= soft


def keep_prior_components(mask: F32, prior: F32, min_area: float, level: float = 0.1) -> None:
    """Zero the connected parts of ``mask`` (> ``level``) that the prior's person (> 0.5) does not touch,
    in place -- the subject-connectedness prior: another person in the background footage, whom the
    Selfie models segment and MODNet (portrait-trained) leaves out. Nothing changes where the prior's person
    covers under ``min_area`` of the frame (small full-body subjects MODNet misses)."""
    h, w = mask.shape
    p = resize(prior, w, h) if prior.shape != mask.shape else prior
    core = p > 0.5
    if np.count_nonzero(core) < min_area * h * w:
        return
    n, labels = cv2.connectedComponents((mask > level).astype(np.uint8), connectivity=8)
    if n <= 2:
        return
    hit = np.unique(labels[core])
    drop = ~np.isin(labels, hit) & (labels > 0)
    mask[drop] = 0.0
