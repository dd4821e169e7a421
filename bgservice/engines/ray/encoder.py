"""The encoder: one per job, beside its decoder; reassembles shards in order, encodes, muxes, publishes.

``push(index, [ref])`` receives a finished shard as an object reference (nested in a list, so Ray does not
fetch it on arrival); the :class:`~.compositor.Compositor` releases contiguous runs strictly in order
and only then are the frames fetched and streamed into the core's
:class:`bgservice.stages.OutputWriter` (PyAV H.264 with the shards' timestamps). ``finish`` muxes the
source's audio and publishes atomically: nothing appears at the output key unless the job succeeded;
``abort`` removes every temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bgservice.engines.ray.compositor import Compositor
from bgservice.engines.ray.segmenter import _current_node_id
from bgservice.engines.ray.types import EncodeProgress, EncodeResult, JobMedia, Segment
from bgservice.settings import Settings
from bgservice.spec import JobSpec


def _ray_get(ref: Any) -> Segment:
    import ray

    seg = ray.get(ref)
    if not isinstance(seg, Segment):
        raise TypeError(f"expected a Segment, got {type(seg).__name__}")
    return seg


class Encoder:
    """Serves one job at a time; reusable for the next job after ``finish`` or ``abort``."""

    def __init__(self, resolve: Callable[[Any], Segment] = _ray_get) -> None:
        self._resolve = resolve
        self._compositor: Compositor[Any] = Compositor()
        self._out: Any = None
        self._media: JobMedia | None = None
        self._shards = 0
        self._frames = 0

    def ping(self) -> tuple[int, str]:
        """(pid, node id): the readiness probe."""
        return os.getpid(), _current_node_id()

    def open(self, spec: JobSpec, media: JobMedia, settings: Settings) -> int:
        """Start the job's video file; returns this process's pid."""
        from bgservice.stages import OutputWriter

        self.abort()
        self._compositor = Compositor()
        self._shards = self._frames = 0
        self._media = media
        self._out = OutputWriter(
            spec, media.info, media.window, media.source_path, settings, end_pts=media.end_pts
        )
        return os.getpid()

    def push(self, index: int, parts: list[Any]) -> EncodeProgress:
        """Accept shard ``index`` (``parts[0]`` is its Segment or a reference to it); write what is due."""
        if self._out is None:
            raise RuntimeError("Encoder.push before open")
        for item in self._compositor.add(index, parts[0]):
            seg = self._resolve(item)
            self._out.write(seg.frames, seg.pts)
            self._shards += 1
            self._frames += int(seg.frames.shape[0])
            del seg
        return EncodeProgress(shards_written=self._shards, frames_written=self._frames)

    def finish(self) -> EncodeResult:
        """Close the video, mux the audio, publish; the output key is written once, complete."""
        if self._out is None or self._media is None:
            raise RuntimeError("Encoder.finish before open")
        if self._compositor.held:
            raise RuntimeError(f"{self._compositor.held} shard(s) still wait for an earlier one")
        out, self._out = self._out, None
        try:
            out.commit()
        finally:
            out.close()
        return EncodeResult(
            frames=self._frames, width=self._media.info.out_width, height=self._media.info.out_height
        )

    def abort(self) -> None:
        """Drop everything written so far (idempotent): nothing is published, temporary files go."""
        self._compositor.clear()
        out, self._out = self._out, None
        if out is not None:
            out.close()
