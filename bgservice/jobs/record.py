"""A job's record: its states, the legal transitions between them, and the record itself.

::

    queued ──claim──▶ running ──▶ completed | failed | cancelled
      │                  │
      └──▶ cancelled     └──▶ queued   (only by the store: a lapsed lease, or a graceful runner stop)

Anything else is refused by the store (:class:`IllegalTransition`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bgservice.errors import InternalError


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


# Transitions a caller may ask for. RUNNING -> QUEUED exists only inside the store (requeue on a lapsed
# lease or a graceful stop); it is listed so that the store's own check covers it too.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class IllegalTransition(InternalError):
    """A state change the life cycle does not allow (a bug or a race lost; never a user's fault)."""


def check_transition(old: JobState, new: JobState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"a job cannot go from {old.value} to {new.value}")


MAX_ATTEMPTS = 3  # a job whose lease lapsed this many times fails with ``internal``


@dataclass(frozen=True)
class JobRecord:
    """One job as the store holds it (times are timezone-aware UTC).

    - ``spec``: the :class:`~bgservice.spec.JobSpec` as JSON (``JobSpec.to_dict``): what the engine runs.
    - ``request``: the normalised request as the API shows it back (``None`` for CLI / batch jobs).
    - ``owner``: the API key id (SHA-256 hex of the key, never the key), ``None`` for local jobs.
    - ``attempts``: how many times a runner claimed it (1 on the first run; a graceful stop gives one back).
    - ``result``: engine output (``output_url``, ``duration_seconds``, ``frames``, ``width``, ``height``,
      ``has_audio``, ``engine``, ``quality`` ...); ``error``: ``{"code", "message"}``.
    """

    id: str
    state: JobState
    spec: dict[str, Any]
    owner: str | None = None
    request: dict[str, Any] | None = None
    progress: float = 0.0
    attempts: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    engine: str | None = None
    quality: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # room for later columns (webhook state, ...)
