"""Per-process counters: work counted in the process that does it, read by ``/metrics`` through the runner.

- :data:`FRAMES_PROCESSED`: frames a job driver in this process saw written to an output (the one-process
  engine after each shard it encodes; the Ray DAG's driver as its encoder reports shards written).
- :data:`FETCHED_BYTES`: bytes :mod:`bgservice.io.fetch` downloaded (http(s)) or copied (object stores,
  assets kept in one) into scratch; a local file used in place counts nothing.

Each counter only grows, for the life of the process: a restarted process starts again from zero, as a
Prometheus counter does. Thread-safe.

Work done in another process is carried back to the one that reports it: a Ray decoder fetches inside
``with FETCHED_BYTES.tally() as fetched:`` and hands ``fetched.value`` back to its job's driver, which
:meth:`Counter.add`-s it to its own process's counter.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Tally:
    """What one thread added to a :class:`Counter` inside :meth:`Counter.tally`."""

    def __init__(self) -> None:
        self.value = 0


class Counter:
    """A process-wide, monotonic, thread-safe count."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._value = 0
        self._local = threading.local()

    def add(self, amount: int) -> None:
        """Count ``amount`` (ignored unless positive: a counter never goes down)."""
        if amount <= 0:
            return
        with self._lock:
            self._value += amount
        for tally in getattr(self._local, "tallies", ()):
            tally.value += amount

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    @contextlib.contextmanager
    def tally(self) -> Iterator[Tally]:
        """Also count, apart, what this thread adds inside the block (nested blocks each see it)."""
        tallies: list[Tally] = self._local.__dict__.setdefault("tallies", [])
        tally = Tally()
        tallies.append(tally)
        try:
            yield tally
        finally:
            tallies.remove(tally)


FRAMES_PROCESSED = Counter("frames_processed")
FETCHED_BYTES = Counter("fetched_bytes")


def snapshot() -> dict[str, int]:
    """Every counter of this process by name."""
    return {c.name: c.value for c in (FRAMES_PROCESSED, FETCHED_BYTES)}
