"""What a job is and its life: the record and its states (:mod:`.record`), the durable store
(:mod:`.store`: SQLAlchemy, SQLite embedded, PostgreSQL on clusters, Alembic migrations) and the runner
(:mod:`.runner`: claims queued records and drives each through an engine).

Entry points (CLI, batch, the HTTP API) build a :class:`~bgservice.spec.JobSpec` and hand it here; this
package hands it to an engine (:mod:`bgservice.engines`). Nothing here imports an entry point.
"""
