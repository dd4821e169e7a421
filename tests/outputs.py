"""What a user checks about an output file, read back with PyAV (no ffprobe on a fresh machine)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


@dataclass(frozen=True)
class Facts:
    codec: str
    profile: str | None
    pix_fmt: str
    width: int
    height: int
    frames: int
    pts_seconds: tuple[float, ...]  # every frame's presentation time, in decode order sorted
    video_duration: float  # the video track's duration (container's figure; else last pts + duration)
    avg_rate: Fraction | None
    audio_codec: str | None
    audio_duration: float | None
    color_space: str | None
    faststart: bool


def moov_before_mdat(path: str) -> bool:
    """``+faststart``: the top-level moov box comes before mdat (walks the boxes, no byte search)."""
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return False
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if size == 1:
                size = int.from_bytes(f.read(8), "big")
                f.seek(size - 16, 1)
            elif size == 0:
                return False
            else:
                f.seek(size - 8, 1)


def inspect(path: str) -> Facts:
    with av.open(path) as c:
        v = c.streams.video[0]
        ctx = v.codec_context
        tb = v.time_base
        assert tb is not None
        pts: list[float] = []
        durations: list[float] = []
        for packet in c.demux(v):
            if packet.pts is None:
                continue
            pts.append(float(packet.pts * tb))
            durations.append(float((packet.duration or 0) * tb))
        order = np.argsort(pts)
        sorted_pts = tuple(float(pts[i]) for i in order)
        last_dur = durations[int(order[-1])] if durations else 0.0
        audio_codec = audio_duration = None
        if c.streams.audio:
            a = c.streams.audio[0]
            audio_codec = a.codec_context.name
            if a.duration is not None and a.time_base is not None:
                audio_duration = float(a.duration * a.time_base)
        first = sorted_pts[0] if sorted_pts else 0.0
        return Facts(
            codec=ctx.name,
            profile=ctx.profile,
            pix_fmt=str(ctx.pix_fmt),
            width=ctx.width,
            height=ctx.height,
            frames=len(pts),
            pts_seconds=sorted_pts,
            video_duration=(
                float(v.duration * tb)
                if v.duration
                else (sorted_pts[-1] - first + last_dur)
                if sorted_pts
                else 0.0
            ),
            avg_rate=v.average_rate,
            audio_codec=audio_codec,
            audio_duration=audio_duration,
            color_space=str(ctx.colorspace) if ctx.colorspace is not None else None,
            faststart=moov_before_mdat(path),
        )


def frames(path: str) -> Iterator[np.ndarray]:
    """Every frame as RGB uint8, in presentation order."""
    with av.open(path) as c:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def rgba_frames(path: str) -> Iterator[np.ndarray]:
    """Every frame as RGBA uint8 in presentation order, alpha included: VP9's alpha lives in the WebM
    BlockAdditional, which only libvpx's decoder reads (FFmpeg's own vp9 decoder drops it)."""
    with av.open(path) as c:
        stream = c.streams.video[0]
        if stream.codec_context.name == "vp9":
            decoder = av.codec.CodecContext.create("libvpx-vp9", "r")
            for packet in c.demux(stream):
                for frame in decoder.decode(packet if packet.size else None):
                    yield frame.to_ndarray(format="rgba")
            return
        for frame in c.decode(stream):
            yield frame.to_ndarray(format="rgba")


def grey_frames(path: str) -> Iterator[np.ndarray]:
    """Every frame's luma as uint8 [H,W] (the matte output: full-range Y = alpha)."""
    with av.open(path) as c:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format="gray")
