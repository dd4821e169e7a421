"""bgservice.client.Client against a real ``bgservice serve`` (local Ray, Serve, the runner) over HTTP."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgservice.client import SUBMIT_PATH, Client, Job
from bgservice.errors import (
    IdempotencyKeyMismatch,
    InvalidAsset,
    InvalidBackground,
    JobCancelled,
    JobNotCancellable,
    NotFound,
    Unauthorized,
    UrlNotAllowed,
)
from tests.api_server import wait_for
from tests.client_service import MEDIA_HOST, QUOTA, LiveService
from tests.media_factory import MediaFactory
from tests.outputs import inspect

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOB_SECONDS = 300.0
POOL_MIN, POOL_MAX = 1, 2  # tests/api_server.py's BGSERVICE_POOL_MIN / _MAX


def idle_pool(base: str) -> dict[tuple[str, str], float]:
    """A scrape once the Segmenter pool holds no lease (the job's leases return asynchronously)."""
    busy = ("bgservice_segmenter_pool_busy", "")
    return dict(wait_for(lambda: (m := scrape(base)).get(busy) == 0 and m, 60, "an idle Segmenter pool"))


def grew(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], name: str) -> float:
    return after[(name, "")] - before[(name, "")]


def scrape(base: str) -> dict[tuple[str, str], float]:
    r = httpx.get(f"{base}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("state", ""))] = sample.value
    return out


def test_upload_submit_wait_download(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path
) -> None:
    clip = media_factory.basic()  # 320x240, 2 s, H.264 + AAC
    seen: list[Job] = []
    uploaded: list[tuple[int, int]] = []
    with Client(live_service.base, live_service.key("client")) as c:
        asset = c.upload(clip, progress=lambda done, total: uploaded.append((done, total)))
        assert asset.asset_id.startswith("asset_")
        assert asset.size_bytes == clip.stat().st_size
        assert uploaded[-1] == (clip.stat().st_size, clip.stat().st_size)

        before = scrape(live_service.base)
        accepted = c.submit(asset.asset_id, background="#00FF00", start=0.5, end="00:01.5")
        assert accepted.status == "queued"
        assert accepted.location == f"/v2/jobs/{accepted.id}"
        job = c.wait(accepted.id, progress=seen.append, timeout=JOB_SECONDS)
        assert job.status == "completed"
        assert seen[-1].status == "completed" and all(0.0 <= j.progress <= 1.0 for j in seen)
        assert job.result_data is not None
        assert job.result_data.duration_seconds == pytest.approx(1.0, abs=0.05)
        assert job.result_data.usage.billed_seconds == pytest.approx(1.0)

        after = idle_pool(live_service.base)  # /metrics counts it, from the database ...
        assert after[("bgservice_jobs", "completed")] >= before[("bgservice_jobs", "completed")] + 1
        assert (
            after[("bgservice_billed_seconds_total", "")]
            >= before[("bgservice_billed_seconds_total", "")] + 1.0
        )
        assert after[("bgservice_job_duration_seconds_count", "")] >= 1
        # ... and from the runner: the frames its driver wrote, the pool it runs the shards on
        assert after[("bgservice_runner_up", "")] == 1
        assert POOL_MIN <= after[("bgservice_segmenter_pool_size", "")] <= POOL_MAX

        out = c.download(job, tmp_path / "out.mp4")
        info = inspect(str(out))
        assert (info.width, info.height) == (320, 240)
        assert info.video_duration == pytest.approx(1.0, abs=0.1)
        assert grew(before, after, "bgservice_frames_processed_total") >= info.frames > 0
        assert not (tmp_path / "out.mp4.part").exists()

        page = c.list(limit=5)
        assert accepted.id in [j.id for j in page.jobs]
        assert any(j.id == accepted.id for j in c.iter_jobs(status="completed"))

        with pytest.raises(JobNotCancellable) as not_cancellable:
            c.cancel(accepted.id)
        assert not_cancellable.value.code == "job_not_cancellable"


@pytest.fixture
def media_server(media_factory: MediaFactory) -> Iterator[tuple[str, int]]:
    """The basic clip over plain HTTP on the internal media host the service allows: (URL, its size)."""
    data = media_factory.basic().read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((MEDIA_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{MEDIA_HOST}:{server.server_address[1]}/clip.mp4", len(data)
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_count_the_bytes_a_job_fetched(
    live_service: LiveService, media_server: tuple[str, int]
) -> None:
    """A job whose input comes over http: the runner's /metrics figures count the download (done in the
    decoder's process, reported by the runner's) and the frames."""
    url, size = media_server
    with Client(live_service.base, live_service.key("client")) as c:
        before = scrape(live_service.base)
        job = c.wait(c.submit(url, end=0.4).id, timeout=JOB_SECONDS)
        assert job.status == "completed", job.error
    after = idle_pool(live_service.base)
    assert after[("bgservice_runner_up", "")] == 1
    assert grew(before, after, "bgservice_fetched_bytes_total") >= size
    assert grew(before, after, "bgservice_frames_processed_total") >= 1
    assert POOL_MIN <= after[("bgservice_segmenter_pool_size", "")] <= POOL_MAX


def test_errors_raise_the_projects_classes(live_service: LiveService, media_factory: MediaFactory) -> None:
    with Client(live_service.base, live_service.key("client")) as c:
        with pytest.raises(InvalidBackground) as bad_hex:
            c.submit("asset_doesnotmatter", background="#12345G")
        assert bad_hex.value.field == "back_ground"
        with pytest.raises(InvalidAsset) as bad_asset:
            c.submit("asset_0000000000000000")
        assert bad_asset.value.field == "videoUrl"
        with pytest.raises(UrlNotAllowed) as private:  # the private-address rule holds for callbacks
            c.submit("asset_0000000000000000", callback_url="http://127.0.0.1:9/hook")
        assert private.value.field == "callbackUrl"
        with pytest.raises(NotFound):
            c.get("00000000-0000-4000-8000-000000000000")
    with Client(live_service.base, "not-a-key") as c, pytest.raises(Unauthorized) as unauth:
        c.list()
    assert unauth.value.exit_code == 2


def test_cancel(live_service: LiveService, media_factory: MediaFactory) -> None:
    with Client(live_service.base, live_service.key("client")) as c:
        asset = c.upload(media_factory.basic())
        accepted = c.submit(asset.asset_id)
        cancelled = c.cancel(accepted.id)
        assert cancelled.status in ("queued", "running", "cancelled")
        with pytest.raises(JobCancelled) as err:
            c.wait(accepted.id, timeout=JOB_SECONDS)
        assert err.value.exit_code == 130
        assert c.get(accepted.id).status == "cancelled"
        assert c.cancel(accepted.id).status == "cancelled"  # again: 202, still cancelled


def test_429_is_retried_after_retry_after(live_service: LiveService, media_factory: MediaFactory) -> None:
    """The key's bucket is emptied (every authenticated submit attempt takes a token, refused or not);
    the next submit is answered 429 with Retry-After, and the client waits that long and gets its job."""
    key = live_service.key("burst")
    retries: list[tuple[int, float, str]] = []
    with Client(live_service.base, key, on_retry=lambda n, s, why: retries.append((n, s, why))) as c:
        asset = c.upload(media_factory.basic())  # uploads take no submit token
        with httpx.Client(base_url=live_service.base, headers={"Authorization": f"Bearer {key}"}) as raw:
            for _ in range(QUOTA + 5):
                last = raw.post(SUBMIT_PATH, json={"videoUrl": ""})
                if last.status_code == 429:
                    break
        assert last.status_code == 429, last.text
        retry_after = int(last.headers["Retry-After"])
        assert retry_after >= 1

        accepted = c.submit(asset.asset_id, start=0, end=0.4)
        assert retries and "429" in retries[0][2]
        assert retries[0][1] >= 1.0  # it waited Retry-After (whole seconds), not a short backoff
        c.cancel(accepted.id)
        listed = [j.id for j in c.list(limit=100).jobs]
    assert listed.count(accepted.id) == 1


class DropFirstSubmitAnswer(httpx.HTTPTransport):
    """A fake network fault over the real service: the first submit reaches the server and is acted on,
    then its answer is lost (as when a connection drops mid-response)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == SUBMIT_PATH and not self.dropped:
            response.read()
            response.close()
            self.dropped.append(json.loads(response.content)["job"]["id"])
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return response


def test_a_submit_retried_after_a_dropped_connection_makes_one_job(
    live_service: LiveService, media_factory: MediaFactory
) -> None:
    transport = DropFirstSubmitAnswer()
    retries: list[tuple[int, float, str]] = []
    key = live_service.key("drop")
    with Client(
        live_service.base, key, transport=transport, on_retry=lambda n, s, why: retries.append((n, s, why))
    ) as c:
        asset = c.upload(media_factory.basic())
        accepted = c.submit(asset.asset_id, start=0, end=0.4)
        assert transport.dropped == [accepted.id]  # the retry answered with the job the lost answer made
        assert [why for _, _, why in retries] == ["RemoteProtocolError"]
        jobs = c.list(limit=100).jobs
        assert [j.id for j in jobs] == [accepted.id]
        c.cancel(accepted.id)


def test_idempotency_key_same_request_same_job(
    live_service: LiveService, media_factory: MediaFactory
) -> None:
    key = live_service.key("client")
    with Client(live_service.base, key) as c:
        asset = c.upload(media_factory.basic())
        idem = f"test-{asset.asset_id}"
        with httpx.Client(base_url=live_service.base, headers={"Authorization": f"Bearer {key}"}) as raw:
            body = {"videoUrl": asset.asset_id, "back_ground": "#fff", "end": 0.4}
            first = raw.post(SUBMIT_PATH, json=body, headers={"Idempotency-Key": idem})
            assert first.status_code == 202, first.text
            # the same request, written differently (normalised: #fff is #FFFFFF): the same envelope
            again = raw.post(
                SUBMIT_PATH, json={**body, "back_ground": "#FFFFFF"}, headers={"Idempotency-Key": idem}
            )
            assert again.status_code == 202, again.text
            assert again.json() == first.json()
            assert again.headers["Location"] == first.headers["Location"]
            other = raw.post(
                SUBMIT_PATH, json={**body, "back_ground": "#000"}, headers={"Idempotency-Key": idem}
            )
            assert other.status_code == 422, other.text
            assert other.json()["error"]["code"] == "idempotency_key_mismatch"
        with pytest.raises(IdempotencyKeyMismatch):
            c.submit(asset.asset_id, background="#123", idempotency_key=idem)
        # another API key may use the same Idempotency-Key: scoped per key
        with Client(live_service.base, live_service.key("cli")) as other_key:
            mine = other_key.submit(
                other_key.upload(media_factory.basic()).asset_id, end=0.4, idempotency_key=idem
            )
            assert mine.id != first.json()["job"]["id"]
            other_key.cancel(mine.id)
        c.cancel(first.json()["job"]["id"])


def test_prefer_wait(live_service: LiveService, media_factory: MediaFactory) -> None:
    key = live_service.key("client")
    with Client(live_service.base, key) as c:
        asset = c.upload(media_factory.basic())
    with httpx.Client(
        base_url=live_service.base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as raw:
        r = raw.post(
            SUBMIT_PATH, json={"videoUrl": asset.asset_id, "end": 0.4}, headers={"Prefer": "wait=60"}
        )
        if r.status_code == 200:  # it ended within the 60 s: the job itself
            assert r.headers["Preference-Applied"] == "wait=60"
            assert r.json()["status"] in ("completed", "failed", "cancelled")
            job_id = r.json()["id"]
        else:  # else the usual 202 envelope
            assert r.status_code == 202 and "Preference-Applied" not in r.headers, r.text
            job_id = r.json()["job"]["id"]
        assert r.headers["Location"] == f"/v2/jobs/{job_id}"

        def ended_with_preference() -> dict[str, object] | None:
            g = raw.get(f"/v2/jobs/{job_id}", headers={"Prefer": "wait=20"})
            assert g.status_code == 200, g.text
            job = g.json()
            if job["status"] not in ("completed", "failed", "cancelled"):
                assert "Preference-Applied" not in g.headers
                return None
            assert g.headers["Preference-Applied"] == "wait=20"
            return dict(job)

        job = wait_for(ended_with_preference, JOB_SECONDS, f"job {job_id} to end", 0.0)
        assert job["status"] == "completed"
        # an ended job answers at once, with the preference applied; without the header, as always
        again = raw.get(f"/v2/jobs/{job_id}", headers={"Prefer": "respond-async, wait=5"})
        assert again.headers["Preference-Applied"] == "wait=5"
        assert "Preference-Applied" not in raw.get(f"/v2/jobs/{job_id}").headers
