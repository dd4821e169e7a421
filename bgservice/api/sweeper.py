"""Retention: results and assets are removed ``BGSERVICE_RETENTION_HOURS`` after they were made.

Every API replica runs :class:`Sweeper` in a daemon thread (period: a tenth of the retention, between 1 s
and 60 s). A sweep is idempotent, so replicas sweeping at once only repeat each other's deletes.

- A completed job's result past its retention end: the object is removed and the job's ``result_data``
  shows ``url: null, expired: true`` from then on (``result_deletions``).
- An asset past its expiry is removed unless a queued or running job uses it: an asset never
  disappears under a job that has not run yet; it goes at the first sweep after that job ends.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, exists, insert, select
from sqlalchemy.exc import IntegrityError

from bgservice.api import files
from bgservice.api.auth import folder_id
from bgservice.api.service import Service
from bgservice.api.tables import asset_uses, assets, result_deletions
from bgservice.jobs.schema import jobs

log = logging.getLogger("bgservice.api.sweeper")


def sweep(service: Service, *, now: datetime | None = None) -> tuple[int, int]:
    """One pass; ``(results removed, assets removed)``."""
    now = now or datetime.now(UTC)
    settings = service.settings
    cutoff = now - timedelta(hours=settings.retention_hours)
    engine, writer = service.engine, service.writer
    with engine.connect() as conn:
        old_results = conn.execute(
            select(jobs.c.id, jobs.c.owner, jobs.c.spec).where(
                jobs.c.state == "completed",
                jobs.c.finished_at < cutoff,
                ~exists().where(result_deletions.c.job_id == jobs.c.id),
            )
        ).all()
        in_use = exists().where(
            and_(
                asset_uses.c.asset_id == assets.c.id,
                jobs.c.id == asset_uses.c.job_id,
                jobs.c.state.in_(("queued", "running")),
            )
        )
        old_assets = conn.execute(
            select(assets.c.id, assets.c.key).where(assets.c.expires_at < now, ~in_use)
        ).all()
    for job_id, owner, spec in old_results:
        files.remove(settings, files.result_key(folder_id(owner or ""), job_id, files.spec_format(spec)))
        try:
            with writer.begin() as conn:
                conn.execute(insert(result_deletions).values(job_id=job_id, reason="expired", deleted_at=now))
        except IntegrityError:
            pass  # another replica recorded it first
        log.info("job %s: result expired and removed", job_id)
    for asset_id, key in old_assets:
        files.remove(settings, key)
        with writer.begin() as conn:
            conn.execute(delete(assets).where(assets.c.id == asset_id))
            conn.execute(delete(asset_uses).where(asset_uses.c.asset_id == asset_id))
        log.info("asset %s expired and removed", asset_id)
    return len(old_results), len(old_assets)


class Sweeper:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._stop = threading.Event()
        self.period = min(60.0, max(1.0, service.settings.retention_hours * 3600 / 10))
        self._thread = threading.Thread(target=self._loop, name="bgservice-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                sweep(self._service)
            except Exception:  # a sweep that failed is retried at the next period
                log.exception("sweep failed")
