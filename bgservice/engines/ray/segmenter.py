"""The Segmenter: one long-lived process of the pool; loads the model once, turns shards into final frames.

Each Segmenter runs the whole full-resolution work of a shard (model, matte refinement, composite over the
job's backdrop, or RGBA / the matte for transparent and matte outputs) through the core's
:class:`bgservice.stages.ShardProcessor`, so that heavy work is spread over the pool instead of funnelled
through one actor. ``process`` is a pure function of its arguments: Ray may retry it on a
restarted actor (SIGKILL, lost node) and get the same frames.

With a GPU share (``BGSERVICE_SEGMENTER_GPUS``) this is the same code: Ray sets ``CUDA_VISIBLE_DEVICES``
and the model registry selects ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bgservice.engines.ray.types import Segment, SegmentDone, SegmenterInfo
from bgservice.media.types import Shard
from bgservice.settings import Settings

if TYPE_CHECKING:
    from bgservice.backgrounds import Backdrop


class ShardWork(Protocol):
    """What a Segmenter needs from the core (``bgservice.stages.ShardProcessor`` is one)."""

    @property
    def context_before(self) -> int: ...

    @property
    def context_after(self) -> int: ...

    def resolve_quality(self, requested: str | None) -> str: ...

    def __call__(
        self, shard: Shard, backdrop: Backdrop | np.ndarray, quality: str | None = None
    ) -> np.ndarray: ...


def _current_node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # not inside Ray: unit tests
        pass
    return ""


class Segmenter:
    """Load in ``__init__``, work in ``process``."""

    def __init__(self, settings: Settings, work: ShardWork | None = None, niceness: int = 0) -> None:
        if niceness:
            # The pool's bulk compute yields the CPU to job start-up, decoding, encoding and the API.
            with contextlib.suppress(OSError):
                os.nice(niceness)
        if work is None:
            from bgservice.stages import ShardProcessor

            work = ShardProcessor(settings)
        self._work = work
        self._shards_done = 0

    def info(self) -> SegmenterInfo:
        """Who and where this Segmenter is; also the pool's readiness probe."""
        return SegmenterInfo(
            pid=os.getpid(),
            node_id=_current_node_id(),
            context_before=int(self._work.context_before),
            context_after=int(self._work.context_after),
            shards_done=self._shards_done,
        )

    def process(
        self, shard: Shard, backdrop: Backdrop | np.ndarray, quality: str | None = None
    ) -> tuple[SegmentDone, Segment]:
        """One shard's output frames (composited, RGBA or the matte); returns (small status, frames). The
        DAG fetches only the status. ``quality``: the job's request (None: BGSERVICE_QUALITY; ``auto`` is
        decided here, by the process that has -- or has not -- the GPU); the mode that ran is in the
        status."""
        t0 = time.perf_counter()
        mode = self._work.resolve_quality(quality)
        frames = self._work(shard, backdrop, mode)
        if frames.dtype != np.uint8 or frames.shape[0] != len(shard):
            raise ValueError(f"shard {shard.index}: bad output {frames.dtype} {frames.shape}")
        self._shards_done += 1
        done = SegmentDone(
            index=shard.index, frames=len(shard), pid=os.getpid(), seconds=time.perf_counter() - t0,
            quality=mode,
        )
        return done, Segment(index=shard.index, start=shard.start, frames=frames, pts=shard.pts)
