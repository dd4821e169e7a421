"""The engine contract: what running one job takes and gives back, whichever engine runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bgservice.settings import Settings
from bgservice.spec import JobSpec

ProgressFn = Callable[[int, int], None]  # (frames done, frames total)


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
    quality: str = ""  # the matte quality that ran: "fast" or "best" (resolved by the Segmenters)


class Engine(Protocol):
    """Runs one job to the end: returns its result or raises its :mod:`bgservice.errors` error
    (``JobCancelled`` once ``cancel`` is set)."""

    name: str

    def run(
        self,
        spec: JobSpec,
        settings: Settings,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> JobResult: ...
