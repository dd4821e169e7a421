"""The one-process engine: the whole job in this process, shard by shard. The reference the Ray DAG must
equal, and what ``bgservice process`` runs unless a Ray cluster is asked for.

Decoding, the shards' processing and encoding overlap (:mod:`bgservice.engines.overlap`): a reader
thread decodes, ``BGSERVICE_LOCAL_WORKERS`` threads (default: one per core) segment, refine and
composite whole shards, and this thread feeds x264 in order. Frames written are counted in
:data:`bgservice.counters.FRAMES_PROCESSED` (fetched bytes by the fetcher itself: both in this process).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import TypeVar

import numpy as np

from bgservice.backgrounds import BackgroundVideo, open_backdrop
from bgservice.counters import FRAMES_PROCESSED
from bgservice.engines.base import CancelToken, JobResult, ProgressFn
from bgservice.engines.overlap import OrderedMap
from bgservice.errors import JobCancelled
from bgservice.media.decode import FrameReader
from bgservice.media.types import Shard
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.stages import JobShards, OutputWriter, ShardProcessor, prepared_input

T = TypeVar("T")


class StageTimes(dict[str, float]):
    """Seconds the threads of each stage spent in it (wall; stages overlap, so they add up to more than
    the job). OpenCV and ONNX Runtime run part of their work on pools of their own threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self[name] = self.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def timed_iter(self, name: str, items: Iterator[T]) -> Iterator[T]:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                self.add(name, time.perf_counter() - t0)
                return
            self.add(name, time.perf_counter() - t0)
            yield item


def local_workers(settings: Settings) -> int:
    """Processing threads: ``BGSERVICE_LOCAL_WORKERS``, or one per core this process may use."""
    if settings.local_workers > 0:
        return settings.local_workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


def with_background(
    shards: Iterator[Shard], video: BackgroundVideo | None, time_base: Fraction
) -> Iterator[Shard]:
    """The shards with their frames of the background video (if any) attached, read in order as the
    shards are (this runs in the reader thread: the background video is decoded as a stream)."""
    for shard in shards:
        if video is not None:
            shard.background = video.frames_for(shard.pts, time_base)
        yield shard


def run_job(
    spec: JobSpec,
    settings: Settings,
    *,
    processor: ShardProcessor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    timings: StageTimes | None = None,
) -> JobResult:
    """Run one job in this process, streaming shard by shard: memory stays flat in the video's length.

    ``timings``, when given, collects the seconds each stage took (benchmarks)."""
    stage = timings if timings is not None else StageTimes()
    processor = processor or ShardProcessor(settings)
    with (
        prepared_input(spec, settings) as (path, info, window),
        open_backdrop(spec, info, settings) as (backdrop, background_video),
        FrameReader(path, info, window) as reader,
        OutputWriter(spec, info, window, path, settings, end_pts=reader.end_pts) as out,
    ):
        total = len(reader)  # >= 1: FrameReader refuses an empty window (InvalidTrim)
        if progress:
            progress(0, total)
        shards = stage.timed_iter(
            "decode",
            with_background(
                reader.shards(settings.shard_frames, processor.context_before, processor.context_after),
                background_video,
                info.time_base,
            ),
        )
        workers = local_workers(settings)
        # the shards' context frames are their neighbours' edge frames: computed once (FrameCache); the
        # shards' frames are this engine's to overwrite, and each worker keeps its alpha buffer
        edges = processor.context_before + processor.context_after
        job = JobShards(cache_frames=2 * edges * (workers + 1))

        def work(shard: Shard) -> np.ndarray:
            if cancel is not None and cancel.is_set():
                raise JobCancelled("the job was cancelled")
            with stage.timed("process"):
                return processor(shard, backdrop, spec.quality, job=job)

        with OrderedMap(work, shards, workers=workers, depth=workers) as done:
            for shard, frames in done:
                if cancel is not None and cancel.is_set():
                    raise JobCancelled("the job was cancelled")
                with stage.timed("encode"):
                    before = out.frames_written
                    out.write(frames, shard.pts)
                # written (the writer keeps a copy of what it holds back): the decoder refills the array
                reader.recycle(shard.frames)
                FRAMES_PROCESSED.add(out.frames_written - before)
                if progress:
                    progress(out.frames_written, total)
        with stage.timed("finalize"):
            out.commit()
        return JobResult(
            output_url=spec.output_url,
            duration_seconds=round(window.duration, 3),
            frames=out.frames_written,
            width=info.out_width,
            height=info.out_height,
            has_audio=info.audio is not None,
            quality=processor.resolve_quality(spec.quality),
        )


class LocalEngine:
    name = "local"

    def __init__(self, processor: ShardProcessor | None = None) -> None:
        self._processor = processor

    def run(
        self,
        spec: JobSpec,
        settings: Settings,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> JobResult:
        if self._processor is None:
            self._processor = ShardProcessor(settings)
        return run_job(spec, settings, processor=self._processor, progress=progress, cancel=cancel)
