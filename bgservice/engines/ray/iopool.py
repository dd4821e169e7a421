"""Warm decoder + encoder pairs, kept by the driver process between jobs.

Starting a Ray actor means starting a Python process: seconds on a busy 2-core machine, which would make
a short job wait behind a long one's CPU use however fair the Segmenter pool is. So a driver keeps the
decoder/encoder pairs of finished jobs (at most ``WARM_PER_NODE`` per node, each pair co-located, stopped
after ``WARM_IDLE_SECONDS`` idle so their CPU share returns to the cluster), and keeps one spare pair
ready while a job runs if the node has room for it beside the next job (``JOB_RESERVE_CPUS``).
A pair that saw a failure or a cancel is never reused.

The pool's background threads (the spare pair, the idle reaper) touch Ray only while this process is
still connected to the session their pairs came from: a Ray API called after ``ray.shutdown()`` starts a
new local Ray by itself (Ray's auto-init), from a thread that ends soon after, which kills that Ray's
processes (see :func:`bgservice.engines.ray.dag.ensure_ray`) and, a minute later, the process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bgservice.engines.ray.decoder import Decoder
from bgservice.engines.ray.encoder import Encoder
from bgservice.engines.ray.resources import DECODER_CPUS, ENCODER_CPUS, JOB_RESERVE_CPUS

WARM_PER_NODE = 2
WARM_IDLE_SECONDS = 60.0


@dataclass
class IOPair:
    decoder: Any
    encoder: Any
    node_id: str
    idle_since: float = field(default_factory=time.monotonic)


def _on_node(node_id: str | None) -> dict[str, Any]:
    if not node_id:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


_classes: dict[str, Any] = {}


def _remote(cls: type) -> Any:
    import ray

    if cls.__name__ not in _classes:
        _classes[cls.__name__] = ray.remote(cls)
    return _classes[cls.__name__]


def _new_actor(cls: type, cpus: float, node_id: str | None) -> Any:
    return _remote(cls).options(num_cpus=cpus, max_restarts=0, **_on_node(node_id)).remote()


def connected_session() -> str | None:
    """The Ray job this process is connected as, or ``None`` when it is not connected."""
    import ray

    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_job_id())


class Disconnected(RuntimeError):
    """This process left the Ray session a pair was being started in."""


def create_pair(node_id: str | None, give_up: Callable[[], IOPair | None] | None = None) -> IOPair:
    """Start a decoder (on ``node_id``, or anywhere) and an encoder beside it; wait until both are up.

    While they wait for resources, ``give_up`` is polled: if it returns a pair (one freed meanwhile),
    the new actors are dropped and that pair is returned instead; nothing waits forever behind an idle pair.
    """
    import ray

    session = connected_session()
    if session is None:
        raise Disconnected("not connected to Ray")
    decoder = _new_actor(Decoder, DECODER_CPUS, node_id)
    encoder = _new_actor(Encoder, ENCODER_CPUS, node_id) if node_id else None
    try:
        pings = [decoder.ping.remote()] + ([encoder.ping.remote()] if encoder is not None else [])
        while True:
            if connected_session() != session:
                raise Disconnected("this process left the Ray session while a decoder/encoder pair started")
            ready, _ = ray.wait(pings, num_returns=len(pings), timeout=0.5)
            if len(ready) == len(pings):
                _, node = ray.get(pings[0])
                if encoder is None:  # anywhere: the encoder goes where the decoder landed
                    encoder = _new_actor(Encoder, ENCODER_CPUS, str(node))
                    pings = [encoder.ping.remote()]
                    continue
                return IOPair(decoder, encoder, str(node))
            other = give_up() if give_up is not None else None
            if other is not None:
                kill_pair(decoder, encoder)
                return other
    except BaseException:
        if connected_session() == session:
            kill_pair(decoder, encoder)
        raise


def kill_pair(*actors: Any) -> None:
    import ray

    if not ray.is_initialized():  # they went with the session (a call now would start a new Ray)
        return
    for actor in actors:
        if actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


class IOPool:
    """This driver process's idle pairs, by node (thread-safe; every job thread shares it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[IOPair]] = {}
        self._session = ""
        self._spare_running = False
        self._reaper: threading.Thread | None = None

    def _check_session(self) -> None:
        """Handles die with the Ray session they came from (tests start several)."""
        session = connected_session() or ""
        if session != self._session:
            self._idle.clear()
            self._session = session

    def _take_idle(self, node_id: str | None) -> IOPair | None:
        with self._lock:
            nodes = [node_id] if node_id else list(self._idle)
            for node in nodes:
                pairs = self._idle.get(node)
                if pairs:
                    return pairs.pop()
        return None

    def acquire(self, node_id: str | None) -> IOPair:
        """An idle pair on ``node_id`` (any node if ``None``), else a new one (or one freed meanwhile)."""
        with self._lock:
            self._check_session()
        return self._take_idle(node_id) or create_pair(node_id, give_up=lambda: self._take_idle(node_id))

    def release(self, pair: IOPair, reusable: bool) -> None:
        if reusable:
            with self._lock:
                pairs = self._idle.setdefault(pair.node_id, [])
                if len(pairs) < WARM_PER_NODE:
                    pair.idle_since = time.monotonic()
                    pairs.append(pair)
                    self._start_reaper()
                    return
        kill_pair(pair.decoder, pair.encoder)

    def warm(self, node_id: str, pairs: int) -> None:
        """Make sure ``pairs`` idle pairs wait on ``node_id`` (a service warms up at start)."""
        with self._lock:
            self._check_session()
            missing = min(pairs, WARM_PER_NODE) - len(self._idle.get(node_id, []))
        for _ in range(max(0, missing)):
            self.release(create_pair(node_id), reusable=True)

    def keep_spare(self, node_id: str) -> None:
        """In the background: one idle pair on ``node_id`` if the node has room beside the next job."""
        with self._lock:
            if self._spare_running or self._idle.get(node_id):
                return
            self._spare_running = True

        def spare() -> None:
            import ray

            try:
                if connected_session() is None:
                    return
                available: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
                if available.get("CPU", 0.0) >= 2 * JOB_RESERVE_CPUS:  # this pair and the next job's
                    pair = create_pair(node_id)
                    with self._lock:
                        current = connected_session() == self._session
                    if current:
                        self.release(pair, reusable=True)
                    else:
                        kill_pair(pair.decoder, pair.encoder)
            except Exception:
                pass
            finally:
                with self._lock:
                    self._spare_running = False

        threading.Thread(target=spare, name="bgservice-spare-io", daemon=True).start()

    def _start_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        self._reaper = threading.Thread(target=self._reap, name="bgservice-io-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(WARM_IDLE_SECONDS / 4)
            now = time.monotonic()
            with self._lock:
                if connected_session() != self._session:  # the pairs went with their session
                    self._idle.clear()
                stale = [
                    p for ps in self._idle.values() for p in ps if now - p.idle_since > WARM_IDLE_SECONDS
                ]
                for ps in self._idle.values():
                    ps[:] = [p for p in ps if p not in stale]
                finished = not any(self._idle.values())
                if finished:
                    self._reaper = None
            for p in stale:
                kill_pair(p.decoder, p.encoder)
            if finished:
                return

    def clear(self) -> None:
        with self._lock:
            pairs = [p for ps in self._idle.values() for p in ps]
            self._idle.clear()
        for p in pairs:
            kill_pair(p.decoder, p.encoder)


IO_POOL = IOPool()
