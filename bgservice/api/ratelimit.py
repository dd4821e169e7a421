"""Per-key submission rate: a token bucket in the database, so every Serve replica shares it.

The bucket holds at most ``quota`` = ``BGSERVICE_RATE_LIMIT_PER_MINUTE`` tokens (the burst) and refills
at ``quota`` per 60 s. Every authenticated submit attempt takes one token; none left -> 429
``rate_limited`` with ``Retry-After`` (whole seconds until one token is back). Every authenticated answer
carries the bucket (draft-ietf-httpapi-ratelimit-headers)::

    RateLimit-Policy: "submit";q=<quota>;w=60
    RateLimit: "submit";r=<tokens left>;t=<seconds until full>

An update is a compare-and-set on the row's ``version`` (retried on a lost race), so two replicas taking
a token at once never both spend the same one; no lock is held between statements.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from bgservice.api.tables import rate_buckets
from bgservice.errors import InternalError

WINDOW = 60.0
_ATTEMPTS = 50


@dataclass(frozen=True)
class Bucket:
    quota: int
    tokens: float
    allowed: bool = True

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens))

    @property
    def seconds_to_full(self) -> int:
        return max(0, math.ceil((self.quota - self.tokens) * WINDOW / self.quota - 1e-9))

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil((1.0 - self.tokens) * WINDOW / self.quota - 1e-9))

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"submit";q={self.quota};w={int(WINDOW)}',
            "RateLimit": f'"submit";r={self.remaining};t={self.seconds_to_full}',
        }


class RateLimiter:
    def __init__(self, engine: Engine, writer: Engine, quota: int) -> None:
        self._engine = engine
        self._writer = writer
        self.quota = quota

    def _refilled(self, tokens: float, updated: float, now: float) -> float:
        return min(float(self.quota), tokens + max(0.0, now - updated) * self.quota / WINDOW)

    def peek(self, key_id: str) -> Bucket:
        """The bucket as it is now (nothing taken)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(rate_buckets.c.tokens, rate_buckets.c.updated).where(rate_buckets.c.key_id == key_id)
            ).first()
        if row is None:
            return Bucket(self.quota, float(self.quota))
        return Bucket(self.quota, self._refilled(row.tokens, row.updated, time.time()))

    def take(self, key_id: str) -> Bucket:
        """Take one token; ``allowed`` is False (and nothing taken) when the bucket is empty."""
        for _ in range(_ATTEMPTS):
            try:
                bucket = self._try_take(key_id)
            except IntegrityError:
                continue  # another replica made the row first: go round and spend from it
            except OperationalError as exc:
                # SQLite: a read transaction that another process's write overtook cannot upgrade
                # (SQLITE_BUSY_SNAPSHOT); start it again. Anything else is the database's failure.
                if "locked" not in str(exc) and "busy" not in str(exc).lower():
                    raise
                time.sleep(0.005)
                continue
            if bucket is not None:
                return bucket
        raise InternalError("the rate-limit bucket is too contended")

    def _try_take(self, key_id: str) -> Bucket | None:
        """One compare-and-set round; ``None`` when another replica changed the row in between."""
        now = time.time()
        with self._writer.begin() as conn:
            row = conn.execute(
                select(rate_buckets.c.tokens, rate_buckets.c.updated, rate_buckets.c.version).where(
                    rate_buckets.c.key_id == key_id
                )
            ).first()
            if row is None:
                conn.execute(
                    insert(rate_buckets).values(
                        key_id=key_id, tokens=self.quota - 1.0, updated=now, version=1
                    )
                )
                return Bucket(self.quota, self.quota - 1.0)
            tokens = self._refilled(row.tokens, row.updated, now)
            allowed = tokens >= 1.0
            new_tokens = tokens - 1.0 if allowed else tokens
            done = conn.execute(
                update(rate_buckets)
                .where(rate_buckets.c.key_id == key_id, rate_buckets.c.version == row.version)
                .values(tokens=new_tokens, updated=now, version=row.version + 1)
            ).rowcount
        return Bucket(self.quota, new_tokens, allowed=allowed) if done == 1 else None
