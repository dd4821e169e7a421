"""One log line per job event, for ``bgservice serve``'s console: the store is polled for records whose
``updated_at`` moved, and each change of state (and progress, in tenths) is printed with the job id.

Read from the database, so it shows every replica's submits and the runner's progress alike."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from bgservice.jobs.schema import jobs

log = logging.getLogger("bgservice.jobs")


class JobEventLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._since = datetime.now(UTC) - timedelta(seconds=1)
        self._seen: dict[str, tuple[str, int]] = {}

    def poll(self) -> list[str]:
        """Log (and return) the lines for what changed since the last call."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    jobs.c.id, jobs.c.state, jobs.c.progress, jobs.c.attempts, jobs.c.error, jobs.c.updated_at
                )
                .where(jobs.c.updated_at >= self._since)
                .order_by(jobs.c.updated_at)
            ).all()
        lines: list[str] = []
        for row in rows:
            self._since = max(self._since, row.updated_at)
            tenth = int((row.progress or 0.0) * 10)
            before = self._seen.get(row.id)
            if before == (row.state, tenth):
                continue
            self._seen[row.id] = (row.state, tenth)
            if before is None or before[0] != row.state:
                detail = f" attempt {row.attempts}" if row.state == "running" else ""
                if row.state == "failed" and row.error:
                    detail = f" {row.error.get('code')}: {row.error.get('message')}"
                line = f"job {row.id} {row.state}{detail}"
            else:
                line = f"job {row.id} progress {tenth * 10}%"
            log.info(line)
            lines.append(line)
        return lines
