"""Idempotent submits: the ``Idempotency-Key`` header (IETF httpapi draft), scoped to the API key.

A key is kept 24 h (:data:`TTL`) with a SHA-256 of the normalised request (the request as the service
understood it, so ``#fff`` and ``#FFFFFF``, or an alias and its new name, are the same request):

- the same key and request again: the original 202 envelope (the same job), no second job;
- the same key with another request: 422 ``idempotency_key_mismatch``;
- the same key while the first request is still being accepted: 409 ``idempotency_key_in_use`` (a claim
  older than :data:`STALE` — its replica died mid-request — is taken over instead).

The claim is one row per (API key id, key) in ``idempotency_keys`` (migration ``0003``): the primary key
makes two replicas racing on one key meet in the database, so it holds across every Serve replica.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, String, Table, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bgservice.errors import IdempotencyKeyInUse, IdempotencyKeyMismatch, InvalidRequest
from bgservice.jobs.schema import UTCDateTime, metadata

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
STALE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(64), primary_key=True),  # API key id
    Column("key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("job_id", String(36), nullable=True),  # null while the first request is being accepted
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


def check_key(value: str) -> str:
    """The header's value: 1..255 visible ASCII characters, else 422 ``invalid_request``."""
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(33 <= ord(ch) <= 126 for ch in key):
        raise InvalidRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters", field=HEADER)
    return key


def request_hash(normalised: dict[str, Any]) -> str:
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """``job_id`` set: a replay of a request already accepted; else this request owns the key now."""

    job_id: str | None


def claim(engine: Engine, owner: str, key: str, digest: str, *, now: datetime | None = None) -> Claim:
    """Take ``key`` for this request, or find the job an identical earlier request made."""
    now = now or datetime.now(UTC)
    row_of = and_(idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)
    for _ in range(3):  # an insert that loses a race reads the winner's row next time round
        with engine.begin() as conn:
            conn.execute(delete(idempotency_keys).where(row_of, idempotency_keys.c.expires_at < now))
            row = conn.execute(
                select(
                    idempotency_keys.c.request_hash, idempotency_keys.c.job_id, idempotency_keys.c.created_at
                ).where(row_of)
            ).first()
            if row is None:
                try:
                    conn.execute(
                        insert(idempotency_keys).values(
                            owner=owner, key=key, request_hash=digest, job_id=None,
                            created_at=now, expires_at=now + TTL,
                        )
                    )  # fmt: skip
                except IntegrityError:
                    continue
                return Claim(None)
            if row.request_hash != digest:
                raise IdempotencyKeyMismatch(
                    f"this {HEADER} was used for a different request in the last 24 h", field=HEADER
                )
            if row.job_id is not None:
                return Claim(str(row.job_id))
            if now - row.created_at < STALE:
                raise IdempotencyKeyInUse(
                    f"a request with this {HEADER} is still being accepted; retry shortly", field=HEADER
                )
            # the first request's replica died before finishing: this one takes the key over
            conn.execute(update(idempotency_keys).where(row_of).values(created_at=now, expires_at=now + TTL))
            return Claim(None)
    raise IdempotencyKeyInUse(f"a request with this {HEADER} is still being accepted", field=HEADER)


def complete(engine: Engine, owner: str, key: str, job_id: str) -> None:
    """The job exists: later requests with this key get it."""
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)
            .values(job_id=job_id)
        )


def release(engine: Engine, owner: str, key: str) -> None:
    """The request failed before making a job: the key is free again (a retry may succeed)."""
    with engine.begin() as conn:
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.owner == owner,
                idempotency_keys.c.key == key,
                idempotency_keys.c.job_id.is_(None),
            )
        )


def sweep(engine: Engine, *, now: datetime | None = None) -> int:
    """Remove keys past their 24 h (the sweeper may call it; :func:`claim` also drops its own)."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.expires_at < (now or datetime.now(UTC)))
        )
        return int(result.rowcount or 0)
