"""The decoder: one per job, on the node where the job's input is; hands out shards one call at a time.

``open`` stages the input (fsspec URL -> local file), probes it, resolves the trim window and prepares the
job's backdrop (the plate; a background video is opened here and read along with the input), exactly as
the one-process pipeline does (:func:`bgservice.stages.prepared_input`,
:func:`bgservice.backgrounds.open_backdrop`); ``next_shard`` returns the next shard (with its frames of the
background video, if any), or ``(None, None)`` at the end. Frames are read in bounded chunks by
:class:`bgservice.media.decode.FrameReader`, so memory is flat in the video's length; the DAG bounds how
many shards are requested ahead. A decoder is stateful and is not restarted: if its process dies the job
fails with ``decode_failed``. The staged input stays until ``close`` (the encoder reads its audio).
The bytes ``open`` fetched travel back in :attr:`JobMedia.fetched_bytes`: the driver, whose process the
runner reports on ``/metrics``, counts them (:mod:`bgservice.counters`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bgservice.counters import FETCHED_BYTES
from bgservice.engines.ray.segmenter import _current_node_id
from bgservice.engines.ray.types import JobMedia, ShardHead
from bgservice.media.types import Shard
from bgservice.settings import Settings
from bgservice.spec import JobSpec

if TYPE_CHECKING:
    from bgservice.backgrounds import Backdrop


class Decoder:
    """Serves one job at a time; reusable for the next job once ``close`` has run."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._reader: Any = None
        self._shards: Iterator[Shard] | None = None
        self._background: Any = None  # the job's BackgroundVideo, if any
        self._time_base: Any = None

    def ping(self) -> tuple[int, str]:
        """(pid, node id): the readiness probe."""
        return os.getpid(), _current_node_id()

    def open(
        self, spec: JobSpec, settings: Settings, shard_frames: int, context_before: int, context_after: int
    ) -> tuple[JobMedia, Backdrop]:
        """Returns (what was found, the job's backdrop: what every Segmenter composites over)."""
        from bgservice.backgrounds import open_backdrop
        from bgservice.media.decode import FrameReader
        from bgservice.stages import prepared_input

        self.close()
        try:
            with FETCHED_BYTES.tally() as fetched:  # this process's count is not scraped: the driver's is
                path, info, window = self._stack.enter_context(prepared_input(spec, settings))
                backdrop, self._background = self._stack.enter_context(open_backdrop(spec, info, settings))
            self._time_base = info.time_base
            reader = FrameReader(path, info, window)
            self._reader = reader
            total = len(reader)  # >= 1: FrameReader refuses an empty window (InvalidTrim)
            self._shards = reader.shards(shard_frames, context_before, context_after)
        except BaseException:
            self.close()
            raise
        media = JobMedia(
            source_path=path,
            info=info,
            window=window,
            total_frames=total,
            end_pts=reader.end_pts,
            node_id=_current_node_id(),
            decoder_pid=os.getpid(),
            fetched_bytes=fetched.value,
        )
        return media, backdrop

    def next_shard(self) -> tuple[ShardHead | None, Shard | None]:
        """The next shard as (small head, shard); ``(None, None)`` once the window is exhausted."""
        if self._shards is None:
            return None, None
        shard = next(self._shards, None)
        if shard is None:
            self._close_reader()
            return None, None
        if self._background is not None:
            shard.background = self._background.frames_for(shard.pts, self._time_base)
        return ShardHead(index=shard.index, start=shard.start, frames=len(shard)), shard

    def _close_reader(self) -> None:
        self._shards = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Release the reader and the staged input (idempotent)."""
        try:
            self._close_reader()
        finally:
            self._background = None
            self._stack.close()
