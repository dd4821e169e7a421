"""Alembic migrations of the job store, run by :class:`bgservice.jobs.store.JobStore` when it opens."""
