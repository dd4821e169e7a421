"""Array aliases and small helpers shared by the matte modules."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]
Idx = npt.NDArray[np.intp]

_REMAP_COLS = 4096  # cv2.remap wants both map dimensions under SHRT_MAX


def f32(x: Any) -> F32:
    """Narrow what cv2 returns (typed loosely) to float32 arrays, without copying."""
    out: F32 = np.asarray(x, dtype=np.float32)
    return out


def box(x: F32, r: int) -> F32:
    """Normalised box filter of radius r (window 2r+1), float32, reflected border."""
    return f32(cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT))


def resize(x: F32, w: int, h: int, interpolation: int = cv2.INTER_LINEAR) -> F32:
    return f32(cv2.resize(x, (w, h), interpolation=interpolation))


def _records(a: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
    """A contiguous [..., C] array seen as one record of C items per pixel ([P] of a C-item void type), or
    None where that view is impossible. numpy gathers and scatters whole records several times faster
    than rows of a 2-D array (np.take on [P,3] uint8 ~3 ms, ``a[idx] = v`` ~13 ms; as records ~3 ms)."""
    if a.ndim < 2 or not a.flags.c_contiguous:
        return None
    return a.reshape(-1).view(np.dtype((np.void, a.shape[-1] * a.itemsize)))


def gather(image: npt.NDArray[Any], flat: Idx) -> npt.NDArray[Any]:
    """The pixels at ``flat`` (indices into the [H*W] pixel grid) of ``image`` [H,W] or [H,W,C]: [k] or
    [k,C], a new array."""
    if image.ndim == 2:
        return np.take(image.reshape(-1), flat)
    rec = _records(image)
    if rec is None:
        return np.take(image.reshape(-1, image.shape[2]), flat, axis=0)
    out: npt.NDArray[Any] = np.take(rec, flat).view(image.dtype).reshape(-1, image.shape[2])
    return out


def scatter(image: npt.NDArray[Any], flat: Idx, values: npt.NDArray[Any]) -> None:
    """``image``'s pixels at ``flat`` = ``values`` ([k] or [k,C] of the image's dtype); ``image`` must be
    C-contiguous."""
    if image.ndim == 2:
        image.reshape(-1)[flat] = values
        return
    rec = _records(image)
    vals = np.ascontiguousarray(values, dtype=image.dtype)
    packed = _records(vals) if vals.shape == (flat.size, image.shape[2]) else None
    if rec is None or packed is None:
        image.reshape(-1, image.shape[2])[flat] = values
        return
    np.put(rec, flat, packed)


class Band:
    """Full-resolution pixels covered by a set of work-grid pixels, and where they sit on the work grid.

    A full-resolution row Y belongs to work row ``floor(Y * hs / h)`` (same for columns), so every work
    pixel owns a block of about s x s full-resolution pixels. ``rows``/``cols`` index the full frame;
    ``map_x``/``map_y`` are their pixel-centre-aligned work-grid coordinates, laid out for cv2.remap.
    """

    def __init__(self, work_mask: npt.NDArray[np.uint8] | Bool, full_hw: tuple[int, int]) -> None:
        h, w = full_hw
        hs, ws = work_mask.shape
        wy, wx = np.nonzero(work_mask)
        # first full-resolution row/column of each work row/column: ceil(y * h / hs)
        y_start = (np.arange(hs + 1, dtype=np.intp) * h + hs - 1) // hs
        x_start = (np.arange(ws + 1, dtype=np.intp) * w + ws - 1) // ws
        ny = np.diff(y_start)[wy]
        nx = np.diff(x_start)[wx]
        # every (dy, dx) offset inside each work pixel's block, ordered offset-major (dy, then dx, then
        # work pixel) as one broadcast instead of a Python loop over the offsets
        dy = np.arange(int(ny.max(initial=0)), dtype=np.intp)[:, None, None]
        dx = np.arange(int(nx.max(initial=0)), dtype=np.intp)[None, :, None]
        keep = (dy < ny[None, None, :]) & (dx < nx[None, None, :])
        self.rows: Idx = np.broadcast_to(y_start[wy][None, None, :] + dy, keep.shape)[keep]
        self.cols: Idx = np.broadcast_to(x_start[wx][None, None, :] + dx, keep.shape)[keep]
        # flat indices into an [h*w] / [h*w, C] view: ~4x faster to gather than (rows, cols) pairs
        self.flat: Idx = self.rows * w + self.cols
        k = self.rows.size
        self.size = k
        padded = -(-max(k, 1) // _REMAP_COLS) * _REMAP_COLS
        my = np.zeros(padded, np.float32)
        mx = np.zeros(padded, np.float32)
        my[:k] = (self.rows.astype(np.float32) + np.float32(0.5)) * np.float32(hs / h) - np.float32(0.5)
        mx[:k] = (self.cols.astype(np.float32) + np.float32(0.5)) * np.float32(ws / w) - np.float32(0.5)
        self.map_y = my.reshape(-1, _REMAP_COLS)
        self.map_x = mx.reshape(-1, _REMAP_COLS)

    @classmethod
    def from_full(cls, full_mask: Bool) -> Band:
        """Band of a full-resolution mask (work grid = full grid)."""
        h, w = full_mask.shape
        return cls(full_mask, (h, w))

    def take(self, image: npt.NDArray[Any], index: Idx | None = None) -> npt.NDArray[Any]:
        """``image[rows, cols]`` for the band's pixels (or the band's ``index``-th ones), [k] or [k, C]."""
        return gather(image, self.flat if index is None else self.flat[index])

    def put(self, image: npt.NDArray[Any], values: npt.NDArray[Any], index: Idx | None = None) -> None:
        """``image[rows, cols] = values`` for the band's pixels (or the band's ``index``-th ones)."""
        if not image.flags.c_contiguous:  # reshape would copy: write through (rows, cols) instead
            rows, cols = (self.rows, self.cols) if index is None else (self.rows[index], self.cols[index])
            image[rows, cols] = values
            return
        scatter(image, self.flat if index is None else self.flat[index], values)

    def sample(self, field: F32) -> F32:
        """Bilinear samples of a work-grid ``field`` [hs,ws] or [hs,ws,C] (C <= 4) at the band pixels."""
        out = f32(cv2.remap(field, self.map_x, self.map_y, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE))
        if field.ndim == 3:
            return out.reshape(-1, field.shape[2])[: self.size]
        return out.reshape(-1)[: self.size]
