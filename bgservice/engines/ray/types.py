"""Small records passed between the DAG's actors and the driver (all picklable, all small except Segment)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgservice.media.types import TrimWindow, VideoInfo


@dataclass(frozen=True)
class JobMedia:
    """What the decoder found when it opened a job's input."""

    source_path: str  # the staged local input (on the decoder's node), read again by the encoder for audio
    info: VideoInfo
    window: TrimWindow
    total_frames: int  # frames in the trimmed window: the progress total
    end_pts: int  # where the window's last frame ends (FrameReader.end_pts), for the encoder
    node_id: str  # where the decoder runs: the encoder runs there too (it needs source_path)
    decoder_pid: int
    fetched_bytes: int = 0  # what opening the job fetched (input, background): the driver counts it


@dataclass(frozen=True)
class ShardHead:
    """The small half of a decoded shard: the driver reads this, never the frames."""

    index: int
    start: int
    frames: int


@dataclass
class Segment:
    """A finished shard: its output frames (uint8 RGB [N,H,W,3], RGBA [N,H,W,4] or the matte [N,H,W,1])
    and their timestamps."""

    index: int
    start: int
    frames: np.ndarray
    pts: np.ndarray


@dataclass(frozen=True)
class SegmentDone:
    """The small half of a finished shard, with who did the work (tests count Segmenter processes)."""

    index: int
    frames: int
    pid: int
    seconds: float
    quality: str = ""  # the matte quality the Segmenter ran ("fast" / "best")


@dataclass(frozen=True)
class SegmenterInfo:
    pid: int
    node_id: str
    context_before: int
    context_after: int
    shards_done: int


@dataclass(frozen=True)
class EncodeProgress:
    shards_written: int
    frames_written: int


@dataclass(frozen=True)
class EncodeResult:
    frames: int
    width: int
    height: int
