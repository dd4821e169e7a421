"""Signed webhooks: an optional ``callbackUrl`` on a submit gets one POST when the job ends.

- Body ``{"type": "job.completed"|"job.failed"|"job.cancelled", "timestamp", "data": <the job as GET
  returns it, rendered afresh for each attempt so its URL is valid>}``, signed per the Standard Webhooks
  specification with the ``standardwebhooks`` package: ``webhook-id`` (the same on every retry),
  ``webhook-timestamp``, ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``
  under the key's secret (``whsec_…``, ``GET /v1/webhooks/secret``; one per API key, made on first use).
- The URL passes the safe fetcher's rules at submit and again at every delivery (scheme, no userinfo,
  no private / loopback address unless the operator lifted that rule; the connection is pinned to the
  checked address; redirects are not followed).
- 2xx: delivered. 410: stop, ``disabled``. Any other status, a timeout (:data:`TIMEOUT_SECONDS`) or a
  refused connection: retried after ``BGSERVICE_WEBHOOK_RETRY_SCHEDULE`` (seconds between attempts; the
  last value repeats) until :data:`GIVE_UP_AFTER` after the first attempt, then ``failed``.
- Deliveries are rows in ``webhook_deliveries`` (migration ``0004``): every API replica runs a
  :class:`Deliverer` thread that claims due rows with a lease, so a restart (or a dead replica) loses
  none and two replicas never send one attempt twice.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Column, Engine, Integer, String, Table, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from bgservice.errors import BgServiceError, UrlNotAllowed
from bgservice.jobs.schema import UTCDateTime, jobs, metadata

if TYPE_CHECKING:
    from bgservice.api.service import Service
    from bgservice.settings import Settings

log = logging.getLogger("bgservice.api.webhooks")

TIMEOUT_SECONDS = 15.0
GIVE_UP_AFTER = timedelta(hours=24)
LEASE = timedelta(seconds=60)  # longer than one attempt can take
POLL_SECONDS = 1.0
SECRET_PREFIX = "whsec_"

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("owner", String(64), primary_key=True),  # API key id
    Column("secret", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("base_url", String(512), nullable=False),  # where the job's result URL points (its host)
    Column("msg_id", String(64), nullable=False),  # webhook-id: the same on every attempt
    Column("state", String(16), nullable=False),  # pending | delivered | failed | disabled
    Column("attempts", Integer, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("first_attempt_at", UTCDateTime, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class WebhookInfo:
    url: str
    state: str
    attempts: int
    last_status: int | None


def schedule(settings: Settings) -> list[float]:
    """Seconds between attempts, from ``BGSERVICE_WEBHOOK_RETRY_SCHEDULE``."""
    return [float(part) for part in settings.webhook_retry_schedule.split(",") if part.strip()]


def check_callback_url(url: str, settings: Settings) -> str:
    """The safe fetcher's rules for a callback URL (at submit and before every delivery)."""
    from bgservice.io.fetch import address_policy, check_http_url

    return check_http_url(url.strip(), address_policy(settings), field="callbackUrl")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_for(engine: Engine, writer: Engine, owner: str) -> str:
    """The key's signing secret, made on first use (the same on every replica)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(webhook_secrets.c.secret).where(webhook_secrets.c.owner == owner)
        ).scalar()
    if found:
        return str(found)
    try:
        with writer.begin() as conn:
            conn.execute(insert(webhook_secrets).values(owner=owner, secret=new_secret(), created_at=_now()))
    except IntegrityError:  # another replica made it first
        pass
    with engine.connect() as conn:
        return str(
            conn.execute(select(webhook_secrets.c.secret).where(webhook_secrets.c.owner == owner)).scalar()
        )


def register(writer: Engine, owner: str, job_id: str, url: str, base_url: str) -> None:
    """Record the delivery-to-be of a new job (before the job exists: an orphan row is never due)."""
    with writer.begin() as conn:
        conn.execute(
            insert(webhook_deliveries).values(
                job_id=job_id, owner=owner, url=url, base_url=base_url, msg_id=f"msg_{uuid.uuid4().hex}",
                state="pending", attempts=0, last_status=None, first_attempt_at=None, next_attempt_at=None,
                lease_until=None, created_at=_now(),
            )
        )  # fmt: skip


def info(engine: Engine, job_ids: list[str]) -> dict[str, WebhookInfo]:
    """The ``webhook`` object of these jobs (those that have one)."""
    if not job_ids:
        return {}
    d = webhook_deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.job_id, d.url, d.state, d.attempts, d.last_status).where(d.job_id.in_(job_ids))
        ).all()
    return {
        str(r.job_id): WebhookInfo(str(r.url), str(r.state), int(r.attempts), r.last_status) for r in rows
    }


# --- delivery ----------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _claim_due(service: Service, now: datetime, limit: int = 10) -> list[Any]:
    """Due deliveries of ended jobs, each taken under a lease (an optimistic update per row)."""
    d = webhook_deliveries.c
    free = or_(d.lease_until.is_(None), d.lease_until < now)
    with service.engine.connect() as conn:
        rows = conn.execute(
            select(d.job_id, d.lease_until)
            .join_from(webhook_deliveries, jobs, jobs.c.id == d.job_id)
            .where(
                d.state == "pending",
                or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now),
                free,
                jobs.c.state.in_(("completed", "failed", "cancelled")),
            )
            .limit(limit)
        ).all()
    claimed: list[Any] = []
    for row in rows:
        same_lease = d.lease_until.is_(None) if row.lease_until is None else d.lease_until == row.lease_until
        with service.writer.begin() as conn:
            took = conn.execute(
                update(webhook_deliveries)
                .where(and_(d.job_id == row.job_id, d.state == "pending", same_lease))
                .values(lease_until=now + LEASE)
            ).rowcount
            if took == 1:
                claimed.append(conn.execute(select(webhook_deliveries).where(d.job_id == row.job_id)).one())
    return claimed


def _body(service: Service, row: Any) -> tuple[str, str] | None:
    """(event type, JSON body) with the job rendered now (a fresh signed URL); None when it vanished."""
    from bgservice.api.views import job_view, rfc3339

    record = service.store.get(str(row.job_id))
    if record is None:
        return None
    view = job_view(service, record, str(row.base_url))
    event = f"job.{view.status}"
    body = {"type": event, "timestamp": rfc3339(_now()), "data": view.model_dump(mode="json")}
    return event, json.dumps(body, separators=(",", ":"))


def post(url: str, payload: str, headers: dict[str, str], settings: Settings) -> int:
    """One attempt under the safe fetcher's rules; the HTTP status (redirects are not followed)."""
    from bgservice.io.fetch import _Deadline, _PinnedTransport, address_policy, check_http_url

    policy = address_policy(settings)
    target = check_http_url(url, policy, field="callbackUrl")
    transport = _PinnedTransport(policy, None, _Deadline(TIMEOUT_SECONDS))
    with httpx.Client(
        transport=transport, follow_redirects=False, trust_env=False, timeout=TIMEOUT_SECONDS
    ) as c:
        return c.post(target, content=payload.encode(), headers=headers).status_code


def deliver_once(service: Service, row: Any) -> str:
    """One attempt for a claimed row; writes the outcome. Returns delivered | retry | failed | disabled."""
    from standardwebhooks import Webhook

    from bgservice.api import metrics

    now = _now()
    made = _body(service, row)
    status: int | None = None
    if made is None:
        outcome = "failed"
    else:
        _, payload = made
        secret = secret_for(service.engine, service.writer, str(row.owner))
        signature = Webhook(secret).sign(str(row.msg_id), now, payload)
        headers = {
            "content-type": "application/json",
            "user-agent": "bgservice-webhooks",
            "webhook-id": str(row.msg_id),
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            status = post(str(row.url), payload, headers, service.settings)
        except UrlNotAllowed as exc:
            log.warning("webhook job=%s refused: %s", row.job_id, exc)
            outcome = "failed"
        except (httpx.HTTPError, BgServiceError, OSError) as exc:
            log.info("webhook job=%s attempt %d: %s", row.job_id, row.attempts + 1, type(exc).__name__)
            outcome = "retry"
        else:
            outcome = "delivered" if 200 <= status < 300 else "disabled" if status == 410 else "retry"
    first = row.first_attempt_at or now
    attempts = int(row.attempts) + 1
    next_at: datetime | None = None
    if outcome == "retry":
        steps = schedule(service.settings) or [5.0]
        next_at = now + timedelta(seconds=steps[min(attempts - 1, len(steps) - 1)])
        if next_at - first > GIVE_UP_AFTER:
            outcome, next_at = "failed", None
    state = "pending" if outcome == "retry" else outcome
    with service.writer.begin() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.job_id == row.job_id)
            .values(
                state=state, attempts=attempts, last_status=status, first_attempt_at=first,
                next_attempt_at=next_at, lease_until=None,
            )
        )  # fmt: skip
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    log.info("webhook job=%s attempt %d -> %s (%s)", row.job_id, attempts, outcome, status)
    return outcome


def run_due(service: Service) -> int:
    """Deliver what is due now; the number of attempts made."""
    rows = _claim_due(service, _now())
    for row in rows:
        try:
            deliver_once(service, row)
        except Exception:  # the lease lapses and another pass retries it
            log.exception("webhook job=%s: delivery crashed", row.job_id)
    return len(rows)


class Deliverer:
    """A daemon thread per API replica: delivers due webhooks every :data:`POLL_SECONDS`."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bgservice-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                run_due(self._service)
            except Exception:
                log.exception("webhook pass failed")
