"""Putting the subject over something: a plate (one, or one per frame), its own background blurred, or
nothing (RGBA with straight alpha, the alpha alone). float32 maths, uint8 out."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from bgservice.matte._types import F32, U8, f32, gather, scatter
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


def shrink(image: np.ndarray, k: int) -> np.ndarray:
    """Area average over k x k blocks (the frame cropped to a multiple of k): OpenCV's fast integer path,
    several times cheaper than INTER_AREA by a fractional factor."""
    if k <= 1:
        return image
    h, w = image.shape[:2]
    sh, sw = max(1, h // k), max(1, w // k)
    if sh * k > h or sw * k > w:  # smaller than one block: a plain area resize
        return np.asarray(cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA))
    return np.asarray(cv2.resize(image[: sh * k, : sw * k], (sw, sh), interpolation=cv2.INTER_AREA))


def _grow(small: np.ndarray, w: int, h: int, k: int) -> U8:
    """The inverse of :func:`shrink` for a smooth image (float32 0..255): uint8, bilinear, back on the
    frame's pixel grid (the cropped remainder repeats the edge)."""
    small_u8 = np.clip(small + np.float32(0.5), 0, 255).astype(np.uint8)
    sh, sw = small_u8.shape[:2]
    if (sh, sw) == (h, w):
        return small_u8
    gh, gw = min(h, sh * k), min(w, sw * k)
    big = np.asarray(cv2.resize(small_u8, (gw, gh), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    if (gh, gw) != (h, w):
        big = np.asarray(cv2.copyMakeBorder(big, 0, h - gh, 0, w - gw, cv2.BORDER_REPLICATE), dtype=np.uint8)
    return big


def composite(fg: U8, alpha: F32, plate: U8, *, out: U8 | None = None) -> U8:
    """Composite foreground frames over a background plate: ``fg * alpha + plate * (1 - alpha)``.

    fg: uint8 [N,H,W,3]; alpha: float32 [N,H,W] in 0..1; plate: uint8 [H,W,3] (one for every frame) or
    [N,H,W,3] (one per frame: a video background). Returns uint8 [N,H,W,3], rounded to nearest.
    ``out``: where to write (may be ``fg`` itself, when the caller no longer needs it: on this machine
    first-touch page faults of a fresh 1080p frame cost more than the blend). Only the matte's uncertain
    band is blended in float32 (see :func:`_blend`).
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
        if out[i].flags.c_contiguous:
            _blend(fg[i], p, a, out[i])
        else:  # a strided view: OpenCV would write into a copy
            out[i] = cv2.blendLinear(fg[i], p, a, 1.0 - a)
    return out


def _blend(fg: U8, plate: U8, a: F32, out: U8) -> None:
    """``out = fg * a + plate * (1 - a)`` for one frame, rounded to nearest; ``out`` may be ``fg``.

    A matte is 0 or 1 almost everywhere (the uncertain band is a few % of a frame): masked copies there
    and the float maths only on the band's pixels, ~3x cheaper than cv2.blendLinear on every pixel."""
    one = cv2.compare(a, 1.0, cv2.CMP_GE)  # type: ignore[call-overload]  # a scalar is a cv::Scalar
    zero = cv2.compare(a, 0.0, cv2.CMP_LE)  # type: ignore[call-overload]
    band = cv2.bitwise_not(cv2.bitwise_or(one, zero))
    idx = _nonzero_flat(band.reshape(-1))
    f = gather(fg, idx).astype(np.float32)  # read before ``out`` (maybe ``fg``) is written
    w = gather(a, idx)[:, None]
    f *= w
    f += gather(plate, idx).astype(np.float32) * (np.float32(1.0) - w)
    if out.ctypes.data != fg.ctypes.data:
        np.copyto(out, fg)
    cv2.copyTo(plate, zero, out)
    np.rint(f, out=f)
    np.clip(f, 0.0, 255.0, out=f)
    scatter(out, idx, f.astype(np.uint8))


def _nonzero_flat(mask: U8) -> npt.NDArray[np.intp]:
    """``np.flatnonzero`` of a contiguous 1-D uint8 mask, scanning 8 bytes at a time (most are zero)."""
    m = mask.size - mask.size % 8
    words = np.flatnonzero(mask[:m].view(np.uint64))
    cand = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    found: npt.NDArray[np.intp] = cand[mask[cand] != 0]
    if m == mask.size:
        return found
    return np.concatenate([found, m + np.flatnonzero(mask[m:])])


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
    k = max(1, int(sigma / _BLUR_SIGMA_SMALL))
    small = f32(shrink(frame, k))
    a_small = f32(shrink(alpha, k))
    # background weight: where no subject pixel reaches, the subject grown by one work pixel (a block of
    # ~f full pixels: the soft edge never counts as background)
    subject = cv2.dilate((a_small > _SUBJECT_ALPHA).astype(np.uint8), np.ones((3, 3), np.uint8))
    weight = (np.asarray(subject) == 0).astype(np.float32)
    filled = push_pull(small, weight)
    s = sigma / k
    if s > 0.05:
        filled = f32(cv2.GaussianBlur(filled, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT))
    return _grow(filled, w, h, k)


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
    lowest, highest, _, _ = cv2.minMaxLoc(alpha)
    if lowest >= _CLEAR:
        return fg
    if highest < _CLEAR:
        return np.zeros_like(fg)
    k = max(1, round(max(h, w) / _EXTEND_LONG_SIDE))
    small = f32(shrink(fg, k))
    a_small = f32(shrink(alpha, k))
    # only confident subject colours are extended (soft edge pixels mix in the estimate's errors)
    weight = np.clip((a_small - np.float32(0.5)) * np.float32(2.0), 0.0, 1.0)
    if float(weight.max()) <= 0.0:
        weight = np.clip(a_small, 0.0, 1.0)
    big = _grow(push_pull(small, weight), w, h, k)
    # the visible pixels (alpha >= the threshold) come from fg: OpenCV's masked copy, ~10x numpy's
    visible = (alpha >= _CLEAR).view(np.uint8)
    out: U8 = np.asarray(cv2.copyTo(fg, visible, big))
    return out


def to_rgba(fg: U8, alpha: F32) -> U8:
    """Straight-alpha RGBA frames for transparent outputs: RGB = the estimated foreground colours
    (blur fusion in the soft edge, the subject's colours extended under alpha = 0), A = the matte.

    fg: uint8 [N,H,W,3]; alpha: float32 [N,H,W]. Returns uint8 [N,H,W,4]."""
    if fg.ndim != 4 or fg.shape[-1] != 3 or alpha.shape != fg.shape[:3]:
        raise ValueError(f"fg [N,H,W,3] and alpha [N,H,W] expected, got {fg.shape} {alpha.shape}")
    out = np.empty((*fg.shape[:3], 4), np.uint8)
    for i in range(fg.shape[0]):
        cv2.cvtColor(extend_colours(fg[i], alpha[i]), cv2.COLOR_RGB2RGBA, dst=out[i])
        out[i, :, :, 3] = alpha_u8(alpha[i : i + 1])[0, :, :, 0]
    return out
