"""The HTTP API over real HTTP: ``bgservice serve`` (a real local Ray, Serve with two replicas, the
runner) on 127.0.0.1, one server for the module. Local storage, SQLite, six configured keys."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgservice.media.ffmpeg import ClipSpec
from tests.api_server import ServeProcess, wait_for
from tests.media_factory import MediaFactory
from tests.outputs import inspect

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEYS = {"alice": "ka-0001", "bob": "kb-0002", "carol": "kc-0003", "dave": "kd-0004", "erin": "ke-0005"}
BURST_KEY = "kburst-0006"
QUOTA = 20
MAX_BYTES = 8 * 1024 * 1024
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
JOB_SECONDS = 300.0
CORS_ORIGIN = "http://studio.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    keys = ",".join(f"{n}:{k}" for n, k in KEYS.items()) + f",burst:{BURST_KEY}"
    proc = ServeProcess(
        tmp_path_factory.mktemp("api"),
        env={
            "BGSERVICE_API_KEYS": keys,
            "BGSERVICE_RATE_LIMIT_PER_MINUTE": str(QUOTA),
            "BGSERVICE_MAX_INPUT_BYTES": str(MAX_BYTES),
            "BGSERVICE_CORS_ORIGINS": CORS_ORIGIN,
        },
        args=("--replicas", "2"),
    )
    try:
        yield proc.start()
    finally:
        proc.stop()


def upload(c: httpx.Client, path: Path, name: str = "clip.mp4") -> dict[str, Any]:
    with open(path, "rb") as fh:
        r = c.post("/v1/assets", files={"file": (name, fh, "application/octet-stream")})
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(c: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return c.post("/v1/proxy/studio-background", json=body)


def wait_status(
    c: httpx.Client, job_id: str, states: set[str], timeout: float = JOB_SECONDS
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = c.get(f"/v2/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = dict(r.json())
        return job if job["status"] in states else None

    return dict(wait_for(check, timeout, f"job {job_id} to reach {states}", 0.3))


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


# --- the main flow ----------------------------------------------------------------------------------------
def test_upload_submit_poll_download(
    server: ServeProcess, media_factory: MediaFactory, tmp_path: Path
) -> None:
    clip = media_factory.basic()  # 320x240, 2 s, AAC
    with server.client(KEYS["alice"]) as c:
        asset = upload(c, clip)
        assert asset["asset_id"].startswith("asset_")
        assert asset["content_type"] == "video/mp4"
        assert asset["size_bytes"] == clip.stat().st_size

        r = submit(
            c, {"videoUrl": asset["asset_id"], "back_ground": "#1e90ff", "start": 0.5, "end": "00:00:01.5"}
        )
        assert r.status_code == 202, r.text
        body = r.json()
        job_id = body["job"]["id"]
        assert UUID4.match(job_id)
        assert body == {
            "status": "accepted",
            "message": "Job queued for processing",
            "job": {"id": job_id, "status": "queued", "service": "studio-background"},
        }
        assert r.headers["Location"] == f"/v2/jobs/{job_id}"
        assert r.headers["RateLimit-Policy"] == f'"submit";q={QUOTA};w=60'
        assert re.match(r'^"submit";r=\d+;t=\d+$', r.headers["RateLimit"])
        assert "Deprecation" not in r.headers

        job = wait_status(c, job_id, {"completed", "failed"})
        assert job["status"] == "completed", job
        assert job["service"] == "studio-background"
        assert job["progress"] == 1.0
        assert job["attempts"] == 1
        assert job["error"] is None
        assert job["request"] == {
            "videoUrl": asset["asset_id"],
            "back_ground": "#1E90FF",
            "imageUrl": None,
            "start": 0.5,
            "end": 1.5,
        }
        for stamp in (job["created_at"], job["updated_at"]):
            assert stamp.endswith("Z") and datetime.fromisoformat(stamp).tzinfo is not None
        result = job["result_data"]
        assert result["key"] == f"{result['folder_id']}/{job_id}.mp4"
        assert result["content_type"] == "video/mp4"
        assert result["expired"] is False
        assert result["duration_seconds"] == pytest.approx(1.0, abs=0.001)
        assert result["usage"] == {
            "unit": "second",
            "billed_seconds": 1.0,
            "unit_price_usd": 0.06,
            "amount_usd": 0.06,
        }
        expires = datetime.fromisoformat(result["expires_at"])
        assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 3600 + 5

        # download through the returned URL (no API key needed: the URL is the credential)
        url = result["url"]
        assert url.startswith(server.base + "/v2/files/")
        got = httpx.get(url, timeout=60)
        assert got.status_code == 200
        assert got.headers["content-type"] == "video/mp4"
        out = tmp_path / "result.mp4"
        out.write_bytes(got.content)
        facts = inspect(str(out))
        assert (facts.width, facts.height) == (320, 240)
        assert facts.frames == 25  # 1.0 s at 25 fps: [0.5, 1.5)
        assert facts.video_duration == pytest.approx(1.0, abs=0.05)
        assert facts.audio_codec == "aac"
        assert facts.audio_duration == pytest.approx(1.0, abs=0.05)

        # a Range request -> 206 with exactly those bytes
        part = httpx.get(url, headers={"Range": "bytes=100-1099"}, timeout=60)
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-1099/{len(got.content)}"
        assert part.content == got.content[100:1100]

        # tampered -> 403 forbidden
        bad = re.sub(
            r"signature=([0-9a-f])", lambda m: "signature=" + ("0" if m.group(1) != "0" else "1"), url
        )
        r = httpx.get(bad, timeout=30)
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
        longer = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 1000}", url)
        r = httpx.get(longer, timeout=30)
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"

        # every GET signs afresh; the other key sees nothing of it
        with server.client(KEYS["bob"]) as other:
            r = other.get(f"/v2/jobs/{job_id}")
            assert r.status_code == 404 and error_of(r)["code"] == "not_found"
            r = submit(other, {"videoUrl": asset["asset_id"]})
            assert r.status_code == 422
            assert error_of(r) == {
                "code": "invalid_asset",
                "message": error_of(r)["message"],
                "field": "videoUrl",
            }
            assert other.delete(f"/v2/jobs/{job_id}").status_code == 404
            assert other.delete(f"/v1/assets/{asset['asset_id']}").status_code == 404

        # completed -> not cancellable; the result deleted now -> url null, expired, file gone
        r = c.delete(f"/v2/jobs/{job_id}")
        assert r.status_code == 409 and error_of(r)["code"] == "job_not_cancellable"
        assert c.delete(f"/v2/jobs/{job_id}/result").status_code == 204
        assert c.delete(f"/v2/jobs/{job_id}/result").status_code == 204
        gone = c.get(f"/v2/jobs/{job_id}").json()["result_data"]
        assert gone["url"] is None and gone["expired"] is True
        assert httpx.get(url, timeout=30).status_code == 404

        assert c.delete(f"/v1/assets/{asset['asset_id']}").status_code == 204
        r = c.delete(f"/v1/assets/{asset['asset_id']}")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
        r = submit(c, {"videoUrl": asset["asset_id"]})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_asset"


def test_deprecated_aliases(server: ServeProcess, media_factory: MediaFactory) -> None:
    with server.client(KEYS["dave"]) as c:
        asset = upload(c, media_factory.basic())
        r = submit(c, {"input_url": asset["asset_id"], "background": "#000", "end": 0.2})
        assert r.status_code == 202, r.text
        assert r.headers["Deprecation"] == "@1777420800"
        job = c.get(f"/v2/jobs/{r.json()['job']['id']}").json()
        assert job["request"]["videoUrl"] == asset["asset_id"]
        assert job["request"]["back_ground"] == "#000000"
        r = submit(c, {"input_url": asset["asset_id"], "videoUrl": asset["asset_id"]})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
        assert error_of(r)["field"] == "input_url"
        assert r.headers["Deprecation"] == "@1777420800"
        wait_status(c, job["id"], {"completed", "failed"})

        # a start at or past the video's end is known only after the download: the job fails, bills 0
        r = submit(c, {"videoUrl": asset["asset_id"], "start": 10})
        assert r.status_code == 202
        failed = wait_status(c, r.json()["job"]["id"], {"completed", "failed"})
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "invalid_trim" and failed["error"]["message"]
        assert failed["result_data"] is None


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"videoUrl": "https://example.com/a.mp4", "colour": "#fff"}, "invalid_request", "colour"),
        ({"back_ground": "#fff"}, "invalid_request", "videoUrl"),
        ({"videoUrl": 12}, "invalid_request", "videoUrl"),
        (
            {"videoUrl": "https://example.com/a.mp4", "back_ground": "#12345"},
            "invalid_background",
            "back_ground",
        ),
        (
            {
                "videoUrl": "https://example.com/a.mp4",
                "back_ground": "#123",
                "imageUrl": "https://example.com/b.png",
            },
            "invalid_background",
            "back_ground",
        ),
        ({"videoUrl": "https://example.com/a.mp4", "start": "1:75"}, "invalid_trim", "start"),
        ({"videoUrl": "https://example.com/a.mp4", "start": -1}, "invalid_trim", "start"),
        ({"videoUrl": "https://example.com/a.mp4", "start": 3, "end": 2}, "invalid_trim", "end"),
        ({"videoUrl": "file:///etc/passwd"}, "url_not_allowed", "videoUrl"),
        ({"videoUrl": "http://127.0.0.1:1/a.mp4"}, "url_not_allowed", "videoUrl"),
        ({"videoUrl": "https://example.com/a.mp4", "imageUrl": "/etc/passwd"}, "url_not_allowed", "imageUrl"),
        ({"videoUrl": "asset_000000000000000000000000"}, "invalid_asset", "videoUrl"),
    ],
)
def test_submit_refused(server: ServeProcess, body: dict[str, Any], code: str, field: str) -> None:
    with server.client(KEYS["erin"]) as c:
        r = submit(c, body)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert (err["code"], err.get("field")) == (code, field), err
    assert err["message"]


def test_auth_and_edges(server: ServeProcess, media_factory: MediaFactory, tmp_path: Path) -> None:
    with server.client() as anon:
        r = anon.get("/v2/jobs")
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
        assert "RateLimit" not in r.headers
        r = anon.get("/v2/jobs", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
        r = anon.get("/v2/jobs", headers={"X-API-Key": KEYS["carol"]})
        assert r.status_code == 200 and "RateLimit" in r.headers
        r = anon.get("/nowhere")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
        assert anon.get("/healthz").json() == {"status": "ok"}
        ready = anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["runner"] is True
        docs = anon.get("/docs")
        assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()
        assert anon.get("/docs/static/swagger-ui-bundle.js").status_code == 200
        spec = anon.get("/openapi.json").json()
        assert "/v1/proxy/studio-background" in spec["paths"]
        preflight = anon.options(
            "/v2/jobs",
            headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
        other = anon.options(
            "/v2/jobs",
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers

    with server.client(KEYS["carol"]) as c:
        r = c.get(f"/v2/jobs/{uuid.uuid4()}")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
        big = {"videoUrl": "https://example.com/a.mp4", "pad": "x" * (65 * 1024)}
        r = submit(c, big)
        assert r.status_code == 413 and error_of(r)["code"] == "input_too_large"
        r = c.get("/v2/jobs", params={"limit": 101})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
        r = c.get("/v2/jobs", params={"cursor": "not-a-cursor"})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
        r = c.get("/v2/jobs", params={"status": "sleeping"})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"

        text = tmp_path / "notes.mp4"
        text.write_text("not a video at all\n" * 100)
        with open(text, "rb") as fh:
            r = c.post("/v1/assets", files={"file": ("notes.mp4", fh)})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_input"
        large = tmp_path / "large.bin"
        large.write_bytes(b"\0" * (MAX_BYTES + 1024))
        with open(large, "rb") as fh:
            r = c.post("/v1/assets", files={"file": ("large.mp4", fh)})
        assert r.status_code == 413 and error_of(r)["code"] == "input_too_large"
        image = media_factory.root / "plate.png"
        if not image.exists():
            from PIL import Image

            Image.new("RGB", (64, 48), (10, 200, 30)).save(image)
        with open(image, "rb") as fh:
            r = c.post("/v1/assets", files={"file": ("plate.png", fh)})
        assert r.status_code == 201 and r.json()["content_type"] == "image/png"
        image_asset = r.json()["asset_id"]
        r = submit(c, {"videoUrl": image_asset})  # an image is no video
        assert r.status_code == 422 and error_of(r) | {"message": ""} == {
            "code": "invalid_asset",
            "message": "",
            "field": "videoUrl",
        }


def test_cancel_queued_and_running(server: ServeProcess, media_factory: MediaFactory) -> None:
    long = media_factory.clip("long_audio_60.mp4", ClipSpec(duration=60.0))
    with server.client(KEYS["carol"]) as c:
        asset = upload(c, long)["asset_id"]
        ids = [submit(c, {"videoUrl": asset}).json()["job"]["id"] for _ in range(3)]
        # two run at once per key: the third waits in the queue
        running = wait_status(c, ids[0], {"running"}, 120)
        queued = c.get(f"/v2/jobs/{ids[2]}").json()
        assert queued["status"] == "queued"
        r = c.delete(f"/v2/jobs/{ids[2]}")
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        again = c.delete(f"/v2/jobs/{ids[2]}")
        assert again.status_code == 202 and again.json()["status"] == "cancelled"

        r = c.delete(f"/v2/jobs/{running['id']}")
        assert r.status_code == 202 and r.json()["id"] == running["id"]
        c.delete(f"/v2/jobs/{ids[1]}")
        done = wait_status(c, running["id"], {"cancelled", "completed", "failed"}, 120)
        assert done["status"] == "cancelled", done
        assert done["result_data"] is None
        wait_status(c, ids[1], {"cancelled", "completed", "failed"}, 120)


def test_listing_with_cursor(server: ServeProcess, media_factory: MediaFactory) -> None:
    with server.client(KEYS["dave"]) as c:
        asset = upload(c, media_factory.basic())["asset_id"]
        before = {j["id"] for j in c.get("/v2/jobs", params={"limit": 100}).json()["jobs"]}
        made = [submit(c, {"videoUrl": asset, "end": 0.2}).json()["job"]["id"] for _ in range(3)]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v2/jobs", params=params).json()
            assert len(page["jobs"]) <= 2
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(before) + 3
        assert seen[:3] == made[::-1]  # newest first
        for job_id in made:
            wait_status(c, job_id, {"completed"}, JOB_SECONDS)
        done = c.get("/v2/jobs", params={"status": "completed", "limit": 100}).json()["jobs"]
        assert set(made) <= {j["id"] for j in done}
        assert all(j["status"] == "completed" for j in done)
        with server.client(KEYS["erin"]) as other:
            theirs = {j["id"] for j in other.get("/v2/jobs", params={"limit": 100}).json()["jobs"]}
        assert not theirs & set(made)


def _burst_pids(server: ServeProcess) -> set[str]:
    """Pids of the replicas that answered a submit with 422 or 429 (each logs its pid with the line)."""
    return set(
        re.findall(
            r"\(ServeReplica:\S+ pid=(\d+)[^)]*\).*POST /v1/proxy/studio-background 42[29]", server.output()
        )
    )


def test_rate_limit_burst_shared_by_two_replicas(server: ServeProcess) -> None:
    answers: list[httpx.Response] = []
    started = time.monotonic()
    with server.client(BURST_KEY) as c, ThreadPoolExecutor(8) as pool:

        def burst(n: int) -> None:
            # refused (a URL that is not allowed), but each takes a token. Sent 8 at a time: Serve routes
            # a request to the replica with fewer requests in flight, so concurrent ones reach both.
            answers.extend(pool.map(lambda _: submit(c, {"videoUrl": "file:///not/allowed"}), range(n)))

        burst(2 * QUOTA)
        # On a busy machine one replica can still answer a whole burst. Go on (bounded) until both have
        # answered this key: after the bucket is empty, a replica with a bucket of its own would let
        # requests through again. The replicas' log lines reach the server's console a few seconds
        # late, so each round waits for them before sending more.
        for _ in range(4):
            deadline = time.monotonic() + 10
            while len(_burst_pids(server)) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            if len(_burst_pids(server)) >= 2:
                break
            burst(QUOTA)
    elapsed = time.monotonic() - started
    codes = [r.status_code for r in answers]
    assert set(codes) <= {422, 429}
    taken = codes.count(422)
    # one bucket for both replicas: the quota plus what refilled meanwhile, never a bucket per replica
    assert QUOTA <= taken <= QUOTA + int(elapsed * QUOTA / 60) + 1
    limited = [r for r in answers if r.status_code == 429]
    assert limited
    for r in limited:
        assert error_of(r)["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["RateLimit"].startswith('"submit";r=0;')
    wait_for(lambda: len(_burst_pids(server)) == 2, 30, "both replicas' lines for the burst")


def test_fifty_jobs_from_five_keys(server: ServeProcess, media_factory: MediaFactory) -> None:
    clip = media_factory.basic()
    jobs: list[tuple[str, str]] = []
    for key in KEYS.values():
        with server.client(key) as c:
            asset = upload(c, clip)["asset_id"]
            for i in range(10):
                r = submit(c, {"videoUrl": asset, "start": 0.04 * i, "end": 0.04 * i + 0.2})
                assert r.status_code == 202, r.text
                jobs.append((key, r.json()["job"]["id"]))
    for key, job_id in jobs:
        with server.client(key) as c:
            job = wait_status(c, job_id, {"completed", "failed", "cancelled"}, 600)
            assert job["status"] == "completed", job
            assert job["result_data"]["usage"]["billed_seconds"] == 0.2
