"""Fakes for tests about something else (named as fakes; the real parts have their own tests).

- :class:`FakeJobStore`: the :class:`~bgservice.jobs.store.JobStore` interface in memory, for the runner's
  own logic (leases, cancel, timeout, release) without a database. The runner's real tests
  (tests/test_runner.py) use the real store.
- :class:`FakeEngine`: an engine that "processes" ``frames`` frames at a pace the test controls.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bgservice.engines.base import CancelToken, JobResult, ProgressFn
from bgservice.errors import JobCancelled, JobNotCancellable, NotFound
from bgservice.jobs.record import MAX_ATTEMPTS, IllegalTransition, JobRecord, JobState, check_transition
from bgservice.jobs.store import Heartbeat
from bgservice.settings import Settings
from bgservice.spec import JobSpec


def _now() -> datetime:
    return datetime.now(UTC)


class FakeJobStore:
    """In memory, one lock; the same answers as the real store for what the runner uses."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.order: list[str] = []
        self.gens: dict[str, int] = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        pass

    def _set(self, job_id: str, old: JobState | None, **changes: Any) -> JobRecord:
        rec = self.jobs[job_id]
        if old is not None and rec.state != old:
            raise IllegalTransition(f"job {job_id} is {rec.state.value}, not {old.value}")
        if "state" in changes:
            check_transition(rec.state, changes["state"])
        rec = replace(rec, updated_at=_now(), **changes)
        self.jobs[job_id] = rec
        return rec

    def create(self, spec: dict[str, Any], *, owner: str | None = None, **_: Any) -> JobRecord:
        with self.lock:
            job_id = str(uuid.uuid4())
            rec = JobRecord(id=job_id, state=JobState.QUEUED, spec=spec, owner=owner, created_at=_now())
            self.jobs[rec.id] = rec
            self.order.append(rec.id)
            return rec

    def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        return self.jobs.get(job_id)

    def claim(
        self, runner_id: str, *, lease_seconds: float, max_running: int, max_running_per_key: int
    ) -> JobRecord | None:
        with self.lock:
            running = [r for r in self.jobs.values() if r.state == JobState.RUNNING]
            if len(running) >= max_running:
                return None
            for job_id in self.order:
                rec = self.jobs[job_id]
                if rec.state != JobState.QUEUED:
                    continue
                if sum(r.owner == rec.owner for r in running) >= max_running_per_key:
                    continue
                return self._set(
                    job_id,
                    JobState.QUEUED,
                    state=JobState.RUNNING,
                    attempts=rec.attempts + 1,
                    started_at=_now(),
                    lease_owner=runner_id,
                    lease_expires_at=_now() + timedelta(seconds=lease_seconds),
                )
            return None

    def _mine(self, job_id: str, runner_id: str | None) -> JobRecord:
        rec = self.jobs[job_id]
        if rec.state != JobState.RUNNING or (runner_id is not None and rec.lease_owner != runner_id):
            raise IllegalTransition(f"job {job_id} is {rec.state.value}, not held by {runner_id}")
        return rec

    def heartbeat(
        self, job_id: str, runner_id: str, *, lease_seconds: float, progress: float | None = None
    ) -> Heartbeat:
        with self.lock:
            rec = self.jobs[job_id]
            if rec.state != JobState.RUNNING or rec.lease_owner != runner_id:
                return Heartbeat(ok=False, cancel_requested=rec.cancel_requested)
            changes: dict[str, Any] = {"lease_expires_at": _now() + timedelta(seconds=lease_seconds)}
            if progress is not None:
                changes["progress"] = progress
            rec = self._set(job_id, None, **changes)
            return Heartbeat(ok=True, cancel_requested=rec.cancel_requested)

    def complete(self, job_id: str, runner_id: str, result: dict[str, Any]) -> JobRecord:
        with self.lock:
            self._mine(job_id, runner_id)
            return self._set(
                job_id, None, state=JobState.COMPLETED, result=result, progress=1.0, finished_at=_now()
            )

    def fail(self, job_id: str, runner_id: str | None, error: dict[str, str]) -> JobRecord:
        with self.lock:
            self._mine(job_id, runner_id)
            return self._set(job_id, None, state=JobState.FAILED, error=error, finished_at=_now())

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        with self.lock:
            rec = self.jobs.get(job_id)
            if rec is None:
                raise NotFound(job_id)
            if rec.state == JobState.QUEUED:
                return self._set(job_id, None, state=JobState.CANCELLED, finished_at=_now())
            if rec.state == JobState.RUNNING:
                return self._set(job_id, None, cancel_requested=True)
            if rec.state == JobState.CANCELLED:
                return rec
            raise JobNotCancellable(job_id)

    def mark_cancelled(self, job_id: str, runner_id: str) -> JobRecord:
        with self.lock:
            self._mine(job_id, runner_id)
            return self._set(job_id, None, state=JobState.CANCELLED, finished_at=_now())

    def release(self, job_id: str, runner_id: str) -> JobRecord:
        with self.lock:
            rec = self._mine(job_id, runner_id)
            return self._set(
                job_id, None, state=JobState.QUEUED, attempts=rec.attempts - 1, lease_owner=None, progress=0.0
            )

    def requeue_expired(self, *, now: datetime | None = None, max_attempts: int = MAX_ATTEMPTS) -> list[str]:
        now = now or _now()
        touched = []
        with self.lock:
            for rec in list(self.jobs.values()):
                lapsed = rec.lease_expires_at is not None and rec.lease_expires_at <= now
                if rec.state != JobState.RUNNING or not lapsed:
                    continue
                touched.append(rec.id)
                if rec.attempts >= max_attempts:
                    error = {"code": "internal", "message": "the job's runner was lost too many times"}
                    self._set(rec.id, None, state=JobState.FAILED, error=error, finished_at=now)
                else:
                    self._set(rec.id, None, state=JobState.QUEUED, lease_owner=None)
        return touched

    def fail_timed_out(self, timeout_seconds: float, *, now: datetime | None = None) -> list[str]:
        now = now or _now()
        touched = []
        with self.lock:
            for rec in list(self.jobs.values()):
                if rec.state != JobState.RUNNING or rec.started_at is None:
                    continue
                if (now - rec.started_at).total_seconds() > timeout_seconds:
                    error = {"code": "timeout", "message": "timed out"}
                    self._set(rec.id, None, state=JobState.FAILED, error=error, finished_at=now)
                    touched.append(rec.id)
        return touched

    def bump_generation(self, name: str = "runner") -> int:
        with self.lock:
            self.gens[name] = self.gens.get(name, 0) + 1
            return self.gens[name]

    def generation(self, name: str = "runner") -> int:
        return self.gens.get(name, 0)


class FakeEngine:
    """Pretends to process ``frames`` frames, one every ``frame_seconds``; honours cancel like the real
    engines (raises JobCancelled); ``fail`` raises that error instead of finishing."""

    name = "fake"

    def __init__(self, frames: int = 10, frame_seconds: float = 0.01, fail: Exception | None = None) -> None:
        self.frames = frames
        self.frame_seconds = frame_seconds
        self.fail = fail
        self.started = threading.Event()

    def run(
        self,
        spec: JobSpec,
        settings: Settings,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> JobResult:
        self.started.set()
        for i in range(self.frames):
            if cancel is not None and cancel.is_set():
                raise JobCancelled("the job was cancelled")
            time.sleep(self.frame_seconds)
            if progress is not None:
                progress(i + 1, self.frames)
        if self.fail is not None:
            raise self.fail
        return JobResult(spec.output_url, 1.0, self.frames, 320, 240, False)
