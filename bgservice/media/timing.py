"""Exact per-frame timestamps, read by demuxing packets with PyAV (no decoding).

The presentation timestamps of the video packets, sorted, are the frames' timestamps in presentation
order: the decoder outputs each frame with its packet's pts, and :class:`bgservice.media.decode.FrameReader`
picks the window's frames by exactly these values. Reading them costs one pass over the file without
decoding, so the frame count and every timestamp are known before the first frame is decoded.

Source time (what ``--start`` / ``--end`` mean) is measured from the first video frame: frame ``i`` is at
``(pts[i] - pts[0]) * time_base`` seconds. A frame belongs to the window ``[start, end)`` when its time is
in that half-open interval (a tolerance of 1e-6 time-base units absorbs float rounding of the bounds).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.stream
import numpy as np

from bgservice.errors import InvalidInput
from bgservice.media.container import describe, open_input

__all__ = [
    "FrameTimes",
    "describe",
    "first_frame_time",
    "frame_times",
    "pick_video_stream",
    "read_frame_times",
]

_EPS_UNITS = 1e-6


def pick_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The first video stream that is real video (not an attached cover picture)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


@dataclass(frozen=True)
class FrameTimes:
    """Presentation timestamps of every frame of one video stream, sorted, in ``time_base`` units."""

    pts: np.ndarray  # int64 [N], absolute stream pts, ascending
    end_pts: int  # absolute pts at which the last frame stops being displayed
    time_base: Fraction
    corrupt_packets: int  # packets flagged corrupt/partial by the demuxer
    index_frames: int  # frame count announced by the container index (0: unknown)
    packets: int  # packets the demuxer delivered (empty ones included), to compare with index_frames

    def __len__(self) -> int:
        return int(self.pts.shape[0])

    @property
    def rel(self) -> np.ndarray:
        """Timestamps relative to the first frame (frame 0 at 0)."""
        rel: np.ndarray = self.pts - self.pts[0]
        return rel

    @property
    def duration_units(self) -> int:
        return int(self.end_pts - self.pts[0])

    def to_units(self, seconds: float) -> float:
        return seconds * self.time_base.denominator / self.time_base.numerator

    def window(self, start: float, end: float) -> tuple[int, int]:
        """Frame indices ``[i0, i1)`` whose time is in ``[start, end)`` seconds (relative to frame 0)."""
        rel = self.rel
        i0 = int(np.searchsorted(rel, self.to_units(start) - _EPS_UNITS, side="left"))
        i1 = int(np.searchsorted(rel, self.to_units(end) - _EPS_UNITS, side="left"))
        return i0, max(i0, i1)

    def window_end_units(self, i0: int, i1: int, end: float) -> int:
        """Where the window's last frame should end, relative to frame ``i0``: at the next frame or at
        ``end``, whichever is first (so video and the audio cut at ``end`` finish together)."""
        rel = self.rel
        next_start = int(rel[i1]) if i1 < len(self) else self.duration_units
        end_units = math.floor(self.to_units(end) + 0.5)
        stop = min(next_start, end_units)
        return max(stop, int(rel[i1 - 1]) + 1) - int(rel[i0])


def read_frame_times(path: str) -> FrameTimes:
    """Demux the first video stream of ``path`` and return its frame timestamps (no decoding)."""
    container = open_input(path, what="not a readable media file")
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InvalidInput("no video stream")
        pts: list[int] = []
        last_duration = 0
        max_pts: int | None = None
        corrupt = 0
        seen = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None or packet.size:
                    seen += 1  # what the container index counts (AVI "drop" chunks are empty)
                if packet.size == 0 or packet.pts is None or packet.is_discard:
                    continue
                if packet.is_corrupt:
                    corrupt += 1
                pts.append(packet.pts)
                if max_pts is None or packet.pts > max_pts:
                    max_pts = packet.pts
                    last_duration = packet.duration or 0
        except av.FFmpegError as exc:
            raise InvalidInput(f"corrupt or truncated video ({describe(exc, path)})") from exc
        if not pts:
            raise InvalidInput("the video stream has no frames")
        arr = np.unique(np.asarray(pts, dtype=np.int64))  # sorted; duplicates (broken muxers) dropped
        tb = stream.time_base or Fraction(1, 1000)
        if last_duration <= 0:
            if len(arr) > 1:
                last_duration = int(np.median(np.diff(arr[-9:])))
            else:
                rate = stream.average_rate or stream.guessed_rate or Fraction(25)
                last_duration = max(1, round(1 / (rate * tb)))
        end_pts = int(arr[-1]) + last_duration
        if stream.duration:
            # The track's declared length (what players show) wins over the last packet's duration,
            # which muxers often pad (an MP4's last sample): the video ends where the audio does.
            declared_end = int(stream.start_time or 0) + int(stream.duration)
            if declared_end > int(arr[-1]):
                end_pts = min(end_pts, declared_end)
        return FrameTimes(
            pts=arr,
            end_pts=end_pts,
            time_base=Fraction(tb),
            corrupt_packets=corrupt,
            # only the MP4/MOV sample tables count packets (AVI's length counts dropped frames too)
            index_frames=int(stream.frames or 0) if container.format.name.startswith("mov") else 0,
            packets=seen,
        )
    finally:
        container.close()


_TIMES_CACHE: OrderedDict[tuple[str, int, int, int], FrameTimes] = OrderedDict()
_TIMES_CACHE_SIZE = 4
_TIMES_LOCK = threading.Lock()


def frame_times(path: str) -> FrameTimes:
    """:func:`read_frame_times`, demuxed once per file and process: probing, reading and the audio cut of
    a job all need the same timestamps (keyed by path, inode, size and mtime, so a changed file is
    demuxed again)."""
    full = os.path.abspath(path)
    try:
        st = os.stat(full)
    except OSError:
        return read_frame_times(path)  # let it raise its own error
    key = (full, st.st_ino, st.st_size, st.st_mtime_ns)
    with _TIMES_LOCK:
        cached = _TIMES_CACHE.get(key)
        if cached is not None:
            _TIMES_CACHE.move_to_end(key)
            return cached
    times = read_frame_times(path)
    times.pts.flags.writeable = False  # shared by every caller from now on
    with _TIMES_LOCK:
        _TIMES_CACHE[key] = times
        while len(_TIMES_CACHE) > _TIMES_CACHE_SIZE:
            _TIMES_CACHE.popitem(last=False)
    return times


def first_frame_time(path: str, start: float) -> float:
    """Seconds (relative to frame 0) of the first frame at or after ``start``: where a trimmed video
    really begins, so the audio can be cut at the same instant."""
    times = frame_times(path)
    i0, _ = times.window(start, math.inf)
    if i0 >= len(times):
        return start
    return float(int(times.rel[i0]) * times.time_base)
