"""The stages of a job: small pieces both engines (one process, the Ray DAG) reuse as they are.

- :func:`prepared_input`  input URL -> local file, probed, trim window resolved (the decoder's first step)
- :class:`ShardProcessor` model + matte refinement + what the output needs for one shard (what a Segmenter
  runs): the composite over the job's :class:`~bgservice.backgrounds.Backdrop` (a plate, per-frame plates
  of a background video, the blurred background), RGBA for transparent outputs, or the matte alone
- :class:`OutputWriter`   frames -> the format's codec -> mux audio -> atomic publish (what the encoder runs)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

from bgservice.backgrounds import Backdrop
from bgservice.matte import FrameCache, MatteConfig, Matter, composite
from bgservice.matte.composite import alpha_u8, composite_blurred, to_rgba
from bgservice.media.encode import CONTAINERS, VideoWriter
from bgservice.media.ffmpeg import finalize
from bgservice.media.probe import probe, resolve_trim
from bgservice.media.types import Shard, TrimWindow, VideoInfo
from bgservice.models import SegmentationModel, get_model
from bgservice.models.onnx_session import CUDA
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.storage import check_output_url, local_input, publish, scratch_dir


@contextlib.contextmanager
def prepared_input(spec: JobSpec, settings: Settings) -> Iterator[tuple[str, VideoInfo, TrimWindow]]:
    """Local copy of the input, its probe, and the validated trim window."""
    check_output_url(spec.output_url)
    with local_input(
        spec.input_url,
        settings,
        service="video" if spec.untrusted else None,
        field="videoUrl",
        resolve_asset=spec.resolve_asset,
    ) as path:
        info = probe(path, settings)
        window = resolve_trim(info, spec.start, spec.end, settings)
        yield path, info, window


BEST_MODEL = "modnet"


class JobShards:
    """What the shards of one job share in one process (the one-process engine; never a Ray Segmenter,
    whose shards come from other processes): the job's :class:`~bgservice.matte.FrameCache` and each
    worker thread's alpha buffer (a fresh 1080p float frame costs more in page faults than the maths that
    fills it). Dropped with the job, so nothing stays allocated between jobs. ``cache_frames``: the
    frame cache's capacity."""

    def __init__(self, cache_frames: int) -> None:
        self.cache = FrameCache(cache_frames)
        self._local = threading.local()

    def alpha_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's float32 buffer of ``shape`` (N, H, W), reused while the shape holds."""
        buf: np.ndarray | None = getattr(self._local, "alpha", None)
        if buf is None or buf.shape != shape:
            self._local.alpha = None  # drop the old one before allocating
            buf = self._local.alpha = np.empty(shape, np.float32)
        return buf


class ShardProcessor:
    """Segment, refine and composite one shard. Loads the models once; reused for every shard and job.

    Quality: ``fast`` runs ``settings.model`` (BGSERVICE_MODEL, Selfie by default) with
    :meth:`MatteConfig.fast`; ``best`` runs MODNet with :meth:`MatteConfig.best` (loaded on the first job
    that asks for it). A job's ``quality`` (``None``: BGSERVICE_QUALITY) of ``auto`` is decided here, by
    the process that runs the models: ``best`` when this process's model session runs on ONNX Runtime's
    CUDA provider, else ``fast`` -- so a CPU head node never decides for a GPU pool.
    """

    def __init__(self, settings: Settings, model: SegmentationModel | None = None) -> None:
        self.settings = settings
        self.model = model if model is not None else get_model(settings.model, settings.device)
        self.auto_quality = "best" if CUDA in getattr(self.model, "providers", ()) else "fast"
        self._matters: dict[str, Matter] = {"fast": Matter(self.model, MatteConfig.fast())}
        # shards are cut once per job with the pool's context: enough for either mode
        self._context = max(matter_context(MatteConfig.fast()), matter_context(MatteConfig.best()))

    def resolve_quality(self, requested: str | None) -> str:
        """``fast`` or ``best`` for a job that asked for ``requested`` (None: BGSERVICE_QUALITY)."""
        quality = requested or self.settings.quality
        return self.auto_quality if quality == "auto" else quality

    def matter(self, quality: str) -> Matter:
        m = self._matters.get(quality)
        if m is None:
            model = get_model(BEST_MODEL, self.settings.device)
            m = self._matters[quality] = Matter(model, MatteConfig.for_quality(quality))
        return m

    @property
    def context_before(self) -> int:
        return self._context

    @property
    def context_after(self) -> int:
        return self._context

    def matte(self, shard: Shard, quality: str | None = None, *, job: JobShards | None = None,
              in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(alpha float32 [N,H,W] 0..1, foreground colours uint8 [N,H,W,3]) for the shard's frames, in the
        job's ``quality`` (:meth:`resolve_quality`).

        ``job``: what the shards of one job in this process share (:class:`JobShards`): the alpha goes
        into this thread's buffer there, overwritten by its next shard, and the first pass uses the job's
        frame cache. ``in_place``: the foreground colours are written over ``shard.frames`` (a writable
        array the caller no longer needs)."""
        matter = self.matter(self.resolve_quality(quality))
        alpha_out = job.alpha_buffer(shard.frames.shape[:3]) if job is not None else None
        fg_out = shard.frames if in_place and shard.frames.flags.writeable else None
        return matter(shard.frames, shard.before, shard.after, shard.start, alpha_out=alpha_out,
                      fg_out=fg_out, cache=job.cache if job is not None else None)

    def __call__(
        self, shard: Shard, backdrop: Backdrop | np.ndarray, quality: str | None = None, *,
        job: JobShards | None = None,
    ) -> np.ndarray:
        """The shard's output frames: RGB [N,H,W,3] (composite), RGBA [N,H,W,4] (transparent) or the
        matte [N,H,W,1]. ``backdrop``: the job's, or a bare plate (composite over it). ``job`` (the
        one-process engine): the job's shared state, and the caller is done with ``shard.frames``: a
        writable array may be overwritten with the foreground colours and the composite (never
        object-store memory, which is read-only), saving a fresh 1080p buffer per frame."""
        if isinstance(backdrop, np.ndarray):
            backdrop = Backdrop(plate=backdrop)
        # the frames may take the foreground colours (and then the composite) unless the blurred
        # background still needs them
        composited = backdrop.render not in ("matte", "transparent")
        in_place = job is not None and composited and backdrop.blur_sigma <= 0
        alpha, foreground = self.matte(shard, quality, job=job, in_place=in_place)
        if backdrop.render == "matte":
            return alpha_u8(alpha)
        if backdrop.render == "transparent":
            return to_rgba(foreground, alpha)
        # Blend into the foreground buffer when it is the matte's own copy or the consumed frames (saves a
        # fresh frame's page faults); never into frames the caller still needs.
        owned = (foreground is not shard.frames or in_place) and foreground.flags.writeable
        out = foreground if owned else None
        if backdrop.blur_sigma > 0:
            return composite_blurred(foreground, alpha, shard.frames, backdrop.blur_sigma, out=out)
        plate = shard.background if shard.background is not None else backdrop.plate
        if plate is None:
            raise ValueError(f"shard {shard.index}: no background to composite over")
        return composite(foreground, alpha, plate, out=out)


def matter_context(cfg: MatteConfig) -> int:
    """Context frames a :class:`Matter` with ``cfg`` may read on each side (an upper bound)."""
    ctx = (cfg.temporal_radius if cfg.temporal else 0) + (cfg.crop_window if cfg.crop_pass else 0)
    ctx = max(ctx, cfg.gate_hold if cfg.gate else 0)
    # the nearest sampled prior of the window's edge frames, where frames borrow it
    return ctx + (cfg.prior_every // 2 if cfg.prior_model and cfg.prior_borrowed else 0)


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
        fmt = spec.output_format
        self._container = CONTAINERS[fmt]
        self._video_only = self._scratch / f"video.{self._container}"
        render = spec.render
        channels = 1 if render == "matte" else 4 if render == "transparent" else 3
        try:
            self._writer: VideoWriter | None = VideoWriter(
                str(self._video_only),
                info,
                crf=settings.crf,
                preset=settings.preset,
                end_pts=end_pts,
                fmt=fmt,
                channels=channels,
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
        finalize(
            str(self._video_only),
            self._source,
            self._info,
            self._window,
            str(muxed),
            container=self._container,
            alpha=self._spec.render == "transparent",
        )
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
