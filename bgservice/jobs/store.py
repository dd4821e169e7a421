"""The durable job store (SQLAlchemy 2; SQLite embedded, PostgreSQL on clusters; Alembic migrations).

INTERFACE DRAFT: the signatures below are what the runner and the HTTP API code against. The store helper
implements them (adding methods or defaulted parameters is fine; changing these is not without telling).

- Every state change goes through :func:`bgservice.jobs.record.check_transition` and is one atomic
  statement guarded by the expected old state (``UPDATE ... WHERE id = :id AND state = :old``), so two
  runners never take the same job (``claim`` uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
- What every replica and runner must share lives here: the signing secret, API key ids, the runner
  generation, rate-limit buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bgservice.jobs.record import JobRecord, JobState
from bgservice.settings import Settings


@dataclass(frozen=True)
class Heartbeat:
    """What a runner learns when it renews a lease."""

    ok: bool  # False: the lease is no longer this runner's (lapsed and re-queued, or the job ended)
    cancel_requested: bool


class JobStore:
    """One database. Thread-safe; cheap to keep open for the life of a process."""

    def __init__(self, url: str) -> None:
        """``url``: a SQLAlchemy URL (``sqlite:////abs/path/jobs.db``, ``postgresql+psycopg://...``).
        Runs the Alembic migrations up to head (an upgraded service opens an older database)."""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """``BGSERVICE_DATABASE_URL``, else a SQLite file ``jobs.db`` under ``BGSERVICE_DATA_DIR``
        (created 0700, the file 0600)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- jobs -----------------------------------------------------------------------------------
    def create(
        self,
        spec: dict[str, Any],
        *,
        owner: str | None = None,
        request: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """A new ``queued`` job (``job_id``: a uuid4 string, made here when not given)."""
        raise NotImplementedError

    def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        """The job, or ``None`` when unknown or (``owner`` given) another key's."""
        raise NotImplementedError

    def list_jobs(
        self,
        *,
        owner: str | None,
        states: Sequence[JobState] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """``owner``'s jobs, newest first, and the cursor of the next page (``None`` at the end).
        A cursor that cannot be decoded raises :class:`ValueError`."""
        raise NotImplementedError

    def claim(
        self,
        runner_id: str,
        *,
        lease_seconds: float,
        max_running: int,
        max_running_per_key: int,
    ) -> JobRecord | None:
        """Atomically take the next queued job and make it ``running`` under ``runner_id``'s lease
        (``attempts`` + 1); ``None`` when nothing may start now. Oldest first, fair by key: a key at
        ``max_running_per_key`` is skipped, and among keys the one with the fewest running jobs goes first,
        so one key's burst never starves another key's first job. Nothing starts while ``max_running``
        jobs run."""
        raise NotImplementedError

    def heartbeat(
        self, job_id: str, runner_id: str, *, lease_seconds: float, progress: float | None = None
    ) -> Heartbeat:
        """Renew the lease (and store ``progress`` 0..1 when given)."""
        raise NotImplementedError

    def complete(self, job_id: str, runner_id: str, result: dict[str, Any]) -> JobRecord:
        raise NotImplementedError

    def fail(self, job_id: str, runner_id: str | None, error: dict[str, str]) -> JobRecord:
        """``running`` -> ``failed`` with ``{"code", "message"}`` (``runner_id`` None: a sweep)."""
        raise NotImplementedError

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Queued -> cancelled at once; running -> ``cancel_requested`` (the runner ends it ``cancelled``);
        cancelled -> unchanged. Completed or failed -> :class:`~bgservice.errors.JobNotCancellable`;
        unknown (or another key's) -> :class:`~bgservice.errors.NotFound`."""
        raise NotImplementedError

    def mark_cancelled(self, job_id: str, runner_id: str) -> JobRecord:
        """The runner stopped a job whose cancel was requested: ``running`` -> ``cancelled``."""
        raise NotImplementedError

    def release(self, job_id: str, runner_id: str) -> JobRecord:
        """Graceful stop: ``running`` -> ``queued`` without counting the attempt (``attempts`` - 1)."""
        raise NotImplementedError

    def requeue_expired(self, *, now: datetime | None = None, max_attempts: int = 3) -> list[str]:
        """Running jobs whose lease lapsed go back to ``queued`` (their runner died); one that has had
        ``max_attempts`` attempts fails with ``internal`` instead. Returns the ids touched."""
        raise NotImplementedError

    def fail_timed_out(self, timeout_seconds: float, *, now: datetime | None = None) -> list[str]:
        """Running jobs started more than ``timeout_seconds`` ago fail with ``timeout``."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """Jobs per state (metrics, readiness)."""
        raise NotImplementedError

    # --- shared secrets and generations -----------------------------------------------------------
    def secret(self, name: str = "signing") -> bytes:
        """A 32-byte secret generated once and kept in the database (every replica reads the same)."""
        raise NotImplementedError

    def bump_generation(self, name: str = "runner") -> int:
        """Start a new generation (a deploy); older runners see they are retired and stop claiming."""
        raise NotImplementedError

    def generation(self, name: str = "runner") -> int:
        raise NotImplementedError
