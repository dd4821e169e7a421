"""The HTTP service's own tables (migration ``0002_service``), beside the job store's.

- ``assets``: uploaded files (owner = API key id), their storage key, kind and expiry.
- ``asset_uses``: which jobs use which asset (an asset used by an unfinished job never expires).
- ``rate_buckets``: one token bucket per API key, shared by every replica (``version`` = optimistic lock).
- ``result_deletions``: results removed before or at their retention end (``DELETE .../result``, sweeper).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table

from bgservice.jobs.schema import UTCDateTime, metadata

assets = Table(
    "assets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("key", String(512), nullable=False),
    Column("kind", String(8), nullable=False),  # video | image
    Column("content_type", String(100), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

asset_uses = Table(
    "asset_uses",
    metadata,
    Column("asset_id", String(64), primary_key=True),
    Column("job_id", String(36), primary_key=True),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),  # unix seconds of the last refill
    Column("version", Integer, nullable=False),
)

result_deletions = Table(
    "result_deletions",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("reason", String(16), nullable=False),  # deleted | expired
    Column("deleted_at", UTCDateTime, nullable=False),
)
