"""One job as a Ray DAG: decoder -> Segmenter pool -> compositor (in the encoder) -> encoder.

::

    driver thread (this module)      small messages only: shard heads, leases, statuses, progress
       |  next_shard()            lease(job)             process(shard, backdrop)   push(i, [ref])
       v                              v                        v                         v
    Decoder ---- shard ref ------> SegmenterPool -------> Segmenter xN ---- ref ----> Encoder
    (driver's node)                (detached, shared)      (anywhere, GPU share)      (decoder's node)
                                                                                     Compositor: strict order
                                                                                     VideoWriter, finalize,
                                                                                     atomic publish

- Data moves actor to actor through the object store; the driver only ever ``ray.get``-s small records
  (:class:`~.types.ShardHead`, :class:`~.types.SegmentDone`, progress), never frames.
- Backpressure: at most ``max_shards_in_flight`` shards of a job exist between "asked of the decoder" and
  "written by the encoder" (``ray.wait`` on the small records), so memory is flat in the video's length.
- Decoder and encoder are pinned (``NodeAffinitySchedulingStrategy(soft=False)``) to the driver's node
  unless both input and output are object-store URLs; the encoder always runs beside the decoder, whose
  staged input it muxes the audio from. Neither is restarted: a dead decoder fails the job with
  ``decode_failed``, a dead encoder with ``encode_failed``; a user error they raise keeps its own code.
- Segmenters are restarted and their idempotent tasks retried by Ray; one gone for good is discarded
  from the pool and the shard sent to another (up to ``SEGMENT_ATTEMPTS`` times).
- Cancel: the loop stops, queued tasks are cancelled, the encoder drops its files, the job's actors are
  killed and its leases returned to the pool.
- Counting (:mod:`bgservice.counters`, reported on ``/metrics`` by the runner whose thread drives the
  job): frames as the encoder reports them written, and the bytes the decoder fetched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bgservice.counters import FETCHED_BYTES, FRAMES_PROCESSED
from bgservice.engines.base import CancelToken, JobResult, ProgressFn
from bgservice.engines.ray.iopool import IO_POOL, IOPair
from bgservice.engines.ray.pool import get_pool
from bgservice.engines.ray.types import EncodeProgress, EncodeResult, JobMedia, SegmentDone, ShardHead
from bgservice.errors import (
    BgServiceError,
    DecodeFailed,
    EncodeFailed,
    InternalError,
    JobCancelled,
    unwrap,
)
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.storage import (
    check_output_url,
    is_object_store_url,
    local_input,
    publish,
    scratch_dir,
    split_protocol,
)

log = logging.getLogger(__name__)

SEGMENT_ATTEMPTS = 3  # a shard is sent to another Segmenter this many times if its Segmenter is lost
WAIT_SECONDS = 0.2  # how often the driver loop looks at the cancel flag while nothing happens
CLEANUP_SECONDS = 15.0
_PROCESS_LOCAL = {"memory"}  # fsspec filesystems that live in one process: staged by the driver


_RAY_LOCK = threading.Lock()


def ensure_ray() -> None:
    """Connect to the cluster at ``RAY_ADDRESS`` if set, else start a local Ray (on demand).

    Safe from any thread. A local Ray's processes are started with ``PR_SET_PDEATHSIG``, which Linux
    fires when the *thread* that started them ends, not the process: a local Ray started from a job's
    thread would be killed (GCS and raylet together) as soon as that job finished, and Ray ends a
    driver that lost its GCS with exit 1 a minute later. So outside the main thread the local Ray is
    started from a daemon thread that lives as long as this process.
    """
    import ray

    with _RAY_LOCK:
        if ray.is_initialized():
            return
        address = os.environ.get("RAY_ADDRESS") or None
        if address:
            # ERROR: the CLI's stderr is one line on failure; Ray's start-up notices go to its own logs.
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        elif threading.current_thread() is threading.main_thread():
            _start_local_ray()
        else:
            _start_local_ray_on_owner_thread()


def _start_local_ray() -> None:
    import ray

    # A new local Ray for this process (never an unrelated cluster some other process left running:
    # that is what RAY_ADDRESS is for); no dashboard (memory, start-up time on a laptop).
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def _start_local_ray_on_owner_thread() -> None:
    started = threading.Event()
    failure: list[BaseException] = []

    def own() -> None:
        try:
            _start_local_ray()
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
            started.set()
            return
        started.set()
        threading.Event().wait()  # never ends: the local Ray's processes live as long as this thread

    threading.Thread(target=own, name="bgservice-ray-owner", daemon=True).start()
    started.wait()
    if failure:
        raise failure[0]


def stage_error(exc: BaseException, stage: str) -> BgServiceError:
    """Map a failure seen at ``stage`` (decode / encode / segment) to a project error with a clear code."""
    from ray.exceptions import RayActorError

    inner = unwrap(exc)
    if isinstance(inner, BgServiceError):
        return inner
    what = f"{type(inner).__name__}: {inner}"[:500]
    lost = isinstance(inner, RayActorError)
    if stage == "decode":
        return DecodeFailed(f"the decoder {'process died' if lost else 'failed'}: {what}")
    if stage == "encode":
        return EncodeFailed(f"the encoder {'process died' if lost else 'failed'}: {what}")
    return InternalError(f"{stage}: {what}")


@dataclass
class JobStats:
    """What the DAG saw while running a job (operators, tests)."""

    segmenter_pids: set[int] = field(default_factory=set)
    shards: int = 0
    segment_retries: int = 0
    decoder_actor_id: str = ""
    encoder_actor_id: str = ""
    timeline: dict[str, float] = field(default_factory=dict)  # phase -> seconds since submit
    # matte qualities the Segmenters ran (one, unless a pool mixes GPU and CPU Segmenters under "auto")
    qualities: list[str] = field(default_factory=list)

    def mark(self, phase: str, t0: float) -> None:
        self.timeline[phase] = round(time.monotonic() - t0, 3)


class JobHandle:
    """A job running on Ray: ``progress()``, ``cancel()``, ``result()``. Create with :func:`submit`."""

    def __init__(
        self,
        spec: JobSpec,
        settings: Settings,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.job_id = uuid.uuid4().hex[:12]
        self.spec = spec
        self.stats = JobStats()
        self._settings = settings
        self._on_progress = progress
        self._external_cancel = cancel
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._frames_done = 0
        self._frames_total = 0
        self._result: JobResult | None = None
        self._error: BgServiceError | None = None
        self.decoder: Any = None
        self.encoder: Any = None
        self._thread = threading.Thread(target=self._main, name=f"bgservice-job-{self.job_id}", daemon=True)

    # --- the public side ------------------------------------------------------------------------
    def start(self) -> JobHandle:
        self._thread.start()
        return self

    def progress(self) -> tuple[int, int]:
        """(frames done, frames total); total is 0 until the input has been probed."""
        with self._lock:
            return self._frames_done, self._frames_total

    def cancel(self) -> None:
        """Stop the job: its work stops, its actors go, its Segmenter leases return to the pool."""
        self._cancel.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._done.wait(0.5 if left is None else min(0.5, left))
        return True

    def result(self, timeout: float | None = None) -> JobResult:
        """The job's result; raises its :mod:`bgservice.errors` error (``JobCancelled`` if cancelled)."""
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.job_id} still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def error(self) -> BgServiceError | None:
        return self._error

    # --- the driver loop ---------------------------------------------------------------------------
    def _cancelled(self) -> bool:
        ext = self._external_cancel
        return self._cancel.is_set() or (ext is not None and ext.is_set())

    def _set_progress(self, done: int, total: int) -> None:
        with self._lock:
            self._frames_done, self._frames_total = done, total
        if self._on_progress is not None:
            with contextlib.suppress(Exception):
                self._on_progress(done, total)

    def _main(self) -> None:
        try:
            self._result = _JobRun(self).run()
        except BaseException as exc:
            self._error = stage_error(exc, "job")
            if isinstance(self._error, InternalError):
                log.error("job %s failed", self.job_id, exc_info=exc)
        finally:
            self._done.set()


def _get(ref: Any, stage: str, timeout: float | None = None) -> Any:
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except BaseException as exc:
        raise stage_error(exc, stage) from exc


class _JobRun:
    """The state of one job's driver loop (lives in the job's thread)."""

    def __init__(self, handle: JobHandle) -> None:
        self.h = handle
        self.settings = handle._settings
        self.spec = handle.spec
        self.pool: Any = None
        self.io: IOPair | None = None
        self.stack = contextlib.ExitStack()
        self.pending: dict[Any, tuple[Any, ...]] = {}  # small ref -> (kind, index, extra...)
        self.shard_refs: dict[int, Any] = {}
        self.leases: dict[int, int] = {}  # shard index -> pool member key
        self.attempts: dict[int, int] = {}
        self.requested = 0
        self.n_shards: int | None = None
        self.written_shards = 0
        self.frames_written = 0
        self.total = 0
        self.t0 = time.monotonic()

    def run(self) -> JobResult:
        import ray

        h, settings, spec = self.h, self.settings, self.spec
        ok = False
        try:
            check_output_url(spec.output_url)
            self.pool = get_pool(settings)
            driver_node = ray.get_runtime_context().get_node_id()
            dec_spec, enc_spec, final_local = self._stage(spec)
            pinned = not (is_object_store_url(spec.input_url) and is_object_store_url(spec.output_url))
            context_ref = self.pool.context.remote()
            self.io = IO_POOL.acquire(driver_node if pinned else None)
            h.decoder, h.encoder = self.io.decoder, self.io.encoder
            h.stats.decoder_actor_id = h.decoder._actor_id.hex()
            h.stats.encoder_actor_id = h.encoder._actor_id.hex()
            IO_POOL.keep_spare(self.io.node_id)
            h.stats.mark("io", self.t0)
            before, after = self._wait_get(context_ref, "segment")
            h.stats.mark("pool", self.t0)
            media_ref, backdrop_ref = h.decoder.open.options(num_returns=2).remote(
                dec_spec, settings, settings.shard_frames, before, after
            )
            media: JobMedia = self._wait_get(media_ref, "decode")
            FETCHED_BYTES.add(media.fetched_bytes)  # fetched in the decoder's process: counted in ours
            h.stats.mark("decoder_open", self.t0)
            self.total = media.total_frames
            h._set_progress(0, self.total)
            self._wait_get(h.encoder.open.remote(enc_spec, media, settings), "encode")
            h.stats.mark("encoder_open", self.t0)
            self._pump(backdrop_ref)
            h.stats.mark("frames_written", self.t0)
            encoded: EncodeResult = self._wait_get(h.encoder.finish.remote(), "encode")
            h.stats.mark("published", self.t0)
            if final_local is not None:
                publish(final_local, spec.output_url)
            ok = True
            return JobResult(
                output_url=spec.output_url,
                duration_seconds=round(media.window.duration, 3),
                frames=encoded.frames,
                width=encoded.width,
                height=encoded.height,
                has_audio=media.info.audio is not None,
                quality="+".join(h.stats.qualities),
            )
        finally:
            self._cleanup(ok)

    def _stage(self, spec: JobSpec) -> tuple[JobSpec, JobSpec, Path | None]:
        """Process-local filesystems (``memory://``) cannot be seen by the actors: the driver stages them."""
        dec_spec = enc_spec = spec
        final_local: Path | None = None
        if split_protocol(spec.input_url)[0] in _PROCESS_LOCAL:
            path = self.stack.enter_context(local_input(spec.input_url, self.settings))
            dec_spec = replace(spec, input_url=path)
        if split_protocol(spec.output_url)[0] in _PROCESS_LOCAL:
            scratch = self.stack.enter_context(scratch_dir(self.settings, prefix="bgservice-dag-"))
            final_local = scratch / f"result{spec.format_info.extension}"
            enc_spec = replace(spec, output_url=str(final_local))
        return dec_spec, enc_spec, final_local

    def _check_cancel(self) -> None:
        import ray

        if not ray.is_initialized():  # never let a Ray call start a hidden local Ray (auto-init)
            raise InternalError("this process was disconnected from Ray while the job ran")
        if self.h._cancelled():
            raise JobCancelled("the job was cancelled")

    def _wait_get(self, ref: Any, stage: str) -> Any:
        """``ray.get`` of one small record, watching the cancel flag meanwhile."""
        import ray

        while True:
            self._check_cancel()
            ready, _ = ray.wait([ref], timeout=WAIT_SECONDS, fetch_local=False)
            if ready:
                return _get(ref, stage)

    # --- the streaming loop ------------------------------------------------------------------------
    def _request_shards(self) -> None:
        limit = self.settings.max_shards_in_flight
        while self.n_shards is None and self.requested - self.written_shards < limit:
            head_ref, shard_ref = self.h.decoder.next_shard.options(num_returns=2).remote()
            self.pending[head_ref] = ("head", self.requested, shard_ref)
            self.requested += 1

    def _lease(self, index: int) -> None:
        self.pending[self.pool.lease.remote(self.h.job_id)] = ("lease", index)

    def _pump(self, backdrop_ref: Any) -> None:
        import ray

        self._request_shards()
        while self.n_shards is None or self.written_shards < self.n_shards:
            self._check_cancel()
            refs = list(self.pending)
            if not refs:
                raise InternalError("the job stalled: nothing in flight")
            ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS, fetch_local=False)
            if not ready:
                continue
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            for ref in ready:
                self._handle(ref, self.pending.pop(ref), backdrop_ref)
            self._request_shards()

    def _handle(self, ref: Any, what: tuple[Any, ...], backdrop_ref: Any) -> None:
        from ray.exceptions import RayActorError

        kind, index = what[0], what[1]
        h = self.h
        if kind == "head":
            head: ShardHead | None = _get(ref, "decode")
            if head is None:
                self.n_shards = index if self.n_shards is None else min(self.n_shards, index)
                return
            self.shard_refs[head.index] = what[2]
            self._lease(head.index)
        elif kind == "lease":
            try:
                lease = _get_raw(ref)
            except RayActorError:
                # the pool manager was lost (its Segmenters with it); Ray restarts it: ask again
                self.attempts[index] = self.attempts.get(index, 0) + 1
                if self.attempts[index] >= SEGMENT_ATTEMPTS:
                    raise InternalError("the Segmenter pool was lost repeatedly") from None
                self._lease(index)
                return
            except BaseException as exc:
                raise stage_error(exc, "segment") from exc
            if lease is None:  # the pool dropped this job's requests: it cannot start Segmenters
                _get(self.pool.ready.remote(), "segment")  # raises the pool's reason
                raise InternalError("the Segmenter pool dropped this job")
            key, segmenter = lease
            self.leases[index] = key
            status_ref, out_ref = segmenter.process.options(num_returns=2).remote(
                self.shard_refs[index], backdrop_ref, self.spec.quality
            )
            self.pending[status_ref] = ("segment", index, key, out_ref)
        elif kind == "segment":
            key, out_ref = what[2], what[3]
            try:
                done: SegmentDone = _get_raw(ref)
            except RayActorError:
                # Ray already restarted and retried; this Segmenter is gone for good: use another one.
                self.leases.pop(index, None)
                self.pool.discard.remote(key)
                self.attempts[index] = self.attempts.get(index, 0) + 1
                h.stats.segment_retries += 1
                if self.attempts[index] >= SEGMENT_ATTEMPTS:
                    raise InternalError(f"shard {index}: {SEGMENT_ATTEMPTS} Segmenters lost") from None
                self._lease(index)
                return
            except BaseException as exc:
                raise stage_error(exc, "segment") from exc
            self.pool.release.remote(self.leases.pop(index, key), h.job_id)
            h.stats.segmenter_pids.add(done.pid)
            if done.quality and done.quality not in h.stats.qualities:
                h.stats.qualities.append(done.quality)
            if not h.stats.shards:
                h.stats.mark("first_shard", self.t0)
            h.stats.shards += 1
            del self.shard_refs[index]
            self.pending[h.encoder.push.remote(index, [out_ref])] = ("push", index)
        elif kind == "push":
            progress: EncodeProgress = _get(ref, "encode")
            if progress.shards_written > self.written_shards:
                self.written_shards = progress.shards_written
                FRAMES_PROCESSED.add(progress.frames_written - self.frames_written)
                self.frames_written = progress.frames_written
                h._set_progress(progress.frames_written, self.total)

    # --- the end, whatever it is ----------------------------------------------------------------------
    def _cleanup(self, ok: bool) -> None:
        import ray

        h = self.h
        try:
            if self.pool is not None:  # returns every lease the job holds, even one granted just now
                self.pool.forget_job.remote(h.job_id)
            self.leases.clear()
            if not ok:
                for ref, what in list(self.pending.items()):
                    if what[0] in ("head", "segment"):
                        with contextlib.suppress(Exception):
                            ray.cancel(ref)
            self.pending.clear()
            self.shard_refs.clear()
            closing = []
            if h.encoder is not None and not ok:
                closing.append(h.encoder.abort.remote())
            if h.decoder is not None:
                closing.append(h.decoder.close.remote())
            if closing:
                with contextlib.suppress(Exception):
                    ray.wait(closing, num_returns=len(closing), timeout=CLEANUP_SECONDS)
            if self.io is not None:
                IO_POOL.release(self.io, reusable=ok)
        finally:
            self.stack.close()


def _get_raw(ref: Any) -> Any:
    import ray

    return ray.get(ref)


def submit(
    spec: JobSpec,
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> JobHandle:
    """Start a job on Ray (local, or the cluster at ``RAY_ADDRESS``); returns at once."""
    ensure_ray()
    return JobHandle(spec, settings, progress, cancel).start()


def warm_up(settings: Settings, jobs: int = 1) -> None:
    """Start the Segmenter pool and ``jobs`` decoder/encoder pairs on this node, and wait for them.

    Optional: a long-lived driver (the service, a batch run) calls it once so that its first jobs do not
    pay for starting processes.
    """
    import ray

    ensure_ray()
    pool = get_pool(settings)
    IO_POOL.warm(ray.get_runtime_context().get_node_id(), jobs)
    ray.get(pool.ready.remote())


def run_job_ray(
    spec: JobSpec,
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """The Ray twin of :func:`bgservice.engines.local.run_job`: same arguments, same result, same errors."""
    handle = submit(spec, settings, progress=progress, cancel=cancel)
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle.cancel()
        handle.wait(CLEANUP_SECONDS + 5)
        raise


class RayEngine:
    """The job as a Ray DAG on the cluster at ``RAY_ADDRESS``, else on a local Ray started on demand."""

    name = "ray"

    def run(
        self,
        spec: JobSpec,
        settings: Settings,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> JobResult:
        return run_job_ray(spec, settings, progress=progress, cancel=cancel)
