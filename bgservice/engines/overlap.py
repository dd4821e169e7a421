"""Overlap the stages of a one-process job so that every core is busy.

::

    reader thread ──items──▶ worker threads (N, any order) ──results, in input order──▶ the caller
    (decodes: PyAV            (model + matte + composite:            (encodes: x264's own threads)
     releases the GIL)         ONNX Runtime, OpenCV and numpy
                               release the GIL on whole frames)

At most ``depth`` items are between "taken from the reader" and "handed to the caller", so memory stays
flat in the video's length whatever the stages' speeds. The work per item must not depend on the items
before it (shards are made independent by their context frames), so any worker may take any item.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POLL = 0.1  # seconds between looks at the stop flag while a thread waits on a full or empty queue


class _End:
    """Marks the end of the items, or carries the reader's exception."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class OrderedMap(Generic[T, R]):
    """``fn`` over ``items`` on ``workers`` threads, results in input order; use as a context manager.

    ``items`` is advanced in a thread of its own (it may decode). The first exception -- the reader's or
    a worker's -- is raised to the caller; leaving the ``with`` block stops the reader and the workers
    and waits for them, so the caller may close what they read from right after.
    """

    def __init__(self, fn: Callable[[T], R], items: Iterator[T], *, workers: int, depth: int) -> None:
        if workers < 1 or depth < 1:
            raise ValueError("workers and depth must be >= 1")
        self._fn = fn
        self._items = items
        self._workers = workers
        self._depth = max(depth, workers)
        self._inbox: queue.Queue[T | _End] = queue.Queue(maxsize=workers)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="bgservice-reader", daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bgservice-worker")
        self._inflight: deque[tuple[T, Future[R]]] = deque()

    def _read(self) -> None:
        end = _End()
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._inbox.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _take(self) -> T | _End:
        while True:
            try:
                return self._inbox.get(timeout=_POLL)
            except queue.Empty:
                if not self._reader.is_alive() and self._inbox.empty():
                    return _End()

    def __iter__(self) -> Iterator[tuple[T, R]]:
        done = False
        while True:
            while not done and len(self._inflight) < self._depth:
                item = self._take()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    done = True
                    break
                self._inflight.append((item, self._pool.submit(self._fn, item)))
            if not self._inflight:
                return
            item, future = self._inflight.popleft()
            yield item, future.result()

    def __enter__(self) -> OrderedMap[T, R]:
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for _, future in self._inflight:
            future.cancel()
        self._inflight.clear()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a reader waiting on a full inbox
                self._inbox.get_nowait()
        self._reader.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
