"""A job record as the API shows it (``GET /v2/jobs/{id}``), with a freshly signed result URL."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bgservice.api import files, signing, webhooks
from bgservice.api.auth import folder_id
from bgservice.api.billing import amount_usd, billed_seconds
from bgservice.api.models import Job, JobError, NormalisedRequest, ResultData, Usage, WebhookState
from bgservice.api.service import Service
from bgservice.api.tables import result_deletions
from bgservice.jobs.record import JobRecord, JobState


def rfc3339(value: datetime | None) -> str:
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deleted_results(service: Service, job_ids: Iterable[str]) -> set[str]:
    ids = list(job_ids)
    if not ids:
        return set()
    with service.engine.connect() as conn:
        rows = conn.execute(select(result_deletions.c.job_id).where(result_deletions.c.job_id.in_(ids)))
        return {r.job_id for r in rows}


def retention_end(service: Service, record: JobRecord) -> datetime:
    done = record.finished_at or record.updated_at or datetime.now(UTC)
    return done + timedelta(hours=service.settings.retention_hours)


def _result(service: Service, record: JobRecord, base_url: str, deleted: bool) -> ResultData:
    owner = record.owner or ""
    folder = folder_id(owner)
    fmt = files.spec_format(record.spec)
    key = files.result_key(folder, record.id, fmt)
    result = record.result or {}
    duration = float(result.get("duration_seconds", 0.0))
    billed = billed_seconds(duration)
    kept_until = retention_end(service, record)
    now = datetime.now(UTC)
    expired = deleted or now >= kept_until
    url: str | None = None
    expires_at = kept_until
    if not expired:
        ttl = service.settings.url_ttl_seconds
        url_end = int(time.time()) + ttl
        if files.is_local_root(service.settings):
            url = base_url.rstrip("/") + signing.signed_path(service.secret, key, url_end)
        else:
            url = files.presign(service.settings, key, ttl)
        expires_at = min(kept_until, datetime.fromtimestamp(url_end, UTC))
    return ResultData(
        url=url,
        key=key,
        folder_id=folder,
        content_type=files.format_info(fmt).content_type,
        output_format=fmt,
        quality=record.quality or (str(result["quality"]) if result.get("quality") else None),
        duration_seconds=duration,
        expires_at=rfc3339(expires_at),
        expired=expired,
        usage=Usage(billed_seconds=billed, amount_usd=amount_usd(billed)),
    )


def job_view(service: Service, record: JobRecord, base_url: str, *, deleted: bool | None = None) -> Job:
    if deleted is None:
        deleted = record.id in deleted_results(service, [record.id])
    result = None
    if record.state == JobState.COMPLETED:
        result = _result(service, record, base_url, deleted)
    error = None
    if record.state in (JobState.FAILED, JobState.CANCELLED) and record.error:
        error = JobError(
            code=str(record.error.get("code", "internal")), message=str(record.error.get("message", ""))
        )
    elif record.state == JobState.CANCELLED:
        error = JobError(code="cancelled", message="the job was cancelled")
    request: NormalisedRequest | dict[str, Any] = (
        NormalisedRequest.model_validate(record.request) if record.request else {}
    )
    hook = webhooks.info(service.engine, [record.id]).get(record.id)
    return Job(
        webhook=WebhookState(**vars(hook)) if hook is not None else None,
        id=record.id,
        status=record.state.value,
        progress=min(1.0, max(0.0, float(record.progress or 0.0))),
        created_at=rfc3339(record.created_at),
        updated_at=rfc3339(record.updated_at),
        attempts=record.attempts,
        request=request,
        result_data=result,
        error=error,
    )


def job_views(service: Service, records: list[JobRecord], base_url: str) -> list[Job]:
    gone = deleted_results(service, [r.id for r in records if r.state == JobState.COMPLETED])
    return [job_view(service, r, base_url, deleted=r.id in gone) for r in records]
