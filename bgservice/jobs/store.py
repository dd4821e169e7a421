"""The durable job store (SQLAlchemy 2; SQLite embedded, PostgreSQL on clusters; Alembic migrations).

The runner and the HTTP API code against this class.

- Every state change goes through :func:`bgservice.jobs.record.check_transition` and is one atomic
  statement guarded by the expected old state (``UPDATE ... WHERE id = :id AND state = :old``), so two
  runners never take the same job (``claim`` uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
- What every replica and runner must share lives here: the signing secret, API key ids, the runner
  generation, rate-limit buckets.
- Times are timezone-aware UTC, taken from this process's clock (``now=`` parameters let tests and sweeps
  pick the instant).

SQLite: WAL mode, a 30 s busy timeout, every write transaction ``BEGIN IMMEDIATE`` (writers queue up
front instead of failing on a stale snapshot), so several threads and processes may share one file.
PostgreSQL: claims take a transaction-scoped advisory lock so the global and per-key limits hold with
several runners; the claim itself is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets as _secrets
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import OperationalError

from bgservice.errors import InvalidSettings, JobNotCancellable, JobTimeout, NotFound, ServiceUnavailable
from bgservice.jobs.record import MAX_ATTEMPTS, IllegalTransition, JobRecord, JobState, check_transition
from bgservice.jobs.schema import api_keys, generations, jobs, secrets
from bgservice.settings import Settings

_CLAIM_LOCK = 0x6267_6A6F_6273  # pg_advisory_xact_lock key serialising claims ("bgjobs")
_MIGRATE_LOCK = 0x6267_6D69_6772  # ... and migrations ("bgmigr")

Q = JobState.QUEUED.value
R = JobState.RUNNING.value


@dataclass(frozen=True)
class Heartbeat:
    """What a runner learns when it renews a lease."""

    ok: bool  # False: the lease is no longer this runner's (lapsed and re-queued, or the job ended)
    cancel_requested: bool


def key_id(key: str) -> str:
    """An API key's id: the SHA-256 hex of the key (what the database keeps, never the key)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return _utcnow()
    if now.tzinfo is None:
        raise ValueError("the job store takes timezone-aware datetimes only")
    return now.astimezone(UTC)


def normalise_url(url: str | URL) -> URL:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver this project installs)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    for plain in ("postgres://", "postgresql://"):
        if text.startswith(plain):
            text = "postgresql+psycopg://" + text[len(plain) :]
    return make_url(text)


def _ensure_private_file(path: Path) -> None:
    """Create the SQLite file 0600 (and its directory 0700) before SQLite does, so that neither the
    database nor its -wal/-shm files (SQLite gives them the database's mode) are readable by others."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        path.parent.chmod(0o700)
    if path.exists():
        # Never open and close a database file this process may have open already: closing any
        # descriptor of a file drops every POSIX lock the process holds on it, SQLite's shared lock
        # included, so another process closing its last connection then deletes the WAL under this
        # process's open connections, which go on reading a stale snapshot forever.
        return
    with contextlib.suppress(FileExistsError):  # another process created it meanwhile
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("bgservice.jobs") / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code ships (what every opened database is brought to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _cursor_encode(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, job_id = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if not isinstance(job_id, str) or when.tzinfo is None:
            raise ValueError
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    return when.astimezone(UTC), job_id


def _record(row: sa.RowMapping) -> JobRecord:
    return JobRecord(
        id=row["id"],
        state=JobState(row["state"]),
        spec=row["spec"],
        owner=row["owner"],
        request=row["request"],
        progress=float(row["progress"]),
        attempts=int(row["attempts"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cancel_requested=bool(row["cancel_requested"]),
        engine=row["engine"],
        quality=row["quality"],
        result=row["result"],
        error=row["error"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        extra=dict(row["extra"] or {}),
    )


_CANCELLED_ERROR = {"code": "cancelled", "message": "the job was cancelled"}


class JobStore:
    """One database. Thread-safe; cheap to keep open for the life of a process."""

    def __init__(self, url: str | URL, *, secret: str | bytes | None = None) -> None:
        """``url``: a SQLAlchemy URL (``sqlite:////abs/path/jobs.db``, ``postgresql+psycopg://...``).
        Runs the Alembic migrations up to head (an upgraded service opens an older database).
        ``secret`` (``BGSERVICE_SECRET``) overrides the generated ``signing`` secret."""
        self.url = normalise_url(url)
        self._override = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._secret_cache: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self._engine = self._sqlite_engine()
        elif self.dialect == "postgresql":
            self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql+psycopg")
        # Writes on SQLite begin IMMEDIATE (see _sqlite_engine); on PostgreSQL the two are the same.
        self._writer = self._engine.execution_options(bgservice_write=True)
        # A forked child must not share the parent's pooled connections (SQLAlchemy's advice): it opens
        # its own on first use.
        ref = weakref.ref(self)

        def _after_fork() -> None:
            store = ref()
            if store is not None:
                store._engine.dispose(close=False)

        os.register_at_fork(after_in_child=_after_fork)
        try:
            self.migrate()
        except OperationalError as exc:
            self._engine.dispose()
            raise ServiceUnavailable(f"job store unreachable: {exc.orig or exc}") from exc
        except BaseException:
            self._engine.dispose()
            raise

    def _sqlite_engine(self) -> Engine:
        database = self.url.database
        if not database or database == ":memory:":
            raise ValueError("the job store needs a SQLite file (several connections share it)")
        path = Path(database)
        if not path.is_absolute():
            path = path.resolve()
            self.url = self.url.set(database=str(path))
        try:
            _ensure_private_file(path)
        except OSError as exc:
            raise ServiceUnavailable(f"job store unreachable: cannot create {path}: {exc}") from exc
        engine = sa.create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we say BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("bgservice_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """``BGSERVICE_DATABASE_URL``, else a SQLite file ``jobs.db`` under ``BGSERVICE_DATA_DIR``
        (created 0700, the file 0600)."""
        secret = settings.secret.get_secret_value() if settings.secret is not None else None
        if settings.database_url:
            return cls(settings.database_url, secret=secret)
        data_dir = Path(settings.data_dir).expanduser()
        try:
            if not data_dir.exists():
                data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
                data_dir.chmod(0o700)
        except OSError as exc:
            raise InvalidSettings(f"BGSERVICE_DATA_DIR: cannot create {data_dir}: {exc}") from exc
        path = data_dir.resolve() / "jobs.db"
        return cls(URL.create("sqlite", database=str(path)), secret=secret)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _insert_ignore(self, table: sa.Table, **values: Any) -> sa.Executable:
        """``INSERT ... ON CONFLICT DO NOTHING`` in this database's dialect."""
        if self.dialect == "postgresql":
            return pg_insert(table).values(**values).on_conflict_do_nothing()
        return sqlite_insert(table).values(**values).on_conflict_do_nothing()

    def migrate(self) -> None:
        """Alembic ``upgrade head`` inside one transaction that concurrent openers queue behind (SQLite:
        ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock). Safe to run on every open."""
        from alembic import command

        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
            command.upgrade(_alembic_config(conn), "head")

    def schema_revision(self) -> str | None:
        """The database's Alembic revision (``alembic_version``)."""
        with self._read() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()

    # --- jobs -----------------------------------------------------------------------------------
    def create(
        self,
        spec: dict[str, Any],
        *,
        owner: str | None = None,
        request: dict[str, Any] | None = None,
        job_id: str | None = None,
        engine: str | None = None,
        quality: str | None = None,
        extra: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> JobRecord:
        """A new ``queued`` job (``job_id``: a uuid4 string, made here when not given; ``now``: its
        ``created_at``, default the current time)."""
        at = _aware(now)
        values = {
            "id": job_id or str(uuid.uuid4()),
            "owner": owner,
            "state": Q,
            "spec": spec,
            "request": request,
            "progress": 0.0,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
            "cancel_requested": False,
            "engine": engine,
            "quality": quality,
            "extra": extra,
        }
        with self._write() as conn:
            row = conn.execute(jobs.insert().values(**values).returning(*jobs.c)).mappings().one()
        return _record(row)

    def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        """The job, or ``None`` when unknown or (``owner`` given) another key's."""
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _record(row)

    def list_jobs(
        self,
        *,
        owner: str | None,
        states: Sequence[JobState] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """``owner``'s jobs (``None``: every job), newest first (ties broken by id, so pages never skip
        or repeat a job), and the cursor of the next page (``None`` at the end).
        A cursor that cannot be decoded raises :class:`ValueError`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(jobs)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if states:
            query = query.where(jobs.c.state.in_([JobState(s).value for s in states]))
        if cursor is not None:
            when, last_id = _cursor_decode(cursor)
            query = query.where(
                sa.or_(
                    jobs.c.created_at < when,
                    sa.and_(jobs.c.created_at == when, jobs.c.id < last_id),
                )
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        page = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        last = page[-1] if page else None
        next_cursor = _cursor_encode(last.created_at, last.id) if more and last and last.created_at else None
        return page, next_cursor

    def leased_to(self, runner_id: str) -> list[JobRecord]:
        """The running jobs that ``runner_id`` holds (a runner stopping gracefully releases them)."""
        query = (
            sa.select(jobs)
            .where(jobs.c.state == R, jobs.c.lease_owner == runner_id)
            .order_by(jobs.c.created_at, jobs.c.id)
        )
        with self._read() as conn:
            return [_record(r) for r in conn.execute(query).mappings().all()]

    def claim(
        self,
        runner_id: str,
        *,
        lease_seconds: float,
        max_running: int,
        max_running_per_key: int,
        now: datetime | None = None,
    ) -> JobRecord | None:
        """Atomically take the next queued job and make it ``running`` under ``runner_id``'s lease
        (``attempts`` + 1, ``started_at`` = now: the timeout counts from the current attempt's start);
        ``None`` when nothing may start now. Oldest first, fair by key: a key at ``max_running_per_key``
        is skipped, and among keys the one with the fewest running jobs goes first, so one key's burst
        never starves another key's first job. Local jobs (no owner) count as one key. Nothing starts
        while ``max_running`` jobs run."""
        check_transition(JobState.QUEUED, JobState.RUNNING)
        at = _aware(now)
        j = jobs.alias("j")
        r = jobs.alias("r")
        running_for_key = (
            sa.select(sa.func.count())
            .select_from(r)
            .where(r.c.state == R, sa.func.coalesce(r.c.owner, "") == sa.func.coalesce(j.c.owner, ""))
            .scalar_subquery()
        )
        running_total = sa.select(sa.func.count()).select_from(r).where(r.c.state == R).scalar_subquery()
        pick = (
            sa.select(j.c.id)
            .where(j.c.state == Q, running_for_key < max_running_per_key, running_total < max_running)
            .order_by(running_for_key, j.c.created_at, j.c.id)
            .limit(1)
        )
        if self.dialect == "postgresql":
            pick = pick.with_for_update(of=j, skip_locked=True)
        stmt = (
            jobs.update()
            .where(jobs.c.id == pick.scalar_subquery(), jobs.c.state == Q)
            .values(
                state=R,
                attempts=jobs.c.attempts + 1,
                lease_owner=runner_id,
                lease_expires_at=at + timedelta(seconds=lease_seconds),
                started_at=at,
                updated_at=at,
                progress=0.0,
            )
            .returning(*jobs.c)
        )
        with self._write() as conn:
            if self.dialect == "postgresql":
                # Serialise claims so that the running counts each one reads include the previous one.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLAIM_LOCK)))
            row = conn.execute(stmt).mappings().one_or_none()
        return None if row is None else _record(row)

    def heartbeat(
        self,
        job_id: str,
        runner_id: str,
        *,
        lease_seconds: float,
        progress: float | None = None,
        now: datetime | None = None,
    ) -> Heartbeat:
        """Renew the lease (and store ``progress`` 0..1 when given)."""
        at = _aware(now)
        values: dict[str, Any] = {"lease_expires_at": at + timedelta(seconds=lease_seconds), "updated_at": at}
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        stmt = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state == R, jobs.c.lease_owner == runner_id)
            .values(**values)
            .returning(jobs.c.cancel_requested)
        )
        with self._write() as conn:
            flag = conn.execute(stmt).scalar_one_or_none()
        if flag is None:
            current = self.get(job_id)
            return Heartbeat(ok=False, cancel_requested=bool(current and current.cancel_requested))
        return Heartbeat(ok=True, cancel_requested=bool(flag))

    def _finish(
        self,
        job_id: str,
        runner_id: str | None,
        new: JobState,
        values: dict[str, Any],
        *,
        now: datetime | None = None,
        guard: Sequence[sa.ColumnElement[bool]] = (),
    ) -> JobRecord:
        """One guarded ``running`` -> ``new`` under ``runner_id``'s lease (any lease when ``None``)."""
        check_transition(JobState.RUNNING, new)
        at = _aware(now)
        stmt = jobs.update().where(jobs.c.id == job_id, jobs.c.state == R, *guard)
        if runner_id is not None:
            stmt = stmt.where(jobs.c.lease_owner == runner_id)
        stmt = stmt.values(
            state=new.value,
            updated_at=at,
            finished_at=at if new.terminal else None,
            lease_owner=None,
            lease_expires_at=None,
            **values,
        ).returning(*jobs.c)
        with self._write() as conn:
            row = conn.execute(stmt).mappings().one_or_none()
        if row is not None:
            return _record(row)
        current = self.get(job_id)
        if current is None:
            raise NotFound(f"no job {job_id}")
        check_transition(current.state, new)  # raises IllegalTransition when the state is the reason
        raise IllegalTransition(
            f"job {job_id} is no longer leased to runner {runner_id} (now {current.lease_owner})"
        )

    def complete(self, job_id: str, runner_id: str, result: dict[str, Any]) -> JobRecord:
        """``running`` -> ``completed`` with the engine's ``result`` (progress 1)."""
        extra: dict[str, Any] = {"result": result, "progress": 1.0, "error": None}
        for name in ("engine", "quality"):
            if isinstance(result.get(name), str):
                extra[name] = result[name]
        return self._finish(job_id, runner_id, JobState.COMPLETED, extra)

    def fail(self, job_id: str, runner_id: str | None, error: dict[str, str]) -> JobRecord:
        """``running`` -> ``failed`` with ``{"code", "message"}`` (``runner_id`` None: a sweep)."""
        if "code" not in error:
            raise ValueError("a job error needs a code")
        return self._finish(job_id, runner_id, JobState.FAILED, {"error": dict(error)})

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Queued -> cancelled at once; running -> ``cancel_requested`` (the runner ends it ``cancelled``);
        cancelled -> unchanged. Completed or failed -> :class:`~bgservice.errors.JobNotCancellable`;
        unknown (or another key's) -> :class:`~bgservice.errors.NotFound`."""
        check_transition(JobState.QUEUED, JobState.CANCELLED)
        guard = [jobs.c.id == job_id]
        if owner is not None:
            guard.append(jobs.c.owner == owner)
        for _ in range(10):  # a claim or a requeue may move the job between two statements: look again
            at = _utcnow()
            with self._write() as conn:
                row = (
                    conn.execute(
                        jobs.update()
                        .where(*guard, jobs.c.state == Q)
                        .values(
                            state=JobState.CANCELLED.value,
                            updated_at=at,
                            finished_at=at,
                            error=_CANCELLED_ERROR,
                        )
                        .returning(*jobs.c)
                    )
                    .mappings()
                    .one_or_none()
                )
                if row is None:
                    row = (
                        conn.execute(
                            jobs.update()
                            .where(*guard, jobs.c.state == R)
                            .values(cancel_requested=True, updated_at=at)
                            .returning(*jobs.c)
                        )
                        .mappings()
                        .one_or_none()
                    )
            if row is not None:
                return _record(row)
            current = self.get(job_id, owner=owner)
            if current is None:
                raise NotFound(f"no job {job_id}")
            if current.state is JobState.CANCELLED:
                return current
            if current.state in (JobState.COMPLETED, JobState.FAILED):
                raise JobNotCancellable(f"job {job_id} has already {current.state.value}")
        raise ServiceUnavailable(f"job {job_id} kept changing state while being cancelled; try again")

    def mark_cancelled(self, job_id: str, runner_id: str) -> JobRecord:
        """The runner stopped a job whose cancel was requested: ``running`` -> ``cancelled``."""
        return self._finish(job_id, runner_id, JobState.CANCELLED, {"error": _CANCELLED_ERROR})

    def release(self, job_id: str, runner_id: str) -> JobRecord:
        """Graceful stop: ``running`` -> ``queued`` without counting the attempt (``attempts`` - 1).
        A job whose cancel was requested ends ``cancelled`` instead."""
        try:
            # guarded on no cancel request, so that a cancel arriving meanwhile is never lost in the queue
            return self._finish(
                job_id,
                runner_id,
                JobState.QUEUED,
                {"attempts": jobs.c.attempts - 1, "progress": 0.0, "started_at": None},
                guard=[jobs.c.cancel_requested.is_(False)],
            )
        except IllegalTransition:
            current = self.get(job_id)
            if current is None or not current.cancel_requested or current.state is not JobState.RUNNING:
                raise
            return self.mark_cancelled(job_id, runner_id)

    def requeue_expired(self, *, now: datetime | None = None, max_attempts: int = MAX_ATTEMPTS) -> list[str]:
        """Running jobs whose lease lapsed go back to ``queued`` (their runner died); one that has had
        ``max_attempts`` attempts fails with ``internal`` instead, and one whose cancel was requested ends
        ``cancelled``. Returns the ids touched."""
        check_transition(JobState.RUNNING, JobState.QUEUED)
        at = _aware(now)
        lapsed = [jobs.c.state == R, jobs.c.lease_expires_at < at]
        cleared = {"lease_owner": None, "lease_expires_at": None, "updated_at": at}
        message = f"the job's runner was lost {max_attempts} times"
        touched: list[str] = []
        with self._write() as conn:
            for where, values in (
                (
                    [jobs.c.cancel_requested.is_(True)],
                    {"state": JobState.CANCELLED.value, "finished_at": at, "error": _CANCELLED_ERROR},
                ),
                (
                    [jobs.c.attempts >= max_attempts],
                    {
                        "state": JobState.FAILED.value,
                        "finished_at": at,
                        "error": {"code": "internal", "message": message},
                    },
                ),
                # a cancel requested meanwhile keeps it running: the next sweep ends it cancelled
                ([jobs.c.cancel_requested.is_(False)], {"state": Q, "progress": 0.0, "started_at": None}),
            ):
                stmt = jobs.update().where(*lapsed, *where).values(**cleared, **values).returning(jobs.c.id)
                touched.extend(conn.execute(stmt).scalars().all())
        return touched

    def fail_timed_out(self, timeout_seconds: float, *, now: datetime | None = None) -> list[str]:
        """Running jobs started more than ``timeout_seconds`` ago fail with ``timeout``."""
        check_transition(JobState.RUNNING, JobState.FAILED)
        at = _aware(now)
        error = {"code": JobTimeout.code, "message": f"the job ran longer than {timeout_seconds:g} seconds"}
        stmt = (
            jobs.update()
            .where(jobs.c.state == R, jobs.c.started_at < at - timedelta(seconds=timeout_seconds))
            .values(
                state=JobState.FAILED.value,
                error=error,
                finished_at=at,
                updated_at=at,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(jobs.c.id)
        )
        with self._write() as conn:
            return list(conn.execute(stmt).scalars().all())

    def counts(self, *, owner: str | None = None) -> dict[str, int]:
        """Jobs per state (metrics, readiness); every state is present, 0 when none."""
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        out = {state.value: 0 for state in JobState}
        with self._read() as conn:
            for state, n in conn.execute(query).all():
                out[str(state)] = int(n)
        return out

    # --- shared secrets and generations -----------------------------------------------------------
    def secret(self, name: str = "signing") -> bytes:
        """A 32-byte secret generated once and kept in the database (every replica reads the same).
        ``BGSERVICE_SECRET`` (the ``secret`` given at open) overrides the ``signing`` secret."""
        if name == "signing" and self._override:
            return self._override
        with self._lock:
            cached = self._secret_cache.get(name)
        if cached is not None:
            return cached
        with self._write() as conn:
            # Replicas racing to generate it: the first insert wins and everyone reads that one.
            candidate = _secrets.token_bytes(32)
            conn.execute(self._insert_ignore(secrets, name=name, value=candidate, created_at=_utcnow()))
            value = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name)).scalar_one()
        with self._lock:
            self._secret_cache[name] = bytes(value)
        return bytes(value)

    def bump_generation(self, name: str = "runner") -> int:
        """Start a new generation (a deploy); older runners see they are retired and stop claiming."""
        at = _utcnow()
        with self._write() as conn:
            # The row exists (value 0) before the first bump; two deploys at once: the second waits on the
            # first's row lock (SQLite: on its write transaction), then adds one more.
            conn.execute(self._insert_ignore(generations, name=name, value=0, updated_at=at))
            stmt = (
                generations.update()
                .where(generations.c.name == name)
                .values(value=generations.c.value + 1, updated_at=at)
                .returning(generations.c.value)
            )
            return int(conn.execute(stmt).scalar_one())

    def generation(self, name: str = "runner") -> int:
        """The current generation (0 before the first bump)."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(generations.c.value).where(generations.c.name == name)
            ).scalar_one_or_none()
        return int(value or 0)

    # --- API keys (ids only: SHA-256 hex of the key) ----------------------------------------------
    def add_api_key(self, key: str, *, name: str | None = None) -> str:
        """Register a key (idempotent; a revoked key stays revoked) and return its id."""
        kid = key_id(key)
        with self._write() as conn:
            conn.execute(self._insert_ignore(api_keys, id=kid, name=name, created_at=_utcnow()))
        return kid

    def api_key_id(self, key: str) -> str | None:
        """The id of a registered, unrevoked key; ``None`` for an unknown or revoked one."""
        kid = key_id(key)
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.id).where(api_keys.c.id == kid, api_keys.c.revoked_at.is_(None))
            ).first()
        return None if row is None else kid

    def revoke_api_key(self, kid: str) -> bool:
        """Revoke a key by id; False when unknown or already revoked."""
        with self._write() as conn:
            result = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == kid, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_utcnow())
            )
        return bool(result.rowcount)
