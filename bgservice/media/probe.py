"""Probe an input video with PyAV (no ffprobe needed) and resolve the trim window.

What :func:`probe` guarantees when it returns: the path is a plain, non-empty local file within the size
limit; it holds a video stream whose first and last frames decode (with PyAV, the decoder the job uses),
so empty files, text, audio-only files, truncated or corrupt files and codecs nobody can
decode are refused up front with :class:`InvalidInput` instead of failing half-way through a job.

Sizes. ``width`` x ``height`` is the size as displayed: the display matrix (phone videos) is applied.
**Odd-size rule**: H.264 4:2:0 needs even dimensions, so an odd displayed width or height loses its last
column / last row (right / bottom edge) -- never more than 1 px, no scaling, no padding. ``out_width`` x
``out_height`` is that even size; every decoded frame is cropped to it.

Colour. ``colorspace`` / ``color_range`` are the tags of the first decoded frame (``unknown`` when
untagged); :mod:`bgservice.media.decode` uses them to decode with the right matrix.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from fractions import Fraction
from typing import cast

import av
import av.container
import numpy as np
from av.sidedata.sidedata import SideDataContainer

from bgservice.errors import InputTooLarge, InvalidInput, InvalidTrim
from bgservice.media.container import input_format, open_input
from bgservice.media.timing import FrameTimes, describe, frame_times, pick_video_stream
from bgservice.media.types import AudioInfo, TrimWindow, VideoInfo
from bgservice.settings import Settings

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

# AVColorSpace values -> ffmpeg names (libavutil/pixfmt.h)
_COLORSPACES = {
    0: "gbr",
    1: "bt709",
    2: "unknown",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
}
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}


def check_local_file(path: str) -> str:
    """Return the absolute path of ``path`` if it is a plain local file; refuse URLs and special files."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidInput("input path is empty or malformed")
    if _URL.match(path) and not os.path.exists(path):
        raise InvalidInput("input must be a local file path, not a URL")
    absolute = os.path.abspath(path)
    try:
        st = os.stat(absolute)
    except OSError as exc:
        raise InvalidInput(f"cannot read input file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput("input is not a regular file")
    return absolute


def display_matrix_signs(frame: av.VideoFrame) -> tuple[int, int, int, int]:
    """(a, b, c, d) of the frame's display matrix, each in {-1, 0, 1}; identity when there is none.

    A coded pixel (p, q) (column, row) is displayed at x = a*p + c*q, y = b*p + d*q (ISO 14496-12).
    Angles that are not multiples of 90 degrees are snapped to the nearest one.
    """
    try:
        side = cast(SideDataContainer, frame.side_data)["DISPLAYMATRIX"]  # typed as a TypedDict in av
    except KeyError:
        side = None
    if side is not None:
        m = np.frombuffer(bytes(side), dtype="<i4")
        if m.shape[0] >= 9:
            a, b, c, d = (int(m[0]), int(m[1]), int(m[3]), int(m[4]))

            def sgn(v: int) -> int:
                return (v > 0) - (v < 0)

            if abs(a) >= abs(b):  # closer to no transpose
                return (sgn(a), 0, 0, sgn(d))
            return (0, sgn(b), sgn(c), 0)
    return (1, 0, 0, 1)


def rotation_cw(signs: tuple[int, int, int, int]) -> int:
    """Clockwise degrees of the rotation part of the display matrix (flips aside): 0, 90, 180, 270."""
    a, b, _c, _d = signs
    # av_display_rotation_get (what ffmpeg's autorotate applies) reports -atan2(b, a) counter-clockwise
    return round(math.degrees(math.atan2(b, a))) % 360


def _colour_tags(frame: av.VideoFrame, pix_fmt: str) -> tuple[str, str]:
    space = _COLORSPACES.get(int(frame.colorspace), "unknown")
    rng = int(frame.color_range)
    color_range = "pc" if rng == 2 or (rng == 0 and pix_fmt in _FULL_RANGE_FORMATS) else "tv"
    return space, color_range


def _last_frame_check(path: str, times: FrameTimes) -> None:
    """Decode the last frame the way the job will reach it (seek to its keyframe, decode forward)."""
    last = int(times.pts[-1])
    container = open_input(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InvalidInput("no video stream in the input")
        stream.thread_type = "AUTO"
        with contextlib.suppress(av.FFmpegError):  # cannot seek: decode from the start
            container.seek(last, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts >= last:
                return
    except (av.FFmpegError, ValueError) as exc:
        raise InvalidInput(f"corrupt or truncated video: {describe(exc, path)}") from exc
    finally:
        container.close()
    raise InvalidInput("corrupt or truncated video: the last frame does not decode")


def probe(path: str, settings: Settings) -> VideoInfo:
    """Inspect ``path`` (a local file) and return what the job needs; refuse bad or too large inputs."""
    path = check_local_file(path)
    size = os.path.getsize(path)
    if size == 0:
        raise InvalidInput("the input file is empty")
    if size > settings.max_input_bytes:
        raise InputTooLarge(f"input is {size} bytes, the limit is {settings.max_input_bytes} bytes")
    # local files only, and no playlist / stream-description demuxer (they open the files they list)
    container = open_input(path)
    try:
        return _probe_container(path, size, container, settings)
    finally:
        container.close()


def _probe_container(
    path: str, size: int, container: av.container.InputContainer, settings: Settings
) -> VideoInfo:
    stream = pick_video_stream(container)
    if stream is None:
        raise InvalidInput("no video stream in the input")
    ctx = stream.codec_context
    codec = ctx.codec.canonical_name if ctx is not None else ""  # "h264", "msmpeg4v3" (not the decoder)
    if ctx is None or not codec or codec == "none":
        raise InvalidInput("the video codec is not supported (no decoder)")
    coded_w, coded_h = int(ctx.width), int(ctx.height)
    if coded_w * coded_h > settings.max_pixels:
        raise InputTooLarge(
            f"frames are {coded_w}x{coded_h} = {coded_w * coded_h} pixels, the limit is {settings.max_pixels}"
        )
    # decode the first frame: proves the codec is decodable and gives rotation and colour tags
    try:
        first = next(container.decode(stream))
    except StopIteration as exc:
        raise InvalidInput("the video stream has no decodable frame") from exc
    except (av.FFmpegError, ValueError) as exc:
        raise InvalidInput(f"the {codec} video cannot be decoded ({describe(exc, path)})") from exc
    if coded_w <= 0 or coded_h <= 0:
        coded_w, coded_h = first.width, first.height
    if coded_w < 2 or coded_h < 2:
        raise InvalidInput(f"frames of {coded_w}x{coded_h} are too small")
    pix_fmt = first.format.name
    signs = display_matrix_signs(first)
    width, height = (coded_h, coded_w) if signs[0] == 0 else (coded_w, coded_h)
    colorspace, color_range = _colour_tags(first, pix_fmt)
    sar = Fraction(stream.sample_aspect_ratio or ctx.sample_aspect_ratio or 1)
    if sar <= 0:
        sar = Fraction(1)
    if signs[0] == 0:  # rotated a quarter turn: the pixel aspect turns with it
        sar = 1 / sar

    times = frame_times(path)
    _check_complete(times)
    _last_frame_check(path, times)

    tb = times.time_base
    duration = float(times.duration_units * tb)
    if duration <= 0:
        raise InvalidInput("the video has no duration")
    rate = stream.average_rate or stream.guessed_rate
    avg_rate = Fraction(rate) if rate else Fraction(len(times)) / Fraction(duration).limit_denominator(10**6)
    start_time = container.start_time  # microseconds (AV_TIME_BASE), ffmpeg's input clock origin
    video_start = float(int(times.pts[0]) * tb) - (start_time / 1e6 if start_time is not None else 0.0)

    audio = None
    for a in container.streams.audio:
        actx = a.codec_context
        if actx is None or not actx.name or not actx.sample_rate:
            continue
        audio = AudioInfo(
            codec=actx.codec.canonical_name,  # "aac", "mp3" (decoder names like "mp3float" differ)
            sample_rate=int(actx.sample_rate),
            channels=int(actx.channels),
            index=int(a.index),
        )
        break

    return VideoInfo(
        path=path,
        codec=codec,
        pix_fmt=pix_fmt,
        width=width,
        height=height,
        rotation=rotation_cw(signs),
        out_width=width - width % 2,
        out_height=height - height % 2,
        duration=duration,
        frame_count=len(times),
        avg_rate=avg_rate,
        time_base=tb,
        audio=audio,
        file_size=size,
        colorspace=colorspace,
        color_range=color_range,
        video_start=video_start,
        orientation=signs,
        sample_aspect_ratio=sar,
        container_format=input_format(container),
    )


def _check_complete(times: FrameTimes) -> None:
    if times.corrupt_packets:
        raise InvalidInput(f"corrupt or truncated video: {times.corrupt_packets} damaged packet(s)")
    if times.index_frames and times.packets < times.index_frames:
        raise InvalidInput(
            f"truncated video: the index announces {times.index_frames} frames,"
            f" the file holds {times.packets}"
        )


def resolve_trim(info: VideoInfo, start: float | None, end: float | None, settings: Settings) -> TrimWindow:
    """Turn the user's ``--start`` / ``--end`` (seconds from the first frame) into a window.

    ``None`` means the beginning / the end. An ``end`` past the end is clamped to the end. Refused with
    InvalidTrim: negative or non-finite values, ``start >= duration``, ``end <= start``. A trimmed
    duration above ``settings.max_duration_seconds`` is refused with InputTooLarge.
    """
    s = 0.0 if start is None else float(start)
    e = info.duration if end is None else float(end)
    for name, value in (("start", s), ("end", e)):
        if math.isnan(value) or (name == "start" and math.isinf(value)):
            raise InvalidTrim(f"{name} is not a number")
        if value < 0:
            raise InvalidTrim(f"{name} is negative ({value:g} s)")
    if s >= info.duration:
        raise InvalidTrim(f"start {s:g} s is not before the end of the video ({info.duration:g} s)")
    if e <= s:
        raise InvalidTrim(f"end {e:g} s is not after start {s:g} s")
    e = min(e, info.duration)
    if e - s > settings.max_duration_seconds:
        raise InputTooLarge(
            f"the trimmed duration is {e - s:g} s, the limit is {settings.max_duration_seconds:g} s"
        )
    return TrimWindow(start=s, end=e, is_full=s == 0.0 and e == info.duration)
