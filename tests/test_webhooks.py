"""Signed webhooks against a real ``bgservice serve``: a receiver on 127.0.0.1 (the private-address rule
lifted with ``BGSERVICE_ALLOW_PRIVATE_URLS=true`` for the test, a 1 s retry schedule) checks every event
with the ``standardwebhooks`` library and by a hand-computed HMAC; a flaky receiver gets one event three
times with one ``webhook-id`` across a restart of the service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from standardwebhooks import Webhook

from bgservice.client import Client
from bgservice.errors import UrlNotAllowed
from tests.api_server import ServeProcess, wait_for
from tests.media_factory import MediaFactory

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEY = "kw-hooks-0001"
JOB_SECONDS = 300.0


@dataclass
class Receiver:
    """Answers each path from a script of statuses (the last repeats) and keeps what it got."""

    script: dict[str, list[int]]
    got: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def events(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.got.get(path, []))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver(script={"/ok": [200], "/gone": [410], "/flaky": [500, 500, 200]})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with rec.lock:
                seen = rec.got.setdefault(self.path, [])
                seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                script = rec.script.get(self.path, [404])
                status = script[min(len(seen) - 1, len(script) - 1)]
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def hooks_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        tmp_path_factory.mktemp("hooks-service"),
        env={
            "BGSERVICE_API_KEYS": f"hooks:{KEY}",
            "BGSERVICE_ALLOW_PRIVATE_URLS": "true",
            "BGSERVICE_WEBHOOK_RETRY_SCHEDULE": "1",
        },
    )
    try:
        yield proc.start()
    finally:
        proc.stop()


def by_hand(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        part.startswith("v1,") and hmac.compare_digest(part[3:], expected)
        for part in headers["webhook-signature"].split()
    )


def test_signed_events_410_and_retries_across_a_restart(
    hooks_service: ServeProcess, receiver: Receiver, media_factory: MediaFactory
) -> None:
    with Client(hooks_service.base, KEY) as c:
        secret = httpx.get(
            f"{hooks_service.base}/v1/webhooks/secret", headers={"Authorization": f"Bearer {KEY}"}
        ).json()["secret"]
        assert secret.startswith("whsec_")
        asset = c.upload(media_factory.basic()).asset_id
        ok = c.submit(asset, end=0.4, callback_url=f"{receiver.base}/ok").id
        gone = c.submit(asset, end=0.4, callback_url=f"{receiver.base}/gone").id
        flaky = c.submit(asset, end=0.4, callback_url=f"{receiver.base}/flaky").id
        assert c.get(ok).webhook is not None and c.get(ok).webhook.state == "pending"  # type: ignore[union-attr]

        # delivered: verified by the library and by hand; the data is the job, its URL valid
        wait_for(lambda: receiver.events("/ok"), JOB_SECONDS, "the /ok event")
        headers, body = receiver.events("/ok")[0]
        Webhook(secret).verify(body, headers)
        assert by_hand(secret, headers, body)
        event = json.loads(body)
        assert event["type"] == "job.completed" and event["data"]["id"] == ok
        assert event["data"]["status"] == "completed"
        assert httpx.get(event["data"]["result_data"]["url"]).status_code == 200
        hook = wait_for(lambda: (w := c.get(ok).webhook) and w.state == "delivered" and w, 30, "delivered")
        assert (hook.attempts, hook.last_status, hook.url) == (1, 200, f"{receiver.base}/ok")

        # 410: one attempt, then disabled
        wait_for(lambda: receiver.events("/gone"), JOB_SECONDS, "the /gone event")
        hook = wait_for(lambda: (w := c.get(gone).webhook) and w.state == "disabled" and w, 30, "disabled")
        assert (hook.attempts, hook.last_status) == (1, 410)

        # 500 once, then the service restarts, then 500 and 200: three attempts, one webhook-id
        wait_for(lambda: (w := c.get(flaky).webhook) and w.attempts >= 1, JOB_SECONDS, "a first attempt")
    hooks_service.stop()
    hooks_service.start()
    with Client(hooks_service.base, KEY) as c:
        hook = wait_for(lambda: (w := c.get(flaky).webhook) and w.state != "pending" and w, 120, "the end")
        assert (hook.state, hook.attempts, hook.last_status) == ("delivered", 3, 200)
    events = receiver.events("/flaky")
    assert len(events) == 3
    assert len({h["webhook-id"] for h, _ in events}) == 1
    for h, b in events:
        Webhook(secret).verify(b, h)
        assert json.loads(b)["data"]["id"] == flaky


def test_callback_url_follows_the_fetch_rules(
    hooks_service: ServeProcess, media_factory: MediaFactory
) -> None:
    with Client(hooks_service.base, KEY) as c:
        asset = c.upload(media_factory.basic()).asset_id
        for bad in ("file:///etc/passwd", "http://user:pw@example.com/hook", "ftp://example.com/x"):
            with pytest.raises(UrlNotAllowed) as err:
                c.submit(asset, callback_url=bad)
            assert err.value.field == "callbackUrl"
        assert c.list(limit=100).jobs == [] or all(j.request.get("callbackUrl") != bad for j in c.list().jobs)
