"""``bgservice serve`` as a real subprocess on 127.0.0.1 for the API tests.

The helper itself lives in :mod:`benchmarks.serve_process` (the service benchmarks start the service the
same way); the tests' :class:`ServeProcess` runs a smaller Segmenter pool (1..2 actors), which is enough
for the tests' short jobs and leaves the shared machine's cores to the rest of the run.
"""

from __future__ import annotations

from typing import ClassVar

from benchmarks.serve_process import REPO, START_SECONDS, free_port, wait_for
from benchmarks.serve_process import ServeProcess as _ServeProcess


class ServeProcess(_ServeProcess):
    BASE_ENV: ClassVar[dict[str, str]] = {
        "BGSERVICE_POOL_MIN": "1",
        "BGSERVICE_POOL_MAX": "2",
        # one console line per request and replica: tests read which replica answered
        "RAY_DEDUP_LOGS": "0",
    }


__all__ = ["REPO", "START_SECONDS", "ServeProcess", "free_port", "wait_for"]
