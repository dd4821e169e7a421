"""Decode the trimmed window of a video into shards of RGB frames with decord, in bounded chunks.

Frames are selected by **timestamp**: the exact presentation timestamps come from a demux pass
(:mod:`bgservice.media.timing`), and a frame belongs to the window when its time is in ``[start, end)``.
``Shard.pts`` are those exact timestamps in ``info.time_base`` units, shifted so that the window's first
frame is at 0 -- VFR timing survives untouched.

Orientation: decord2 already applies the rotation part of the display matrix (like ffmpeg's autorotate,
without mirroring); the reader applies what is left (a mirror flip), or the whole orientation if decord
did not rotate. Then the odd-size rule (see :mod:`bgservice.media.probe`): the last column / row of an
odd-sized frame is cropped.

Colour: decord converts YUV to RGB with the matrix and range the stream is tagged with, and with BT.601
when it is untagged. Browsers and ffmpeg assume BT.709 for untagged HD; for those sources (untagged,
coded width > 1024 or height > 576) a 3x3 transform (cv2.transform, float32) turns decord's BT.601 RGB
into BT.709 RGB. decord's conversion also truncates (RGB ~1 level low); :data:`TRUNCATION_LUT` adds
the level back. Numbers are in tests/test_media.py (colour-patch clips and real footage).
Not handled: HDR (BT.2020 + PQ/HLG) is converted with the BT.2020 matrix but not tone-mapped.

Context frames (``before`` / ``after``) come from inside the window only: the trimmed video is the
whole world for the stages downstream.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from types import TracebackType

import cv2
import decord
import numpy as np

from bgservice.errors import DecodeFailed, InvalidTrim
from bgservice.media.timing import describe, read_frame_times
from bgservice.media.types import Shard, TrimWindow, VideoInfo

Orientation = tuple[int, int, int, int]


def _ycbcr_matrix(kr: float, kb: float) -> np.ndarray:
    kg = 1.0 - kr - kb
    return np.array(
        [
            [kr, kg, kb],
            [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
            [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
        ]
    )


# RGB decoded with BT.601 -> the RGB the same YCbCr gives with BT.709 (ranges cancel out: same scaling)
BT601_TO_BT709_RGB: np.ndarray = (
    np.linalg.inv(_ycbcr_matrix(0.2126, 0.0722)) @ _ycbcr_matrix(0.299, 0.114)
).astype(np.float32)


# decord's YUV->RGB (swscale's fast path) truncates instead of rounding: measured against an exact float
# conversion of the same YUV planes, its RGB is 0.4-1.5 levels low (e.g. R/G/B -0.97/-1.46/-0.97 on the
# juggle clip, -0.93/-1.41/-0.99 on Tears of Steel), never high. Adding one level (0 and 255 kept, as
# truncation cannot have moved them up) brings the mean error to ~0.3-0.5 and the bias near 0.
TRUNCATION_LUT: np.ndarray = np.array([0, *range(2, 256), 255], dtype=np.uint8)


def is_hd(coded_width: int, coded_height: int) -> bool:
    """ffmpeg / browser guess for untagged video: HD (BT.709) above SD sizes."""
    return coded_width > 1024 or coded_height > 576


def needs_709_fix(info: VideoInfo) -> bool:
    """Untagged HD source: decord decodes with BT.601, players with BT.709."""
    coded_w, coded_h = (info.height, info.width) if info.orientation[0] == 0 else (info.width, info.height)
    return info.colorspace == "unknown" and is_hd(coded_w, coded_h)


def apply_orientation(frames: np.ndarray, o: Orientation) -> np.ndarray:
    """Apply a signed 2x2 orientation (a, b, c, d) to frames [N,H,W,C]: x = a*p + c*q, y = b*p + d*q."""
    a, b, c, d = o
    out = frames
    if a == 0:
        out = out.transpose(0, 2, 1, 3)
        flip_x, flip_y = c < 0, b < 0
    else:
        flip_x, flip_y = a < 0, d < 0
    if flip_x:
        out = out[:, :, ::-1]
    if flip_y:
        out = out[:, ::-1]
    return out


def _compose_residual(info: VideoInfo) -> Orientation:
    """Orientation still to apply after decord's rotation: D @ R^-1 (R: pure rotation decord applied)."""
    a, b, c, d = info.orientation
    dm = np.array([[a, c], [b, d]])
    rm = np.array([[a, -b], [b, a]])  # pure rotation with the same angle (what av_display_rotation_get sees)
    m = dm @ rm.T
    return (int(m[0, 0]), int(m[1, 0]), int(m[0, 1]), int(m[1, 1]))


def _stack(buf: list[np.ndarray], a: int, b: int, empty: np.ndarray) -> np.ndarray:
    return np.stack(buf[a:b]) if b > a else empty


class FrameReader:
    """Reads the frames of ``window`` from ``path`` (one decord.VideoReader), in display orientation,
    cropped to ``info.out_width`` x ``info.out_height``, RGB uint8, with exact timestamps.

    ``len(reader)``: frames in the window (known before decoding). ``reader.end_pts``: where the last
    frame ends (pts units, relative to the first frame) -- pass it to VideoWriter so the video lasts
    exactly as long as the audio cut by :func:`bgservice.media.ffmpeg.finalize`.
    """

    def __init__(self, path: str, info: VideoInfo, window: TrimWindow, *, chunk_frames: int) -> None:
        self.info = info
        self.window = window
        self._path = path
        self.chunk_frames = max(1, int(chunk_frames))
        try:
            self._vr: decord.VideoReader | None = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
        except Exception as exc:
            raise DecodeFailed(f"decord cannot open the video: {describe(exc, path)}") from exc
        try:
            times = read_frame_times(path)
            n_decord = len(self._vr)
            i0, i1 = times.window(window.start, window.end)
            if i1 <= i0:
                raise InvalidTrim(f"no frame between {window.start:g} s and {window.end:g} s")
            rel = times.rel
            if n_decord != len(times):
                # the demuxer and decord disagree on the frame list: fall back on decord's own times
                ts = np.asarray(self._vr.get_frame_timestamp(list(range(n_decord))))[:, 0].astype(np.float64)
                rel = np.round(ts / float(times.time_base)).astype(np.int64)
                i0 = int(np.searchsorted(rel, times.to_units(window.start) - 1e-6))
                i1 = int(np.searchsorted(rel, times.to_units(window.end) - 1e-6))
                if i1 <= i0:
                    raise InvalidTrim(f"no frame between {window.start:g} s and {window.end:g} s")
            self._first = i0
            self._count = i1 - i0
            self.pts: np.ndarray = (rel[i0:i1] - rel[i0]).astype(np.int64)
            self.end_pts: int = times.window_end_units(i0, i1, window.end)
            self.end_pts = max(self.end_pts, int(self.pts[-1]) + 1)
            self._orientation = self._decord_orientation()
            self._colour_fix = needs_709_fix(info)
        except BaseException:
            self.close()
            raise

    def _decord_orientation(self) -> Orientation:
        """What is left to apply to decord's frames to reach the display orientation."""
        assert self._vr is not None
        h, w = self._vr[0].shape[:2]
        self._vr.seek(0)
        info = self.info
        if info.orientation[0] == 0 and info.width != info.height and (w, h) == (info.height, info.width):
            return info.orientation  # decord did not rotate: apply all of it
        return _compose_residual(info)

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._vr = None  # decord frees the reader (and its decoder threads) when the object goes

    def _convert(self, batch: np.ndarray) -> np.ndarray:
        out = apply_orientation(batch, self._orientation)
        out = out[:, : self.info.out_height, : self.info.out_width]
        out = np.ascontiguousarray(out)
        n, h, w, _ = out.shape
        flat = out.reshape(n * h, w, 3)  # one OpenCV call for the whole chunk (a view, in place)
        cv2.LUT(flat, TRUNCATION_LUT, dst=flat)
        if self._colour_fix:
            cv2.transform(flat, BT601_TO_BT709_RGB, dst=flat)
        return out

    def chunks(self) -> Generator[np.ndarray, None, None]:
        """The window's frames in order, ``chunk_frames`` at a time (uint8 [n,H,W,3])."""
        if self._vr is None:
            raise DecodeFailed("the reader is closed")
        for lo in range(0, self._count, self.chunk_frames):
            hi = min(lo + self.chunk_frames, self._count)
            indices = list(range(self._first + lo, self._first + hi))
            try:
                batch = self._vr.get_batch(indices).asnumpy()
            except Exception as exc:
                raise DecodeFailed(
                    f"decoding frames {lo}..{hi - 1} of the window failed: {describe(exc, self._path)}"
                ) from exc
            yield self._convert(batch)

    def shards(self, size: int, before: int = 0, after: int = 0) -> Iterator[Shard]:
        """Consecutive shards of ``size`` frames (the last one shorter), each with up to ``before`` /
        ``after`` context frames from the window. Memory: about size + before + after + one chunk."""
        if size < 1 or before < 0 or after < 0:
            raise ValueError("size must be >= 1, before/after >= 0")
        h, w = self.info.out_height, self.info.out_width
        empty = np.empty((0, h, w, 3), dtype=np.uint8)
        source = self.chunks()
        buf: list[np.ndarray] = []  # frames base .. base + len(buf) - 1
        base = 0
        for index, start in enumerate(range(0, self._count, size)):
            stop = min(start + size, self._count)
            lo, hi = max(0, start - before), min(self._count, stop + after)
            while base + len(buf) < hi:
                buf.extend(next(source))
            del buf[: lo - base]
            base = lo

            yield Shard(
                index=index,
                start=start,
                frames=_stack(buf, start - base, stop - base, empty),
                pts=self.pts[start:stop].copy(),
                before=_stack(buf, lo - base, start - base, empty),
                after=_stack(buf, stop - base, hi - base, empty),
            )
        source.close()
