"""the HTTP service: assets, asset_uses, rate_buckets, result_deletions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),  # API key id (SHA-256 hex)
        sa.Column("key", sa.String(512), nullable=False),  # under the storage root
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_assets_expires", "assets", ["expires_at"])
    op.create_table(
        "asset_uses",
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(36), primary_key=True),
    )
    op.create_index("ix_asset_uses_job", "asset_uses", ["job_id"])
    op.create_table(
        "rate_buckets",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "result_deletions",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("deleted_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("result_deletions")
    op.drop_table("rate_buckets")
    op.drop_index("ix_asset_uses_job", table_name="asset_uses")
    op.drop_table("asset_uses")
    op.drop_index("ix_assets_expires", table_name="assets")
    op.drop_table("assets")
