"""Strict in-order reassembly of shard results that finish in any order.

Segmenters finish shards out of order; the encoder must see them in order. :class:`Compositor` holds the
early ones (in the DAG: object references, never the pixels) and releases each run that has become
contiguous. It is plain Python; the encoder actor owns one per job.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Compositor(Generic[T]):
    """Release items strictly in index order, starting at ``first``.

    ``add`` is idempotent: an index already released or already held is ignored (a retried shard may be
    reported twice). Memory: at most the number of items in flight, which the DAG bounds per job.
    """

    def __init__(self, first: int = 0) -> None:
        self._next = first
        self._held: dict[int, T] = {}

    @property
    def next_index(self) -> int:
        """The index the next release starts with."""
        return self._next

    @property
    def held(self) -> int:
        """Items waiting for an earlier one."""
        return len(self._held)

    def add(self, index: int, item: T) -> list[T]:
        """Take one item; return the items released now, in order (maybe none)."""
        if index < 0:
            raise ValueError(f"shard index must be >= 0, got {index}")
        if index < self._next or index in self._held:
            return []
        self._held[index] = item
        released: list[T] = []
        while self._next in self._held:
            released.append(self._held.pop(self._next))
            self._next += 1
        return released

    def clear(self) -> None:
        self._held.clear()
