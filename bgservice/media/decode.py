"""Decode the trimmed window of a video into shards of RGB frames with PyAV, streaming, in bounded chunks.

Frames are selected by **timestamp**: the exact presentation timestamps come from a demux pass
(:mod:`bgservice.media.timing`), and a frame belongs to the window when its time is in ``[start, end)``.
The reader seeks to the keyframe at or before the window's first frame, decodes forward, keeps the
decoded frames whose pts are the window's timestamps and stops after the last one. ``Shard.pts`` are
those exact timestamps in ``info.time_base`` units, shifted so that the window's first frame is at 0 --
VFR timing survives untouched.

Why PyAV and not decord: decord's VideoReader keeps decoding the rest of the video into memory in a
background thread after ``get_batch`` whenever the consumer is slower than the decoder (always: the
matte is far slower), e.g. 1.06 GB resident for the 795-frame 768x576 vtest clip. A streaming decode
holds what the reader asks for and nothing more (see tests/test_media.py, memory test).

Orientation: PyAV does not autorotate; the reader applies the display matrix (``info.orientation``,
rotation and mirroring) to the decoded frames, like ffmpeg's autorotate. Then the odd-size rule (see
:mod:`bgservice.media.probe`): the last column / row of an odd-sized frame is cropped. Anamorphic video
is not resampled (the pixel aspect ratio is carried to the output).

Colour: YUV -> RGB by swscale with the matrix and range the stream is tagged with; untagged HD (coded
width > 1024 or height > 576) as BT.709, untagged SD as BT.601, like ffmpeg and browsers.
For 8-bit 4:2:0 / 4:2:2 (nearly everything) swscale's fast converter is used: nearest-neighbour chroma,
~1 ms per 1080p frame, but it truncates instead of rounding (RGB 0.5-1.5 levels low, never high);
:data:`TRUNCATION_LUT` adds the level back (decord used the same converter and needed the same fix).
swscale's accurate path (ACCURATE_RND + FULL_CHR_H_INT) rounds correctly and upsamples chroma
bilinearly at the MPEG sites (the textbook conversion) but costs 5-8x more (8-10 ms per 1080p frame),
so it is used only for the other pixel formats (10-bit, 4:4:4, NV12, RGB...), where the fast converter
does not apply and swscale's default path is biased by 1-2 levels. Numbers are in tests/test_media.py
(colour patches, 10-bit HEVC against a float reference, real footage).
Not handled: HDR (BT.2020 + PQ/HLG) is converted with the BT.2020 matrix but not tone-mapped.

Context frames (``before`` / ``after``) come from inside the window only: the trimmed video is the
whole world for the stages downstream.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import TracebackType

import av
import av.container
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from bgservice.errors import DecodeFailed, InvalidTrim
from bgservice.media.container import open_input
from bgservice.media.timing import FrameTimes, describe, frame_times, pick_video_stream
from bgservice.media.types import Shard, TrimWindow, VideoInfo

Orientation = tuple[int, int, int, int]
SPARE_BLOCKS = 2  # shard arrays a reader keeps for reuse (see FrameReader.recycle)

# swscale's fast YUV -> RGB converter (nearest chroma) takes these formats; it truncates: measured against
# an exact float conversion of the same YUV planes its RGB is 0.4-1.5 levels low (R/G/B -0.97/-1.46/-0.97
# on the juggle clip, -0.93/-1.41/-0.99 on Tears of Steel), never high.
FAST_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p"})
# Adding one level (0 and 255 kept, as truncation cannot have moved them up) brings the mean error to
# ~0.3-0.5 and the bias near 0.
TRUNCATION_LUT: np.ndarray = np.array([0, *range(2, 256), 255], dtype=np.uint8)
# Every other format: swscale's accurate path, correctly rounded (errors within +-0.5 level on flat
# colours for 10-bit 4:2:0/4:2:2, 4:4:4 and NV12, where the default path is 1-2 levels off), chroma
# upsampled bilinearly at the MPEG sites (within 0.15 level of a float reference on 10-bit testsrc2;
# POINT instead of BILINEAR picks the chroma sample one pixel to the right: 3 levels off at edges).
ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

_MATRICES = {
    "bt709": Colorspace.ITU709,
    "bt470bg": Colorspace.ITU601,
    "smpte170m": Colorspace.ITU601,
    "fcc": Colorspace.FCC,
    "smpte240m": Colorspace.SMPTE240M,
    "bt2020nc": Colorspace.BT2020,
    "bt2020c": Colorspace.BT2020,
}


def is_hd(coded_width: int, coded_height: int) -> bool:
    """ffmpeg / browser guess for untagged video: HD (BT.709) above SD sizes."""
    return coded_width > 1024 or coded_height > 576


def source_matrix(info: VideoInfo) -> Colorspace:
    """The YCbCr matrix to decode with: the tagged one, else BT.709 for HD and BT.601 for SD."""
    tagged = _MATRICES.get(info.colorspace)
    if tagged is not None:
        return tagged
    coded_w, coded_h = (info.height, info.width) if info.orientation[0] == 0 else (info.width, info.height)
    return Colorspace.ITU709 if is_hd(coded_w, coded_h) else Colorspace.ITU601


@dataclass(frozen=True)
class _Conversion:
    """How frames of one pixel format become RGB."""

    colorspace: Colorspace
    color_range: ColorRange
    interpolation: Interpolation | None  # None: swscale's default (its fast converter)
    lut: bool  # add back the level the fast converter truncates


def conversion_for(info: VideoInfo, pix_fmt: str) -> _Conversion:
    """Matrix, range and swscale path for decoded frames of ``pix_fmt``."""
    full = info.color_range == "pc" or pix_fmt.startswith("yuvj")  # yuvj* formats are full range by name
    rng = ColorRange.JPEG if full else ColorRange.MPEG
    if pix_fmt in FAST_FORMATS:
        return _Conversion(source_matrix(info), rng, None, True)
    return _Conversion(source_matrix(info), rng, ACCURATE, False)


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


class FrameReader:
    """Reads the frames of ``window`` from ``path`` (one PyAV input container, decoded as a stream), in
    display orientation, cropped to ``info.out_width`` x ``info.out_height``, RGB uint8, with exact
    timestamps.

    ``len(reader)``: frames in the window (known before decoding). ``reader.end_pts``: where the last
    frame ends (pts units, relative to the first frame) -- pass it to VideoWriter so the video lasts
    exactly as long as the audio cut by :func:`bgservice.media.ffmpeg.finalize`.
    ``reader.held_frames``: window timestamps the decoder produced no picture for (a damaged stream),
    filled with the previous picture so that frame count and timing stay those of the source.
    """

    def __init__(self, path: str, info: VideoInfo, window: TrimWindow) -> None:
        self.info = info
        self.window = window
        self._path = path
        self.held_frames = 0
        self._spare: list[np.ndarray] = []  # shard arrays handed back by recycle(), reused by shards()
        self._spare_lock = threading.Lock()
        self._container: av.container.InputContainer | None = self._open()
        try:
            times = frame_times(path)
            i0, i1 = times.window(window.start, window.end)
            if i1 <= i0:
                raise InvalidTrim(f"no frame between {window.start:g} s and {window.end:g} s")
            self._times: FrameTimes = times
            self._first = i0
            self._count = i1 - i0
            rel = times.rel
            self.pts: np.ndarray = (rel[i0:i1] - rel[i0]).astype(np.int64)
            self.end_pts: int = times.window_end_units(i0, i1, window.end)  # > the last frame's pts
        except BaseException:
            self.close()
            raise

    def _open(self) -> av.container.InputContainer:
        container = open_input(self._path, error=DecodeFailed, what="cannot open the video")
        if pick_video_stream(container) is None:
            container.close()
            raise DecodeFailed("no video stream")
        return container

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the container (and its decoder threads). Idempotent."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()

    def _decoded(self, seek: bool) -> Generator[av.VideoFrame, None, None]:
        """Decoded frames from the keyframe at or before the window (``seek``) or from the start."""
        container = self._container
        if container is None:
            raise DecodeFailed("the reader is closed")
        stream = pick_video_stream(container)
        if stream is None:
            raise DecodeFailed("no video stream")
        stream.thread_type = "AUTO"
        if seek:
            # a format that cannot seek stays where it is (the start): frames before the window are
            # dropped anyway
            with contextlib.suppress(av.FFmpegError):
                container.seek(
                    int(self._times.pts[self._first]), stream=stream, backward=True, any_frame=False
                )
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as exc:
                raise DecodeFailed(f"decoding the video failed: {describe(exc, self._path)}") from exc
            yield frame

    def _window_frames(self) -> Generator[av.VideoFrame, None, None]:
        """Exactly one decoded frame per window timestamp, in order; stops after the window's last frame.

        Frames before the window (decoded from the keyframe on) and frames whose pts the demux pass did
        not list are dropped; a timestamp the decoder produced no picture for (a damaged stream) gets
        the previous picture again (the next one at the window's start), so count and timing hold."""
        targets = self._times.pts[self._first : self._first + self._count]
        n = self._count
        seek = self._first > 0
        while True:
            k = 0
            held: av.VideoFrame | None = None
            decoded = self._decoded(seek)
            try:
                for frame in decoded:
                    p = frame.pts
                    if p is None or p < targets[k]:
                        continue
                    if seek and held is None and p > targets[0]:
                        break  # the seek landed after the window's first frame: decode from the start
                    while k < n and targets[k] < p:
                        self.held_frames += 1
                        yield frame if held is None else held
                        k += 1
                    if k < n and targets[k] == p:
                        yield frame
                        k += 1
                    held = frame
                    if k >= n:
                        return
                else:
                    if held is None:
                        raise DecodeFailed("the decoder produced no picture in the window")
                    while k < n:  # the stream ended early (a damaged tail): hold the last picture
                        self.held_frames += 1
                        yield held
                        k += 1
                    return
            finally:
                decoded.close()
            self.close()
            self._container = self._open()
            seek = False

    def recycle(self, frames: np.ndarray) -> None:
        """Hand back a shard's ``frames`` array the caller is done with (written out, nothing else holds
        it): :meth:`shards` fills the next shards of that size into it instead of a fresh array (a fresh
        1080p frame costs ~2 ms of page faults on a 2-core machine). At most :data:`SPARE_BLOCKS` are
        kept; any thread may call this."""
        if frames.dtype != np.uint8 or not frames.flags.c_contiguous or not frames.flags.writeable:
            return
        with self._spare_lock:
            if len(self._spare) < SPARE_BLOCKS:
                self._spare.append(frames)

    def _block(self, shape: tuple[int, int, int, int]) -> np.ndarray:
        with self._spare_lock:
            for i, spare in enumerate(self._spare):
                if spare.shape == shape:
                    return self._spare.pop(i)
        return np.empty(shape, dtype=np.uint8)

    def shards(self, size: int, before: int = 0, after: int = 0) -> Iterator[Shard]:
        """Consecutive shards of ``size`` frames (the last one shorter), each with up to ``before`` /
        ``after`` context frames from the window.

        Frames are converted straight into the shard's array (no chunk is kept); ``after`` frames go
        into the next shard's array and are copied, ``before`` is a copy of the previous shard's tail
        taken before it is handed out. Held by the reader: about size + before + 2 * after frames."""
        if size < 1 or before < 0 or after < 0:
            raise ValueError("size must be >= 1, before/after >= 0")
        h, w = self.info.out_height, self.info.out_width
        n = self._count
        empty = np.empty((0, h, w, 3), dtype=np.uint8)
        frames = self._window_frames()
        convert = _Converter(self.info, self._path)
        blocks: dict[int, np.ndarray] = {}  # shard index -> its frames, being filled
        decoded = 0  # window frames converted so far

        def decode_to(stop: int) -> None:
            nonlocal decoded
            while decoded < stop:
                j, r = divmod(decoded, size)
                if j not in blocks:
                    blocks[j] = self._block((min(size, n - j * size), h, w, 3))
                convert(next(frames), blocks[j][r])
                decoded += 1

        def copy_rows(a: int, b: int) -> np.ndarray:
            """A copy of window frames [a, b) from the blocks not handed out yet."""
            if b <= a:
                return empty
            parts = [
                blocks[j][max(a - j * size, 0) : b - j * size] for j in range(a // size, (b - 1) // size + 1)
            ]
            return np.concatenate(parts)

        context = empty  # copy of the frames just before the current shard
        try:
            for index, start in enumerate(range(0, n, size)):
                stop = min(start + size, n)
                decode_to(min(n, stop + after))
                current = blocks.pop(index)
                after_frames = copy_rows(stop, min(n, stop + after))
                from_current = min(before, len(current))
                from_context = min(before, stop) - from_current
                next_context = np.concatenate(
                    [context[len(context) - from_context :], current[len(current) - from_current :]]
                )
                yield Shard(
                    index=index,
                    start=start,
                    frames=current,
                    pts=self.pts[start:stop].copy(),
                    before=context,
                    after=after_frames,
                )
                context = next_context
        finally:
            frames.close()


class _Converter:
    """Decoded frame -> RGB uint8 in display orientation, cropped to the output size, written in place."""

    def __init__(self, info: VideoInfo, path: str) -> None:
        self.info = info
        self.path = path
        self.reformatter = VideoReformatter()  # keeps its swscale context between frames
        self.conversion: _Conversion | None = None
        self.pix_fmt = ""

    def __call__(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        info = self.info
        if self.conversion is None or frame.format.name != self.pix_fmt:
            self.pix_fmt = frame.format.name
            self.conversion = conversion_for(info, self.pix_fmt)
        conv = self.conversion
        try:
            rgb = self.reformatter.reformat(
                frame,
                format="rgb24",
                src_colorspace=conv.colorspace,
                src_color_range=conv.color_range,
                interpolation=conv.interpolation,
                threads=1,  # swscale's slice threads cost more CPU than they save (~2 vs ~5 ms at 1080p)
            ).to_ndarray()
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeFailed(f"converting a frame to RGB failed: {describe(exc, self.path)}") from exc
        shown = apply_orientation(rgb[None], info.orientation)[0]
        h, w = out.shape[:2]
        if shown.shape[0] < h or shown.shape[1] < w:
            raise DecodeFailed(f"a frame of {shown.shape[1]}x{shown.shape[0]} in a {w}x{h} video")
        out[...] = shown[:h, :w]
        if conv.lut:
            cv2.LUT(out, TRUNCATION_LUT, dst=out)
