"""The Segmenter pool: long-lived, shared by every job, fair between jobs.

One detached, named manager actor (:class:`SegmenterPool`, ``ray::SegmenterPool``) owns the Segmenter
actors (``ray::Segmenter``) and brokers *leases*: a job asks ``lease(job_id)`` for a Segmenter before it
sends a shard there and ``release(key)`` when the shard is done. Pixels never pass through the manager.

- Slots: a Segmenter holds at most ``pool_shards_per_actor`` leases (one running, the rest queued in its
  mailbox, so it never idles between shards).
- Fairness: lease requests wait in one queue per job and a free slot goes to the waiting job that holds
  the fewest leases (ties round-robin). With the per-job bound on shards in flight
  (``max_shards_in_flight``) a short job gets its share of the pool at once instead of queueing behind
  a long one.
- Growth: while the shards wanting a Segmenter (held + waiting leases) exceed ``pool_shards_per_actor``
  per actor, one more Segmenter is started, up to ``pool_max``, and only when it fits beside the next job
  (see :mod:`.resources`) or the autoscaler can add a GPU node for it. Segmenters idle for
  ``POOL_IDLE_SECONDS`` are stopped down to ``pool_min``.
- Name: ``bgservice-segmenter-pool-<version>-<hash of the pool's settings>`` (:func:`pool_name`), so a
  driver with new code or other model / pool settings gets a pool of its own instead of the first
  driver's; the runner reaps idle pools of other names (:func:`reap_stale_pools`).
- Faults: Segmenters are restartable and their tasks retried (Ray does it: the task is idempotent). A
  Segmenter that is gone for good is ``discard``-ed by the job that saw it and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bgservice.engines.ray.naming import NAMESPACE, versioned_name
from bgservice.engines.ray.resources import POOL_MANAGER_CPUS, can_grow, segmenter_options
from bgservice.engines.ray.segmenter import Segmenter
from bgservice.engines.ray.types import SegmenterInfo
from bgservice.errors import InternalError
from bgservice.settings import Settings

POOL_PREFIX = "bgservice-segmenter-pool"
POOL_NAMESPACE = NAMESPACE
# The settings a pool and its Segmenters are built from (a Segmenter runs the model and the matte): a
# pool is shared only by drivers that agree on these. Add a field here when a Segmenter starts reading it.
POOL_SETTINGS = (
    "model",
    "device",
    "segmenter_gpus",
    "segmenter_cpus",
    "pool_min",
    "pool_max",
    "pool_shards_per_actor",
)
POOL_IDLE_SECONDS = 120.0
MAX_START_FAILURES = 3
MEMBER_INFO_SECONDS = 2.0
SEGMENTER_NICENESS = 10  # Segmenters run below normal priority: starting a job never waits on them

Lease = tuple[int, Any]  # (member key, Segmenter actor handle)


@dataclass
class _Member:
    key: int
    handle: Any
    ready: bool = False
    outstanding: int = 0
    jobs: dict[str, int] = field(default_factory=dict)  # leases held per job
    last_used: float = field(default_factory=time.monotonic)
    info: SegmenterInfo | None = None


@dataclass(frozen=True)
class MemberInfo:
    key: int
    actor_id: str
    ready: bool
    outstanding: int
    info: SegmenterInfo | None


class SegmenterPool:
    """The pool manager (an async Ray actor; every method runs on one event loop, so no locks)."""

    def __init__(self, settings: Settings, gpu_share: float = 0.0, autoscaler_gpu: bool = False) -> None:
        self._settings = settings
        self._gpu_share = gpu_share
        self._autoscaler_gpu = autoscaler_gpu
        self._members: dict[int, _Member] = {}
        self._keys = itertools.count()
        self._waiting: dict[str, deque[asyncio.Future[Lease | None]]] = {}
        self._order: deque[str] = deque()
        self._held: dict[str, int] = {}  # leases each job holds now
        self._started = False
        self._starting = 0
        self._ready_event: asyncio.Event | None = None
        self._any_ready: asyncio.Event | None = None
        self._failures = 0  # Segmenters in a row that failed to start
        self._shrinker: asyncio.Task[None] | None = None
        self._broken: str | None = None  # why the pool gave up starting Segmenters

    # --- the public protocol ---------------------------------------------------------------------
    async def ready(self) -> int:
        """Wait until ``pool_min`` Segmenters are up; returns the number of ready ones.

        Raises :class:`InternalError` when Segmenters keep failing to start (e.g. the model cannot load);
        the next call tries again.
        """
        self._ensure_started()
        assert self._ready_event is not None
        await self._ready_event.wait()
        if self._broken:
            why, self._broken = self._broken, None
            self._failures = 0
            self._ready_event.clear()
            if self._any_ready is not None and not any(m.ready for m in self._members.values()):
                self._any_ready.clear()
            self._top_up()
            raise InternalError(f"Segmenters cannot start: {why}")
        return sum(m.ready for m in self._members.values())

    async def lease(self, job_id: str) -> Lease | None:
        """A Segmenter for one shard of ``job_id``; ``None`` if the job was cancelled meanwhile."""
        self._ensure_started()
        if self._broken:
            return None
        fut: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, deque()).append(fut)
        if job_id not in self._order:
            self._order.append(job_id)
        self._dispatch()
        self._maybe_grow()
        return await fut

    def release(self, key: int, job_id: str) -> None:
        """``job_id`` is done with one lease of Segmenter ``key`` (ignored if the job was forgotten)."""
        member = self._members.get(key)
        if member is not None and member.jobs.get(job_id, 0) > 0:
            member.jobs[job_id] -= 1
            if not member.jobs[job_id]:
                del member.jobs[job_id]
            member.outstanding -= 1
            member.last_used = time.monotonic()
        if self._held.get(job_id, 0) > 0:
            self._held[job_id] -= 1
        self._dispatch()
        self._maybe_shrink()

    def discard(self, key: int) -> None:
        """A job found this Segmenter dead for good: forget it and keep the pool at its minimum."""
        member = self._members.pop(key, None)
        if member is not None:
            for job_id, n in member.jobs.items():
                if job_id in self._held:
                    self._held[job_id] = max(0, self._held[job_id] - n)
            self._kill(member)
        self._top_up()
        self._dispatch()

    def forget_job(self, job_id: str) -> None:
        """The job is over (done, failed, cancelled): its waiting lease requests get ``None`` and every
        lease it still holds returns to the pool (including one granted while the job was ending)."""
        self._held.pop(job_id, None)
        for fut in self._waiting.pop(job_id, deque()):
            if not fut.done():
                fut.set_result(None)
        with contextlib.suppress(ValueError):
            self._order.remove(job_id)
        for m in self._members.values():
            m.outstanding -= m.jobs.pop(job_id, 0)
        self._dispatch()

    async def members(self) -> list[MemberInfo]:
        """Every Segmenter with its Ray actor id, pid, node and load (operators, tests)."""
        self._ensure_started()
        out = []
        for m in list(self._members.values()):
            info = m.info
            if m.ready:  # fresh (pid and node change on restart), unless it is busy for long
                with contextlib.suppress(Exception):
                    info = await asyncio.wait_for(m.handle.info.remote(), timeout=MEMBER_INFO_SECONDS)
                    m.info = info
            out.append(MemberInfo(m.key, m.handle._actor_id.hex(), m.ready, m.outstanding, info))
        return out

    async def context(self) -> tuple[int, int]:
        """Context frames a shard needs before and after it (the matte's temporal window).

        Answers as soon as one Segmenter is up: a job can start while the rest of the pool loads.
        """
        self._ensure_started()
        assert self._any_ready is not None
        await self._any_ready.wait()
        if self._broken:
            await self.ready()  # raises the reason
        for m in self._members.values():
            if m.info is not None:
                return m.info.context_before, m.info.context_after
        raise RuntimeError("no Segmenter is ready")

    def load(self) -> dict[str, int]:
        """Segmenters (starting ones included), ready ones, busy ones (holding a lease), leases held and
        asked for, jobs waiting (operators, ``/metrics``)."""
        return {
            "segmenters": len(self._members),
            "ready": sum(m.ready for m in self._members.values()),
            "busy": sum(1 for m in self._members.values() if m.outstanding > 0),
            "leased": sum(m.outstanding for m in self._members.values()),
            "waiting": sum(len(q) for q in self._waiting.values()),
            "jobs_waiting": len(self._order),
        }

    # --- internals ---------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        self._ready_event = asyncio.Event()
        self._any_ready = asyncio.Event()
        self._shrinker = asyncio.get_running_loop().create_task(self._shrink_idle())
        for _ in range(self._settings.pool_min):
            self._start_member()

    async def _shrink_idle(self) -> None:
        """Stop idle Segmenters on a timer too: ``release`` alone never runs once the last job is done."""
        while True:
            await asyncio.sleep(POOL_IDLE_SECONDS / 4)
            self._maybe_shrink()

    def _start_member(self) -> None:
        import ray

        options = segmenter_options(self._settings.segmenter_cpus, self._gpu_share)
        handle = ray.remote(Segmenter).options(**options).remote(self._settings, niceness=SEGMENTER_NICENESS)
        member = _Member(key=next(self._keys), handle=handle)
        self._members[member.key] = member
        self._starting += 1
        asyncio.get_running_loop().create_task(self._await_ready(member))

    async def _await_ready(self, member: _Member) -> None:
        try:
            member.info = await member.handle.info.remote()
            member.ready = True
            member.last_used = time.monotonic()
            self._failures = 0
        except Exception as exc:
            self._members.pop(member.key, None)
            self._failures += 1
            if self._failures >= MAX_START_FAILURES and not any(m.ready for m in self._members.values()):
                self._broken = f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            self._starting -= 1
        ready = sum(m.ready for m in self._members.values())
        if self._any_ready is not None and (ready or self._broken):
            self._any_ready.set()
        if self._ready_event is not None and (
            self._broken or ready >= min(self._settings.pool_min, len(self._members))
        ):
            self._ready_event.set()
        if self._broken:
            self._fail_waiting()
            return
        self._top_up()
        self._dispatch()

    def _fail_waiting(self) -> None:
        for job_id in list(self._waiting):
            self.forget_job(job_id)

    def _top_up(self) -> None:
        while len(self._members) < self._settings.pool_min:
            self._start_member()

    def _free_member(self) -> _Member | None:
        slots = self._settings.pool_shards_per_actor
        free = [m for m in self._members.values() if m.ready and m.outstanding < slots]
        return min(free, key=lambda m: (m.outstanding, m.last_used)) if free else None

    def _next_job(self) -> str | None:
        """The waiting job holding the fewest leases; ties go round-robin (the longest-waiting first)."""
        best: str | None = None
        for job_id in list(self._order):
            queue = self._waiting.get(job_id)
            while queue and queue[0].done():
                queue.popleft()
            if not queue:
                self._order.remove(job_id)
                self._waiting.pop(job_id, None)
                continue
            if best is None or self._held.get(job_id, 0) < self._held.get(best, 0):
                best = job_id
        if best is not None:
            self._order.remove(best)
            self._order.append(best)
        return best

    def _dispatch(self) -> None:
        while True:
            member = self._free_member()
            if member is None:
                return
            job_id = self._next_job()
            if job_id is None:
                return
            fut = self._waiting[job_id].popleft()
            self._held[job_id] = self._held.get(job_id, 0) + 1
            member.jobs[job_id] = member.jobs.get(job_id, 0) + 1
            member.outstanding += 1
            member.last_used = time.monotonic()
            fut.set_result((member.key, member.handle))

    def _maybe_grow(self) -> None:
        settings = self._settings
        if self._starting or len(self._members) >= settings.pool_max:
            return
        demand = sum(m.outstanding for m in self._members.values()) + sum(
            len(q) for q in self._waiting.values()
        )
        if demand <= settings.pool_shards_per_actor * len(self._members):
            return
        import ray

        available: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
        if can_grow(available, settings.segmenter_cpus, self._gpu_share, self._autoscaler_gpu):
            self._start_member()

    def _maybe_shrink(self) -> None:
        now = time.monotonic()
        for m in list(self._members.values()):
            if len(self._members) <= self._settings.pool_min:
                return
            if m.ready and m.outstanding == 0 and now - m.last_used > POOL_IDLE_SECONDS:
                self._members.pop(m.key, None)
                self._kill(m)

    @staticmethod
    def _kill(member: _Member) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(member.handle, no_restart=True)


def pool_name(settings: Settings) -> str:
    """``bgservice-segmenter-pool-<version>-<hash of POOL_SETTINGS>``."""
    return versioned_name(POOL_PREFIX, settings, POOL_SETTINGS)


def pool_options(settings: Settings) -> dict[str, Any]:
    return {
        "name": pool_name(settings),
        "namespace": POOL_NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": POOL_MANAGER_CPUS,
        "max_restarts": -1,
        "max_task_retries": -1,  # a lease asked of a pool that is restarting is asked again
        "max_concurrency": 1000,
    }


def get_pool(settings: Settings) -> Any:
    """The pool for these settings (and this code), created on first use (later callers share it)."""
    import ray

    from bgservice.engines.ray.resources import autoscaler_has_gpu_node_types, resolve_gpu_share

    autoscaler_gpu = autoscaler_has_gpu_node_types()
    cluster: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpu_share = resolve_gpu_share(settings.segmenter_gpus, cluster, autoscaler_gpu)
    actor = ray.remote(SegmenterPool).options(**pool_options(settings))
    return actor.remote(settings, gpu_share, autoscaler_gpu)


def pool_names() -> list[str]:
    """Names of every Segmenter pool alive on the cluster (any version, any settings)."""
    from ray.util import list_named_actors

    return sorted(
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a.get("namespace") == POOL_NAMESPACE and str(a.get("name", "")).startswith(POOL_PREFIX)
    )


def pool_load(name: str, timeout: float) -> dict[str, int] | None:
    """``load()`` of the pool called ``name`` without starting one: all zeros when no such pool runs (no
    job has needed it yet), ``None`` when it does not answer within ``timeout`` seconds."""
    import ray

    try:
        handle = ray.get_actor(name, namespace=POOL_NAMESPACE)
    except ValueError:
        return dict.fromkeys(("segmenters", "ready", "busy", "leased", "waiting", "jobs_waiting"), 0)
    try:
        load: Any = ray.get(handle.load.remote(), timeout=timeout)
    except Exception:  # restarting, gone meanwhile, or too busy to answer in time
        return None
    return {str(k): int(v) for k, v in load.items()}


def reap_stale_pools(keep: str, timeout: float = 5.0) -> list[str]:
    """Stop every pool not called ``keep`` that no job uses now (left by older code or other settings);
    returns the names stopped. A busy one is left for a later call."""
    import ray

    stopped: list[str] = []
    for name in pool_names():
        if name == keep:
            continue
        try:
            handle = ray.get_actor(name, namespace=POOL_NAMESPACE)
            load: Any = ray.get(handle.load.remote(), timeout=timeout)
        except Exception:  # gone meanwhile, or not answering: try again later
            continue
        if load.get("leased", 0) or load.get("waiting", 0) or load.get("jobs_waiting", 0):
            continue
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
            stopped.append(name)
    return stopped


def shutdown_pool(settings: Settings | None = None) -> None:
    """Stop the pool for ``settings`` (every pool when ``None``) and its Segmenters (tests; operators)."""
    import ray

    names = [pool_name(settings)] if settings is not None else pool_names()
    for name in names:
        try:
            handle = ray.get_actor(name, namespace=POOL_NAMESPACE)
        except ValueError:
            continue
        ray.kill(handle, no_restart=True)
