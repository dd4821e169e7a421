"""The one-process path: what the CLI's ``--engine local`` runs, and the reference the Ray DAG must equal.

The stages are small pieces the Ray actors reuse as they are:

- :func:`prepared_input`  input URL -> local file, probed, trim window resolved (the decoder's first step)
- :class:`ShardProcessor` model + matte refinement + composite for one shard (what a Segmenter runs)
- :class:`OutputWriter`   frames -> H.264 -> mux audio -> atomic publish (what the encoder runs)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from bgservice.backgrounds import load_plate
from bgservice.errors import JobCancelled
from bgservice.matte import Matter, composite
from bgservice.media.decode import FrameReader
from bgservice.media.encode import VideoWriter
from bgservice.media.ffmpeg import finalize
from bgservice.media.probe import probe, resolve_trim
from bgservice.media.types import Shard, TrimWindow, VideoInfo
from bgservice.models import SegmentationModel, get_model
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.storage import check_output_url, local_input, publish, scratch_dir

ProgressFn = Callable[[int, int], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class JobResult:
    output_url: str
    duration_seconds: float  # the trimmed source's duration: what is billed
    frames: int
    width: int
    height: int
    has_audio: bool


@contextlib.contextmanager
def prepared_input(spec: JobSpec, settings: Settings) -> Iterator[tuple[str, VideoInfo, TrimWindow]]:
    """Local copy of the input, its probe, and the validated trim window."""
    check_output_url(spec.output_url)
    with local_input(spec.input_url, settings) as path:
        info = probe(path, settings)
        window = resolve_trim(info, spec.start, spec.end, settings)
        yield path, info, window


class ShardProcessor:
    """Segment, refine and composite one shard. Loads the model once; reused for every shard and job."""

    def __init__(self, settings: Settings, model: SegmentationModel | None = None) -> None:
        self.model = model if model is not None else get_model(settings.model, settings.device)
        self.matter = Matter(self.model)

    @property
    def context_before(self) -> int:
        return self.matter.context_before

    @property
    def context_after(self) -> int:
        return self.matter.context_after

    def __call__(self, shard: Shard, plate: np.ndarray) -> np.ndarray:
        alpha, foreground = self.matter(shard.frames, shard.before, shard.after)
        # Blend into the foreground buffer when it is the matte's own copy (saves a fresh frame's page
        # faults); never into the shard's frames, which may be read-only object-store memory.
        owned = foreground is not shard.frames and foreground.flags.writeable
        return composite(foreground, alpha, plate, out=foreground if owned else None)


class OutputWriter:
    """Owns the job's scratch directory and video writer; ``commit`` muxes audio and publishes.

    Frames must arrive in presentation order. Nothing appears at the output URL unless ``commit``
    succeeds; leaving the ``with`` block without committing (an error, Ctrl-C) removes every temporary file.
    """

    def __init__(
        self,
        spec: JobSpec,
        info: VideoInfo,
        window: TrimWindow,
        source_path: str,
        settings: Settings,
        *,
        end_pts: int,
    ) -> None:
        """``end_pts``: where the last frame ends (``FrameReader.end_pts``), so that video and the audio cut
        end together."""
        self._spec, self._info, self._window, self._source = spec, info, window, source_path
        self._scratch_cm = scratch_dir(settings, prefix="bgservice-out-")
        self._scratch = self._scratch_cm.__enter__()
        self._video_only = self._scratch / "video.mp4"
        try:
            self._writer: VideoWriter | None = VideoWriter(
                str(self._video_only), info, crf=settings.crf, preset=settings.preset, end_pts=end_pts
            )
        except BaseException:
            self._scratch_cm.__exit__(None, None, None)
            raise
        self.frames_written = 0

    def write(self, frames: np.ndarray, pts: np.ndarray) -> None:
        assert self._writer is not None, "write after commit/close"
        self._writer.write(frames, pts)
        self.frames_written += int(frames.shape[0])

    def commit(self) -> None:
        assert self._writer is not None, "commit twice"
        writer, self._writer = self._writer, None
        writer.close()
        muxed = self._scratch / f"result{Path(self._video_only).suffix}"
        finalize(str(self._video_only), self._source, self._info, self._window, str(muxed))
        publish(muxed, self._spec.output_url)

    def close(self) -> None:
        try:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                writer.close()
        finally:
            self._scratch_cm.__exit__(None, None, None)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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
                out.write(processor(shard, plate), shard.pts)
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
            )
