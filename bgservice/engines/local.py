"""The one-process engine: the whole job in this process, shard by shard. The reference the Ray DAG must
equal, and what ``bgservice process --engine local`` runs."""

from __future__ import annotations

from bgservice.backgrounds import load_plate
from bgservice.engines.base import CancelToken, JobResult, ProgressFn
from bgservice.errors import JobCancelled
from bgservice.media.decode import FrameReader
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.stages import OutputWriter, ShardProcessor, prepared_input


def run_job(
    spec: JobSpec,
    settings: Settings,
    *,
    processor: ShardProcessor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """Run one job in this process, streaming shard by shard: memory stays flat in the video's length."""
    processor = processor or ShardProcessor(settings)
    with prepared_input(spec, settings) as (path, info, window):
        plate = load_plate(spec.background, info.out_width, info.out_height, settings)
        with (
            FrameReader(path, info, window) as reader,
            OutputWriter(spec, info, window, path, settings, end_pts=reader.end_pts) as out,
        ):
            total = len(reader)  # >= 1: FrameReader refuses an empty window (InvalidTrim)
            if progress:
                progress(0, total)
            shards = reader.shards(settings.shard_frames, processor.context_before, processor.context_after)
            for shard in shards:
                if cancel is not None and cancel.is_set():
                    raise JobCancelled("the job was cancelled")
                out.write(processor(shard, plate, spec.quality), shard.pts)
                if progress:
                    progress(out.frames_written, total)
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
