"""``Prefer: wait=N`` (RFC 7240) on a submit or on ``GET /v2/jobs/{id}``: hold the answer up to ``N``
seconds (at most :data:`MAX_WAIT`) for the job to end.

If it ends in time the answer is ``200`` with the job as ``GET`` returns it and ``Preference-Applied:
wait=N``; otherwise the usual answer (the 202 envelope, or the job as it is). The wait is an
``asyncio.sleep`` loop over the store: no worker thread is held while waiting, only for each short read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from bgservice.jobs.record import JobRecord

HEADER = "Prefer"
APPLIED = "Preference-Applied"
MAX_WAIT = 60
POLL_SECONDS = 0.25


def wait_seconds(header: str | None) -> int | None:
    """``N`` from ``Prefer: ..., wait=N, ...`` (clamped to :data:`MAX_WAIT`); ``None`` when absent or
    malformed (an unknown or broken preference is ignored, as RFC 7240 asks)."""
    if not header:
        return None
    for part in header.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        text = value.strip().strip('"')
        if not text.isdigit():
            return None
        return min(int(text), MAX_WAIT)
    return None


async def wait_for_end(read: Callable[[], JobRecord | None], seconds: int) -> tuple[JobRecord | None, bool]:
    """Poll ``read`` (run in the thread pool) until the job is terminal or ``seconds`` pass; the last
    record read, and whether the job had ended (``None`` when it vanished)."""
    deadline = time.monotonic() + seconds
    while True:
        record = await run_in_threadpool(read)
        if record is None or record.state.terminal:
            return record, record is not None
        left = deadline - time.monotonic()
        if left <= 0:
            return record, False
        await asyncio.sleep(min(POLL_SECONDS, left))
