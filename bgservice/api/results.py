"""A job's stored result: removed on request (``DELETE /v2/jobs/{id}/result``) or by the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from bgservice.api import files
from bgservice.api.auth import folder_id
from bgservice.api.service import Service
from bgservice.api.tables import result_deletions
from bgservice.jobs.record import JobRecord


def delete(service: Service, record: JobRecord, *, reason: str = "deleted") -> None:
    """Remove the object and remember it (the job then shows ``url: null, expired: true``). Idempotent."""
    key = files.result_key(folder_id(record.owner or ""), record.id, files.spec_format(record.spec))
    files.remove(service.settings, key)
    try:
        with service.writer.begin() as conn:
            conn.execute(
                insert(result_deletions).values(job_id=record.id, reason=reason, deleted_at=datetime.now(UTC))
            )
    except IntegrityError:
        pass  # already recorded
