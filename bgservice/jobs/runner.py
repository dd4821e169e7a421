"""The runner: claims queued jobs from the store and drives each through an engine.

::

    store (SQLite / PostgreSQL)                      Runner (a detached Ray actor in the service)
      queued ──claim (atomic, fair by key)──▶  one thread per job: engine.run(spec, progress, cancel)
      running ◀── heartbeat every 0.5 s ─────  lease renewed, progress written, cancel_requested read
      completed | failed | cancelled ◀──────── the job's outcome (or queued again: release)

- :class:`Runner` is a plain class (no Ray needed: the batch runner drives it in-process); in the
  service it lives in :class:`RunnerActor`, a detached actor named ``bgservice-runner-<version>-<hash of
  the settings>`` (:func:`runner_name`), started with :func:`ensure_runner`.
- Leases: a claimed job holds a lease of ``BGSERVICE_JOB_LEASE_SECONDS`` that each heartbeat renews. A
  runner that dies stops renewing: any runner's sweep (:meth:`JobStore.requeue_expired`) queues the job
  again (``attempts`` grows; after :data:`~bgservice.jobs.record.MAX_ATTEMPTS` it fails ``internal``).
  Outputs are published atomically at the job's fixed output URL, so a job run twice leaves one result.
- Generations: a starting runner bumps the ``runner`` generation row (a deploy); a runner that sees a
  newer generation than its own stops claiming, releases its jobs (back to ``queued``, no attempt
  counted) and exits, so a deploy never keeps running old code. Runners of the same name (same code,
  same settings) adopt the newer generation instead.
- Graceful stop (:func:`stop_runner`, SIGTERM to ``python -m bgservice.jobs.runner``): the same release.
- Cancel: ``cancel_requested`` (set by :meth:`JobStore.cancel`) is read at the next heartbeat; the job's
  work stops (the DAG's actors go, its Segmenter leases return) and it ends ``cancelled`` unless it
  completed first.
- Timeout: a job running longer than ``BGSERVICE_JOB_TIMEOUT_SECONDS`` is stopped and fails ``timeout``.
- Concurrency: ``BGSERVICE_MAX_RUNNING_JOBS`` (default: what the cluster's CPUs fit beside the Segmenter
  pool and the HTTP service, 2 on 2 CPUs) and ``BGSERVICE_MAX_RUNNING_JOBS_PER_KEY`` go to every claim.
- Metrics: the jobs' drivers run in the runner's process, so its :mod:`bgservice.counters` (frames
  processed, bytes fetched) are the service's; :meth:`RunnerActor.metrics` adds its Segmenter pool's size
  and busy count, and ``/metrics`` asks for them at scrape time (:func:`runner_metrics`). A new runner (a
  restart, a deploy) counts from zero again.

Run in the foreground (the process owns a local Ray unless ``RAY_ADDRESS`` is set; SIGTERM or Ctrl-C
stops it gracefully)::

    python -m bgservice.jobs.runner
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

from bgservice import counters
from bgservice.engines import Engine, get_engine
from bgservice.errors import (
    BgServiceError,
    InvalidSettings,
    JobTimeout,
    ServiceUnavailable,
    UserError,
    as_service_error,
)
from bgservice.jobs.record import MAX_ATTEMPTS, JobRecord
from bgservice.jobs.store import JobStore
from bgservice.settings import Settings, get_settings
from bgservice.spec import JobSpec

log = logging.getLogger(__name__)

RUNNER_PREFIX = "bgservice-runner"
TICK_SECONDS = 0.1  # the loop's pace while nothing wakes it
HEARTBEAT_SECONDS = 0.5  # per job: lease renewal, progress (at most twice a second), cancel_requested
SWEEP_SECONDS = 2.0  # lapsed leases re-queued, timed-out jobs failed (every runner sweeps)
GENERATION_SECONDS = 1.0  # how often a runner looks for a newer generation
REAP_SECONDS = 10.0  # the actor: how often it stops idle Segmenter pools left by older code or settings
METRICS_SECONDS = 2.0  # the longest /metrics waits for the runner's figures ...
POOL_LOAD_SECONDS = 1.0  # ... of which the runner waits this long for its pool's
STOP_SECONDS = 60.0  # a graceful stop waits this long for the jobs to let go

# Why a runner stops a job: the user asked; it ran too long; the runner is stopping or retired (the job
# goes back to the queue); the lease is no longer ours (another runner may hold the job now).
CANCEL, TIMEOUT, RELEASE, LOST = "cancel", "timeout", "release", "lost"


class _StopToken:
    """The engine's cancel token, with the reason it was set (the first reason wins)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass
class _Active:
    record: JobRecord
    token: _StopToken = field(default_factory=_StopToken)
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
    progress: float = 0.0
    written: float = -1.0
    last_beat: float = field(default_factory=time.monotonic)
    done: bool = False


def runner_name(settings: Settings) -> str:
    """``bgservice-runner-<version>-<hash of every setting>``: new code or settings, a new runner."""
    from bgservice.engines.ray.naming import versioned_name

    return versioned_name(RUNNER_PREFIX, settings)


def default_max_running(settings: Settings, engine: str) -> int:
    """``BGSERVICE_MAX_RUNNING_JOBS``, else what the Ray cluster's CPUs fit beside the pool and the HTTP
    service (2 on 2 CPUs); 1 for the one-process engine."""
    if settings.max_running_jobs is not None:
        return settings.max_running_jobs
    if engine != "ray":
        return 1
    import ray

    from bgservice.engines.ray.resources import SERVICE_RESERVE_CPUS, jobs_that_fit

    cpus = float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]
    return jobs_that_fit(cpus, settings.pool_min, settings.segmenter_cpus, SERVICE_RESERVE_CPUS)


class Runner:
    """Claims queued jobs and runs each in a thread through ``engine``; :meth:`start` it, then
    :meth:`stop` it (or let a newer generation retire it).

    ``store``: default the one the settings name (and closed with the runner). ``generation``: default
    a new one (bumped at :meth:`start`), which retires every older runner. ``max_running``: default
    :func:`default_max_running`.
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore | None = None,
        *,
        engine: Engine | str = "ray",
        generation: int | None = None,
        name: str | None = None,
        max_running: int | None = None,
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store if store is not None else JobStore.from_settings(settings)
        self.engine: Engine = get_engine(engine) if isinstance(engine, str) else engine
        self.name = name or runner_name(settings)
        self.runner_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.generation = generation
        self.max_running = max_running
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping: str | None = None  # None, or why: "stopped" | "retired" | "abandoned"
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.claimed = 0  # jobs this runner has claimed (operators, tests)

    # --- life -----------------------------------------------------------------------------------
    def start(self) -> Runner:
        if self.generation is None:
            self.generation = self.store.bump_generation()
        if self.max_running is None:
            self.max_running = default_max_running(self.settings, self.engine.name)
        self._thread = threading.Thread(target=self._loop, name=f"bgservice-runner-{self.runner_id}")
        self._thread.daemon = True
        self._thread.start()
        log.info("runner %s started (generation %s)", self.runner_id, self.generation)
        return self

    def stop(self, graceful: bool = True) -> None:
        """Stop claiming and stop every job. ``graceful``: each goes back to ``queued`` with its attempt
        given back; else the jobs are left ``running`` (their leases lapse, as if this runner died)."""
        self._begin_stop("stopped" if graceful else "abandoned")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runner has stopped (its jobs let go); False on timeout."""
        return self._stopped.wait(timeout)

    def adopt(self, generation: int) -> bool:
        """Take a newer generation as ours (a runner of the same name was asked to start); False when this
        runner is already stopping."""
        with self._lock:
            if self._stopping is not None:
                return False
            if self.generation is None or generation > self.generation:
                self.generation = generation
            return True

    @property
    def stopping(self) -> str | None:
        return self._stopping

    def status(self) -> dict[str, Any]:
        with self._lock:
            jobs = {job_id: round(a.progress, 3) for job_id, a in self._active.items()}
        return {
            "name": self.name,
            "runner_id": self.runner_id,
            "generation": self.generation,
            "max_running": self.max_running,
            "stopping": self._stopping,
            "stopped": self._stopped.is_set(),
            "claimed": self.claimed,
            "jobs": jobs,
        }

    def _begin_stop(self, why: str) -> None:
        with self._lock:
            if self._stopping is None:
                self._stopping = why
            active = list(self._active.values())
        if why != "abandoned":
            for a in active:
                a.token.set(RELEASE)
        else:
            for a in active:
                a.token.set(LOST)
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_sweep = next_generation = 0.0
        try:
            while True:
                now = time.monotonic()
                self._forget_finished()
                if self._stopping is not None:
                    with self._lock:
                        if not self._active:
                            break
                try:
                    if self._stopping is None and now >= next_generation:
                        next_generation = now + GENERATION_SECONDS
                        current = self.store.generation()
                        if self.generation is not None and current > self.generation:
                            log.warning("runner %s retired by generation %s", self.runner_id, current)
                            self._begin_stop("retired")
                    self._beat(now)
                    if self._stopping is None and now >= next_sweep:
                        next_sweep = now + SWEEP_SECONDS
                        self.store.requeue_expired(max_attempts=MAX_ATTEMPTS)
                        self.store.fail_timed_out(self.settings.job_timeout_seconds)
                    if self._stopping is None:
                        self._claim()
                except Exception:  # the database is away for a moment: keep going, try again
                    log.exception("runner %s: store error", self.runner_id)
                    self._wake.wait(1.0)
                self._wake.wait(TICK_SECONDS)
                self._wake.clear()
        finally:
            if self._own_store:
                with contextlib.suppress(Exception):
                    self.store.close()
            self._stopped.set()
            log.info("runner %s stopped (%s)", self.runner_id, self._stopping)

    def _forget_finished(self) -> None:
        with self._lock:
            for job_id in [j for j, a in self._active.items() if a.done]:
                del self._active[job_id]

    def _claim(self) -> None:
        limit = self.max_running or 1
        while True:
            with self._lock:
                if len(self._active) >= limit or self._stopping is not None:
                    return
            record = self.store.claim(
                self.runner_id,
                lease_seconds=self.settings.job_lease_seconds,
                max_running=limit,
                max_running_per_key=self.settings.max_running_jobs_per_key,
            )
            if record is None:
                return
            self.claimed += 1
            self._launch(record)

    def _launch(self, record: JobRecord) -> None:
        active = _Active(record)
        active.thread = threading.Thread(
            target=self._run_job, args=(active,), name=f"bgservice-job-{record.id}", daemon=True
        )
        with self._lock:
            self._active[record.id] = active
            stopping = self._stopping
        if stopping is not None:  # claimed while a stop began: let it go at once
            active.token.set(RELEASE if stopping != "abandoned" else LOST)
        active.thread.start()

    def _beat(self, now: float) -> None:
        """Renew leases, write progress, pick up cancel requests, enforce the timeout."""
        interval = min(HEARTBEAT_SECONDS, self.settings.job_lease_seconds / 3)
        with self._lock:
            active = [a for a in self._active.values() if not a.done]
        for a in active:
            if now - a.started > self.settings.job_timeout_seconds:
                a.token.set(TIMEOUT)
            if now - a.last_beat < interval or a.token.reason == LOST:
                continue
            progress = a.progress if a.progress != a.written else None
            beat = self.store.heartbeat(
                a.record.id, self.runner_id, lease_seconds=self.settings.job_lease_seconds, progress=progress
            )
            a.last_beat = now
            if progress is not None:
                a.written = progress
            if not beat.ok:
                a.token.set(LOST)
            elif beat.cancel_requested:
                a.token.set(CANCEL)

    # --- one job ------------------------------------------------------------------------------------
    def _run_job(self, active: _Active) -> None:
        record = active.record

        def on_progress(done: int, total: int) -> None:
            if total > 0:
                active.progress = min(1.0, max(0.0, done / total))

        result: dict[str, Any] | None = None
        error: BgServiceError | None = None
        try:
            if active.token.is_set():
                raise _Released
            spec = JobSpec.from_dict(record.spec)
            outcome = self.engine.run(spec, self.settings, progress=on_progress, cancel=active.token)
            result = {**asdict(outcome), "engine": self.engine.name}
        except _Released:
            pass
        except BaseException as exc:  # every outcome is written down; nothing escapes the thread
            error = as_service_error(exc)
            if error.code == "internal":
                log.error("job %s failed", record.id, exc_info=exc)
        try:
            self._finish(active, result, error)
        except Exception as exc:  # the job ended elsewhere meanwhile (swept, lease lost, cancelled)
            log.warning("job %s: cannot record its end: %s", record.id, exc)
        finally:
            active.done = True
            self._wake.set()

    def _finish(self, active: _Active, result: dict[str, Any] | None, error: BgServiceError | None) -> None:
        job_id, reason = active.record.id, active.token.reason
        if reason == LOST:
            return  # not ours any more: whoever holds the job now writes its end
        if result is not None:  # completed, even if a cancel or a stop came too late
            self.store.complete(job_id, self.runner_id, result)
            return
        if reason == CANCEL:
            self.store.mark_cancelled(job_id, self.runner_id)
        elif reason == TIMEOUT:
            limit = self.settings.job_timeout_seconds
            message = f"the job ran longer than {limit:g} s (BGSERVICE_JOB_TIMEOUT_SECONDS)"
            self.store.fail(job_id, self.runner_id, JobTimeout(message).to_dict())
        elif reason == RELEASE or (error is not None and self._retired_meanwhile(error)):
            self.store.release(job_id, self.runner_id)
        else:
            assert error is not None
            self.store.fail(job_id, self.runner_id, error.to_dict())

    def _retired_meanwhile(self, error: BgServiceError) -> bool:
        """A job that broke while a newer runner took over (it may reap our pool) goes back to the queue."""
        if isinstance(error, UserError) or self.generation is None:
            return False
        try:
            return self.store.generation() > self.generation
        except Exception:
            return False


class _Released(Exception):
    """The job was let go before it started."""


# --- the detached actor and its API ------------------------------------------------------------------
class RunnerActor:
    """A :class:`Runner` as a detached Ray actor; it exits when its runner stops (retired or stopped)."""

    def __init__(self, settings: Settings, generation: int, engine: str = "ray") -> None:
        self._runner = Runner(settings, engine=engine, generation=generation).start()
        self._pool = ""
        if engine == "ray":
            from bgservice.engines.ray.pool import pool_name

            self._pool = pool_name(settings)
        threading.Thread(target=self._watch, name="bgservice-runner-watch", daemon=True).start()

    def _watch(self) -> None:
        import ray

        next_reap = time.monotonic() + 1.0
        while not self._runner.wait(1.0):
            if self._pool and time.monotonic() >= next_reap:
                next_reap = time.monotonic() + REAP_SECONDS
                with contextlib.suppress(Exception):
                    if runner_names() == [self._runner.name]:  # no older runner left to finish a job
                        from bgservice.engines.ray.pool import reap_stale_pools

                        reap_stale_pools(keep=self._pool)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def status(self) -> dict[str, Any]:
        return self._runner.status()

    def metrics(self) -> dict[str, Any]:
        """This process's counters (the jobs' drivers run here) by name, the runner's ``name`` and
        ``pool``: ``{"size", "busy"}`` of its Segmenter pool (zeros before a job has started it; ``None``
        when it does not answer within :data:`POOL_LOAD_SECONDS`, or with the one-process engine)."""
        figures: dict[str, Any] = {**counters.snapshot(), "name": self._runner.name, "pool": None}
        if self._pool:
            from bgservice.engines.ray.pool import pool_load

            load = pool_load(self._pool, POOL_LOAD_SECONDS)
            if load is not None:
                figures["pool"] = {"size": load["segmenters"], "busy": load["busy"]}
        return figures

    def adopt(self, generation: int) -> bool:
        return self._runner.adopt(generation)

    def stop(self, graceful: bool = True, timeout: float = STOP_SECONDS) -> dict[str, Any]:
        self._runner.stop(graceful)
        self._runner.wait(timeout)
        return self._runner.status()


def _namespace() -> str:
    from bgservice.engines.ray.naming import NAMESPACE

    return NAMESPACE


def runner_names() -> list[str]:
    """Names of every runner actor alive on the cluster (any version, any settings)."""
    from ray.util import list_named_actors

    ns = _namespace()
    return sorted(
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a.get("namespace") == ns and str(a.get("name", "")).startswith(RUNNER_PREFIX)
    )


def _lookup(name: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=_namespace())
    except ValueError:
        return None


def _wait_gone(name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _lookup(name) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _actor_options(settings: Settings, name: str) -> dict[str, Any]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {
        "name": name,
        "namespace": _namespace(),
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": 0,  # it only waits on jobs: never let it keep a job from starting
        "max_restarts": 3,  # a restarted runner is a new runner: its old leases lapse, the jobs re-queue
        "max_concurrency": 8,  # status / stop answer while the loop and the jobs run
    }
    url = settings.database_url or ""
    if not url.startswith("postgresql"):
        # An embedded SQLite file lives on this node's disk: the runner must run here too.
        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return options


def ensure_runner(settings: Settings, *, engine: str = "ray", timeout: float = 120.0) -> Any:
    """The runner for these settings and this code, started if none is (connects to Ray first: the
    cluster at ``RAY_ADDRESS``, else a local Ray owned by this process). Returns its actor handle.

    Starting one bumps the generation, which retires runners of other code or settings (their jobs go
    back to the queue and this one takes them). Calling it again (another replica) finds the same
    runner. Raises :class:`~bgservice.errors.ServiceUnavailable` when the runner does not come up.

    Call it when a replica starts, not from health checks: during a rolling deploy an old replica that
    re-ensured its runner would retire the new one. Readiness asks :func:`runner_alive`.
    """
    import ray

    from bgservice.engines.ray.dag import ensure_ray

    ensure_ray()
    name = runner_name(settings)
    deadline = time.monotonic() + timeout
    store = JobStore.from_settings(settings)
    try:
        while True:
            handle = _lookup(name)
            if handle is not None:
                with contextlib.suppress(Exception):
                    if ray.get(handle.adopt.remote(store.generation()), timeout=30):
                        return handle
                # stopping, or dead: wait until its name is free, then start a new one
                _wait_gone(name, max(1.0, deadline - time.monotonic()))
            else:
                generation = store.bump_generation()
                actor: Any = ray.remote(RunnerActor).options(**_actor_options(settings, name))
                handle = actor.remote(settings, generation, engine)
                left = max(1.0, deadline - time.monotonic())
                try:
                    if ray.get(handle.adopt.remote(store.generation()), timeout=left):
                        return handle
                except Exception as exc:
                    raise ServiceUnavailable(f"the job runner {name} did not start: {exc}"[:2000]) from exc
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"the job runner {name} did not start")
            time.sleep(0.2)
    finally:
        store.close()


def runner_alive(settings: Settings) -> bool:
    """Whether the runner for these settings runs and claims jobs (not stopping, not retired)."""
    import ray

    handle = _lookup(runner_name(settings))
    if handle is None:
        return False
    try:
        status: dict[str, Any] = ray.get(handle.status.remote(), timeout=10)
    except Exception:
        return False
    return status.get("stopping") is None


def runner_metrics(settings: Settings, timeout: float = METRICS_SECONDS) -> dict[str, Any] | None:
    """:meth:`RunnerActor.metrics` of the runner for these settings, or ``None`` when none answers within
    ``timeout`` seconds. Never raises, never starts Ray (``None`` when this process is not connected),
    and returns within ``timeout`` even when Ray itself does not answer (the question runs in a daemon
    thread that is left behind)."""
    answer: list[dict[str, Any]] = []

    def ask() -> None:
        import ray

        with contextlib.suppress(Exception):
            if not ray.is_initialized():
                return
            handle = _lookup(runner_name(settings))
            if handle is not None:
                answer.append(ray.get(handle.metrics.remote(), timeout=timeout))

    worker = threading.Thread(target=ask, name="bgservice-runner-metrics", daemon=True)
    worker.start()
    worker.join(timeout)
    return answer[0] if answer else None


def stop_runner(settings: Settings, graceful: bool = True, timeout: float = STOP_SECONDS) -> bool:
    """Stop the runner for these settings. ``graceful``: its jobs go back to ``queued`` (no attempt
    counted); else it is killed and its jobs' leases lapse. True once it is gone (or was not there)."""
    import ray

    name = runner_name(settings)
    handle = _lookup(name)
    if handle is None:
        return True
    if graceful:
        with contextlib.suppress(Exception):  # the actor exits as it answers: a lost reply is fine
            ray.get(handle.stop.remote(True, timeout), timeout=timeout + 10)
    else:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
    return _wait_gone(name, 30.0)


# --- the foreground command ----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bgservice.jobs.runner``: start the runner and wait; SIGTERM / Ctrl-C stop it
    gracefully (jobs back to ``queued``) and, when this process started the local Ray, stop Ray too.
    Exits 0 when stopped or retired by a newer runner, 2 on bad settings, 1 when it cannot start."""
    import ray

    del argv
    try:
        settings = get_settings()
        from bgservice.models.onnx_session import require_runtime  # MissingExtra: no cpu/gpu extra

        require_runtime()
    except InvalidSettings as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            handle = ensure_runner(settings)
            status = ray.get(handle.status.remote())
        except Exception as exc:
            err = as_service_error(exc)
            print(f"error: {err.code}: {err.message}", file=sys.stderr)
            return err.exit_code
        # again: ray.init installs its own SIGTERM handler (a crash report), which would kill this process
        for sig in previous:
            signal.signal(sig, on_signal)
        print(f"runner {status['name']} started (generation {status['generation']})", flush=True)
        while not stop.wait(1.0):
            if not runner_alive(settings):
                print("runner retired by a newer one", flush=True)
                return 0
        print("stopping: jobs go back to the queue", flush=True)
        stop_runner(settings, graceful=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
