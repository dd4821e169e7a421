"""Encode frames with their timestamps into a video-only file, one codec per output format (PyAV):

==========  ==============================  ===========================  =============================
format      codec                           pixel format                 frames in
==========  ==============================  ===========================  =============================
``mp4``     H.264 High (libx264)            yuv420p, BT.709 limited      RGB [N,H,W,3]
``matte``   H.264 High (libx264)            yuv420p full range, Y = the  grey [N,H,W,1] (the alpha)
                                            alpha, chroma neutral (128)
``webm``    VP9 (libvpx-vp9)                yuva420p (RGBA in) or        RGBA [N,H,W,4] / RGB
                                            yuv420p, BT.709 limited
``mov``     ProRes 4444 (prores_ks)         yuva444p10le (RGBA in) or    RGBA [N,H,W,4] / RGB
                                            yuv444p10le, BT.709 limited
==========  ==============================  ===========================  =============================

VP9's quality follows the x264 CRF (``vp9 crf = 1.7 x crf``, 18 -> 31), realtime speed; ProRes is
intra-only and about 10x the size of H.264. VP9 keeps its alpha as a second VP9 stream in the WebM
BlockAdditional (what Chromium and Firefox play); decoding it back needs libvpx's decoder.

Timing: the stream's time base is the source's (``info.time_base``) and every frame keeps the pts it
was decoded with, so VFR input keeps its timing and 24000/1001 stays 24000/1001 with the same frame
count. Each frame lasts until the next one; the last one until ``end_pts`` (from
:attr:`bgservice.media.decode.FrameReader.end_pts`) when given, else as long as the one before it.

Colour: RGB -> YUV with the BT.709 matrix, limited range (swscale), and the stream is tagged BT.709
(matrix, primaries, transfer, range) so players do not guess.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from types import TracebackType

import av
import av.container
import av.video.stream
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from bgservice.errors import EncodeFailed
from bgservice.media.types import VideoInfo

_BT709 = 1  # AVCOL_SPC_BT709 / AVCOL_PRI_BT709 / AVCOL_TRC_BT709
_RANGE_TV = 1  # AVCOL_RANGE_MPEG
_RANGE_PC = 2  # AVCOL_RANGE_JPEG
VP9_CRF_PER_X264_CRF = 1.7

# format -> container of the video-only file
CONTAINERS = {"mp4": "mp4", "matte": "mp4", "webm": "webm", "mov": "mov"}


def _codec(fmt: str, channels: int, crf: int, preset: str) -> tuple[str, str, dict[str, str], str]:
    """(encoder, pixel format, options, input layout) for an output format and the frames' channels."""
    if fmt == "mp4" and channels == 3:
        return "libx264", "yuv420p", {"crf": str(crf), "preset": preset, "profile": "high"}, "rgb24"
    if fmt == "matte" and channels == 1:
        return "libx264", "yuv420p", {"crf": str(crf), "preset": preset, "profile": "high"}, "gray"
    if fmt == "webm" and channels in (3, 4):
        vp9_crf = str(min(63, round(crf * VP9_CRF_PER_X264_CRF)))
        options = {
            "crf": vp9_crf,
            "b": "0",
            "deadline": "realtime",
            "cpu-used": "8",
            "row-mt": "1",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
        }
        return "libvpx-vp9", "yuva420p" if channels == 4 else "yuv420p", options, (
            "rgba" if channels == 4 else "rgb24"
        )
    if fmt == "mov" and channels in (3, 4):
        options = {"profile": "4444", "vendor": "apl0"}
        return "prores_ks", "yuva444p10le" if channels == 4 else "yuv444p10le", options, (
            "rgba" if channels == 4 else "rgb24"
        )
    raise EncodeFailed(f"the {fmt} output takes no {channels}-channel frames")


class VideoWriter:
    """Owns one PyAV output container writing ``path`` (a temporary, video-only file of ``fmt``'s
    container). ``channels``: 3 (RGB), 4 (RGBA, straight alpha: webm/mov) or 1 (the matte)."""

    def __init__(
        self,
        path: str,
        info: VideoInfo,
        *,
        crf: int,
        preset: str,
        end_pts: int | None = None,
        fmt: str = "mp4",
        channels: int = 3,
    ) -> None:
        self.path = path
        self.info = info
        self.fmt = fmt
        self.channels = channels
        encoder, pix_fmt, options, self._layout = _codec(fmt, channels, crf, preset)
        self._pix_fmt = pix_fmt
        self._range = _RANGE_PC if fmt == "matte" else _RANGE_TV
        self.end_pts = end_pts
        self.frames_written = 0
        self._pending: tuple[np.ndarray, int] | None = None
        self._last_duration: int | None = None
        self._durations: dict[int, int] = {}
        self._first_dts: int | None = None
        self._held: av.Packet[av.video.stream.VideoStream] | None = None
        self._end: int | None = None  # presentation end of the last frame
        self._closed = False
        self._reformatter = VideoReformatter()
        self._source: tuple[av.VideoFrame, np.ndarray] | None = None
        try:
            self._container: av.container.OutputContainer = av.open(path, mode="w", format=CONTAINERS[fmt])
        except (av.FFmpegError, OSError) as exc:
            raise EncodeFailed(f"cannot create the output video {path}: {exc}") from exc
        try:
            rate = info.avg_rate if info.avg_rate > 0 else Fraction(25)
            added = self._container.add_stream(encoder, rate=rate, options=options)
            if not isinstance(added, av.video.stream.VideoStream):
                raise EncodeFailed(f"{encoder} is not a video encoder")
            stream = added
            stream.width = info.out_width
            stream.height = info.out_height
            stream.pix_fmt = pix_fmt
            stream.time_base = info.time_base
            ctx = stream.codec_context
            ctx.time_base = info.time_base
            ctx.colorspace = _BT709
            ctx.color_primaries = _BT709
            ctx.color_trc = _BT709
            ctx.color_range = self._range
            if info.sample_aspect_ratio != 1:  # anamorphic input: displayed with the same shape
                ctx.sample_aspect_ratio = info.sample_aspect_ratio
            self._stream: av.video.stream.VideoStream = stream
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()  # the file is discarded anyway; do not mask the error with a flush failure

    def abort(self) -> None:
        """Close the container without flushing the encoder (after an error). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pending = self._held = None
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()

    def write(self, frames: np.ndarray, pts: np.ndarray) -> None:
        """Append frames (uint8 [N,H,W,C], out size, C = ``channels``) with their pts (int64 [N],
        increasing)."""
        if self._closed:
            raise EncodeFailed("write() after close()")
        h, w, c = self.info.out_height, self.info.out_width, self.channels
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, c):
            raise EncodeFailed(f"frames must be uint8 [N,{h},{w},{c}], got {frames.dtype} {frames.shape}")
        if len(pts) != frames.shape[0]:
            raise EncodeFailed(f"{frames.shape[0]} frames but {len(pts)} timestamps")
        for frame, t in zip(frames, pts, strict=True):
            self._push(frame, int(t))
        if len(pts) and self._pending is not None:
            # the last frame waits for the next one's pts (its duration): keep a copy, not the caller's
            # buffer; every other frame is encoded before write() returns, so it needs none
            last, last_pts = self._pending
            self._pending = (last.copy(), last_pts)

    def _push(self, frame: np.ndarray, pts: int) -> None:
        if self._pending is not None:
            prev, prev_pts = self._pending
            if pts <= prev_pts:
                raise EncodeFailed(f"timestamps must increase: {pts} after {prev_pts}")
            self._encode(prev, prev_pts, pts - prev_pts)
        self._pending = (frame, pts)

    def _frame(self, pixels: np.ndarray) -> av.VideoFrame:
        if self._layout == "gray":
            # full-range Y = the alpha exactly, neutral chroma: decodes to grey (0 background, 255 subject)
            h, w = pixels.shape[:2]
            planes = np.empty((h * 3 // 2, w), np.uint8)
            planes[:h] = pixels[:, :, 0]
            planes[h:] = 128
            return av.VideoFrame.from_ndarray(planes, format="yuv420p")
        source, view = self._source_frame(pixels.shape[1], pixels.shape[0])
        view[...] = pixels
        # always a new frame for the encoder: the layouts (rgb24, rgba) are never the codec's pix_fmt
        return self._reformatter.reformat(
            source,
            format=self._pix_fmt,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            threads=1,
        )

    def _source_frame(self, w: int, h: int) -> tuple[av.VideoFrame, np.ndarray]:
        """One RGB(A) frame kept for the writer's life and a numpy view of its pixels: swscale reads each
        picture from it and writes a new YUV frame for the encoder. A fresh 1080p frame per picture
        (``VideoFrame.from_ndarray``) cost ~7 ms of page faults and copying on the 2-core machine; this
        and one thread for swscale (its slice threads cost more CPU than they save) halve the
        conversion's CPU time. Output unchanged, bit for bit."""
        if self._source is None:
            frame = av.VideoFrame(w, h, self._layout)
            plane = frame.planes[0]
            rows = np.frombuffer(memoryview(plane), np.uint8).reshape(h, plane.line_size)
            self._source = (frame, rows[:, : w * self.channels].reshape(h, w, self.channels))
        return self._source

    def _encode(self, pixels: np.ndarray, pts: int, duration: int) -> None:
        yuv = self._frame(pixels)
        yuv.pts = pts
        yuv.time_base = self.info.time_base
        yuv.colorspace = _BT709
        yuv.color_range = self._range
        self._durations[pts] = duration
        self._last_duration = duration
        try:
            self._mux(self._stream.encode(yuv))
        except av.FFmpegError as exc:
            raise EncodeFailed(f"encoding failed: {exc}") from exc
        self.frames_written += 1

    def _mux(self, packets: list[av.Packet[av.video.stream.VideoStream]]) -> None:
        # one packet is held back: the last one in decode order gets its duration fixed in close()
        for packet in packets:
            if packet.pts is not None:
                packet.duration = self._durations.pop(packet.pts, packet.duration or 0)
            if self._first_dts is None and packet.dts is not None:
                self._first_dts = min(packet.dts, 0)
            if self._held is not None:
                self._container.mux(self._held)
            self._held = packet

    def close(self) -> None:
        """Encode the last frame, flush the encoder, write the container's trailer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                frame, pts = self._pending
                self._pending = None
                if self.end_pts is not None and self.end_pts > pts:
                    duration = self.end_pts - pts
                else:
                    frame_units = round(1 / (self.info.avg_rate * self.info.time_base))
                    duration = self._last_duration or max(1, frame_units)
                self._encode(frame, pts, duration)
                self._end = pts + duration
            try:
                self._mux(self._stream.encode(None))
            except av.FFmpegError as exc:
                raise EncodeFailed(f"flushing the encoder failed: {exc}") from exc
            held, self._held = self._held, None
            if held is not None:
                # MP4 track length = last dts + its duration - first dts (the B-frame delay is an edit
                # list): choose the duration that makes the track end with the last frame's display
                if self._end is not None and held.dts is not None and self._first_dts is not None:
                    duration = self._end - held.dts + self._first_dts
                    if duration > 0:
                        held.duration = duration
                self._container.mux(held)
        finally:
            self._container.close()
