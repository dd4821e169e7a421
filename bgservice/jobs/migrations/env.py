"""Alembic environment: the store hands over an open connection (``config.attributes["connection"]``)
inside a transaction it holds (and, for concurrent openers, a lock), so migrations never open their own."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bgservice.jobs.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the job store's migrations run from bgservice.jobs.store.JobStore (or `python -m "
        "bgservice.jobs.migrate`), which passes an open connection"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
