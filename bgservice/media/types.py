"""Plain data passed between the media stages (and pickled between Ray actors)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class AudioInfo:
    codec: str  # e.g. "aac", "mp3"
    sample_rate: int
    channels: int
    index: int  # stream index in the container (the first audio stream)


@dataclass(frozen=True)
class VideoInfo:
    """What the probe found. Sizes are as displayed (rotation applied); out_* is the even encoded size."""

    path: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    rotation: int  # degrees clockwise to apply to decoded frames: 0, 90, 180, 270
    out_width: int
    out_height: int
    duration: float  # seconds
    frame_count: int
    avg_rate: Fraction  # average frame rate (frames / second)
    time_base: Fraction  # unit of the pts carried by Shard.pts
    audio: AudioInfo | None
    file_size: int
    # Added by the media engineer (defaults keep older constructors working):
    colorspace: str = "unknown"  # source YUV matrix as tagged: "bt709", "bt470bg", "smpte170m", "unknown"...
    color_range: str = "tv"  # "tv" (limited) or "pc" (full)
    video_start: float = 0.0  # first video frame's time on ffmpeg's input clock (container start), seconds
    # display matrix signs (a, b, c, d): coded pixel (p, q) is shown at x = a*p + c*q, y = b*p + d*q;
    # ``rotation`` is its rotation part, this also carries mirroring
    orientation: tuple[int, int, int, int] = (1, 0, 0, 1)
    # pixel aspect ratio of the displayed frame (anamorphic video); carried to the output, not resampled
    sample_aspect_ratio: Fraction = Fraction(1)
    # the demuxer that read the source (``mov``, ``matroska`` ...): ffmpeg's ``-f`` when it reads the
    # source again for the audio, so it never guesses another (playlist) demuxer
    container_format: str = ""


@dataclass(frozen=True)
class TrimWindow:
    """The part of the source to process, in seconds of source time; end already clamped to the video."""

    start: float
    end: float
    is_full: bool  # True when nothing is cut away (audio may then be copied)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Shard:
    """A run of consecutive frames of the trimmed video, with context frames on either side.

    frames: uint8 [N,H,W,3] RGB, display orientation, out_height x out_width.
    pts:    int64 [N], presentation time of each frame in VideoInfo.time_base units; the first frame of
            the trimmed video has pts 0. Timestamps are carried, never derived from a frame rate.
    before: uint8 [<=Kb,H,W,3], the frames immediately preceding frames[0] (fewer at the start).
    after:  uint8 [<=Ka,H,W,3], the frames immediately following frames[-1] (fewer at the end).
    """

    index: int  # shard number within the job, 0-based
    start: int  # index of frames[0] within the trimmed video
    frames: np.ndarray
    pts: np.ndarray
    before: np.ndarray
    after: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])
