"""One ``bgservice serve`` (a real local Ray, Serve, the runner) for the client, CLI and web-page tests.

Session-scoped, so the three modules (tests/test_client.py, test_submit_cli.py, test_web.py,
test_api_outputs.py) start Ray
once. Each test module uses its own configured key, so listings and rate-limit buckets do not mix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.api_server import ServeProcess

KEYS = {
    "client": "kc-client-0001",
    "burst": "kc-burst-0002",  # its bucket is emptied on purpose (the 429 test)
    "cli": "kc-cli-0003",
    "web": "kc-web-0004",
    "drop": "kc-drop-0005",
    "outputs": "kc-outputs-0006",  # tests/test_api_outputs.py: the jobs that run
    "refused": "kc-refused-0007",  # tests/test_api_outputs.py: the refused submits (their own bucket)
}
MEDIA_HOST = "127.0.0.2"
QUOTA = 30  # per key and minute: a token every 2 s, so an emptied bucket says Retry-After: 2


@dataclass(frozen=True)
class LiveService:
    proc: ServeProcess

    @property
    def base(self) -> str:
        return self.proc.base

    def key(self, name: str) -> str:
        return KEYS[name]


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    proc = ServeProcess(
        tmp_path_factory.mktemp("client-service"),
        env={
            "BGSERVICE_API_KEYS": ",".join(f"{n}:{k}" for n, k in KEYS.items()),
            "BGSERVICE_RATE_LIMIT_PER_MINUTE": str(QUOTA),
            "BGSERVICE_MAX_RUNNING_JOBS": "2",
            # an operator's internal media server (tests/test_client.py serves an input there); the
            # private-address rule still holds for 127.0.0.1, which the refusal tests use
            "BGSERVICE_ALLOWED_PRIVATE_NETS": f"{MEDIA_HOST}/32",
        },
    )
    try:
        yield LiveService(proc.start())
    finally:
        proc.stop()
