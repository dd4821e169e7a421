"""What one API process holds for its life: settings, the job store, the keys, the rate limiter and the
signing secret. Built once per Serve replica (or per test app)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from bgservice.api.auth import KeyRing
from bgservice.api.files import apply_endpoint
from bgservice.api.ratelimit import RateLimiter
from bgservice.jobs.store import JobStore
from bgservice.settings import Settings

MAX_JSON_BYTES = 64 * 1024


@dataclass
class Service:
    settings: Settings
    store: JobStore
    keys: KeyRing
    limiter: RateLimiter
    secret: bytes

    @property
    def engine(self) -> Engine:
        """Reads."""
        return self.store.engine

    @property
    def writer(self) -> Engine:
        """Write transactions."""
        return self.store.writer

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        apply_endpoint(settings)
        store = JobStore.from_settings(settings)
        keys = KeyRing(settings)
        secret = store.secret("signing")
        return cls(
            settings=settings,
            store=store,
            keys=keys,
            limiter=RateLimiter(store.engine, store.writer, settings.rate_limit_per_minute),
            secret=secret,
        )

    def close(self) -> None:
        self.store.close()
