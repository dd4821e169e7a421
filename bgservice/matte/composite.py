"""Putting the subject over something: a plate (one, or one per frame), its own background blurred, or
nothing (RGBA with straight alpha, the alpha alone). float32 maths, uint8 out."""

from __future__ import annotations

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, f32
from bgservice.matte.fill import push_pull

# Transparent outputs: below this alpha a pixel's colour is the subject's colour extended outwards (it is
# invisible, but chroma subsampling and an editor's filtering mix it into the edge).
_CLEAR = np.float32(0.5 / 255.0)
# Blurred background: work-grid factor so that the blur's sigma there is about this many pixels.
_BLUR_SIGMA_SMALL = 3.0
# Blurred background: pixels whose work-grid alpha is above this are the subject (filled from around).
_SUBJECT_ALPHA = 0.01
# Transparent outputs: colours are extended on a grid this much smaller than the frame (they are smooth).
_EXTEND_LONG_SIDE = 320


def composite(fg: U8, alpha: F32, plate: U8, *, out: U8 | None = None) -> U8:
    """Composite foreground frames over a background plate: ``fg * alpha + plate * (1 - alpha)``.

    fg: uint8 [N,H,W,3]; alpha: float32 [N,H,W] in 0..1; plate: uint8 [H,W,3] (one for every frame) or
    [N,H,W,3] (one per frame: a video background). Returns uint8 [N,H,W,3], rounded to nearest.
    cv2.blendLinear computes exactly ``fg * w1 + plate * w2`` in float32 per pixel. ``out``: where to
    write (may be ``fg`` itself, when the caller no longer needs it: on this machine first-touch page
    faults of a fresh 1080p frame cost more than the blend).
    """
    if fg.ndim != 4 or fg.shape[-1] != 3:
        raise ValueError(f"fg must be [N,H,W,3], got {fg.shape}")
    if alpha.shape != fg.shape[:3]:
        raise ValueError(f"alpha {alpha.shape} does not match fg {fg.shape}")
    per_frame = plate.ndim == 4
    if (plate.shape != fg.shape) if per_frame else (plate.shape != fg.shape[1:]):
        raise ValueError(f"plate {plate.shape} does not match the frames {fg.shape}")
    if out is None:
        out = np.empty_like(fg)
    elif out.shape != fg.shape or out.dtype != np.uint8:
        raise ValueError(f"out {out.shape} {out.dtype} does not match fg {fg.shape}")
    plate_c = None if per_frame else np.ascontiguousarray(plate)
    for i in range(fg.shape[0]):
        a = np.ascontiguousarray(alpha[i], dtype=np.float32)
        p = np.ascontiguousarray(plate[i]) if plate_c is None else plate_c
        cv2.blendLinear(fg[i], p, a, 1.0 - a, dst=out[i])
    return out


def alpha_u8(alpha: F32) -> U8:
    """The matte as uint8 (0 = background, 255 = subject), rounded to nearest: [N,H,W,1]."""
    a = np.clip(alpha, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)
    out: U8 = a.astype(np.uint8)[..., None]
    return out


def blurred_background(frame: U8, alpha: F32, sigma: float) -> U8:
    """The frame's background blurred (Gaussian ``sigma`` px), the subject's area filled from its
    surroundings first: no subject colour and no sharp background in the blur around the subject.

    frame: uint8 [H,W,3]; alpha: float32 [H,W]. Runs on a grid reduced so that the blur is ~3 px there
    (the result is smooth: bilinear upsampling loses nothing visible)."""
    h, w = alpha.shape
    f = max(1.0, sigma / _BLUR_SIGMA_SMALL)
    sw, sh = max(1, round(w / f)), max(1, round(h / f))
    if (sw, sh) != (w, h):
        small = f32(cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA))
        a_small = f32(cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA))
    else:
        small, a_small = f32(frame), alpha
    # background weight: where no subject pixel reaches, the subject grown by one work pixel (a block of
    # ~f full pixels: the soft edge never counts as background)
    subject = cv2.dilate((a_small > _SUBJECT_ALPHA).astype(np.uint8), np.ones((3, 3), np.uint8))
    weight = (np.asarray(subject) == 0).astype(np.float32)
    filled = push_pull(small, weight)
    s = sigma / f
    if s > 0.05:
        filled = f32(cv2.GaussianBlur(filled, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT))
    if (sw, sh) != (w, h):
        filled = f32(cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR))
    out: U8 = np.clip(filled + np.float32(0.5), 0, 255).astype(np.uint8)
    return out


def composite_blurred(fg: U8, alpha: F32, frames: U8, sigma: float, *, out: U8 | None = None) -> U8:
    """The subject (``fg``, blur-fusion colours) over each frame's own background blurred."""
    plates = np.empty_like(frames)
    for i in range(frames.shape[0]):
        plates[i] = blurred_background(frames[i], alpha[i], sigma)
    return composite(fg, alpha, plates, out=out)


def extend_colours(fg: U8, alpha: F32) -> U8:
    """``fg`` with the pixels of alpha ~ 0 replaced by the subject's colours extended outwards (push-pull
    on a grid of long side ~320 px). The visible pixels are untouched."""
    h, w = alpha.shape
    clear = alpha < _CLEAR
    if not clear.any():
        return fg
    out = fg.copy()
    if clear.all():
        out[:] = 0
        return out
    f = max(1.0, max(h, w) / _EXTEND_LONG_SIDE)
    sw, sh = max(1, round(w / f)), max(1, round(h / f))
    small = f32(cv2.resize(fg, (sw, sh), interpolation=cv2.INTER_AREA))
    a_small = f32(cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA))
    # only confident subject colours are extended (soft edge pixels mix in the estimate's errors)
    weight = np.clip((a_small - np.float32(0.5)) * np.float32(2.0), 0.0, 1.0)
    if float(weight.max()) <= 0.0:
        weight = np.clip(a_small, 0.0, 1.0)
    filled = push_pull(small, weight)
    small_u8 = np.clip(filled + np.float32(0.5), 0, 255).astype(np.uint8)
    big = np.asarray(cv2.resize(small_u8, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    np.copyto(out, big, where=clear[:, :, None])
    return out


def to_rgba(fg: U8, alpha: F32) -> U8:
    """Straight-alpha RGBA frames for transparent outputs: RGB = the estimated foreground colours
    (blur fusion in the soft edge, the subject's colours extended under alpha = 0), A = the matte.

    fg: uint8 [N,H,W,3]; alpha: float32 [N,H,W]. Returns uint8 [N,H,W,4]."""
    if fg.ndim != 4 or fg.shape[-1] != 3 or alpha.shape != fg.shape[:3]:
        raise ValueError(f"fg [N,H,W,3] and alpha [N,H,W] expected, got {fg.shape} {alpha.shape}")
    out = np.empty((*fg.shape[:3], 4), np.uint8)
    out[..., 3:] = alpha_u8(alpha)
    for i in range(fg.shape[0]):
        out[i, :, :, :3] = extend_colours(fg[i], alpha[i])
    return out
