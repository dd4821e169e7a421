"""Storage over real HTTP: S3 through s3fs against a moto server on 127.0.0.1 (presigned result URLs),
and a local store with a short retention and URL lifetime (expired URLs 403, results and assets swept)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.api_server import ServeProcess, wait_for
from tests.media_factory import MediaFactory
from tests.outputs import inspect
from tests.s3 import BUCKET
from tests.test_api import error_of, submit, upload, wait_status

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEY = "storage-key-1"


def test_s3_storage_presigned_download(
    s3: str, s3_server: str, media_factory: MediaFactory, tmp_path: Path
) -> None:
    import s3fs

    proc = ServeProcess(
        tmp_path / "data",
        env={
            "BGSERVICE_API_KEYS": f"s3user:{KEY}",
            "BGSERVICE_STORAGE_URL": f"{s3}/service",
            "BGSERVICE_S3_ENDPOINT_URL": s3_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    try:
        proc.start()
        with proc.client(KEY) as c:
            asset = upload(c, media_factory.basic())
            r = submit(c, {"videoUrl": asset["asset_id"], "back_ground": "#0f0", "end": 1.2})
            assert r.status_code == 202, r.text
            job = wait_status(c, r.json()["job"]["id"], {"completed", "failed"})
        assert job["status"] == "completed", job
        result = job["result_data"]
        url = result["url"]
        assert url.startswith(s3_server) and "Signature" in url  # an S3 presigned URL, not the service's
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
        assert fs.exists(f"{BUCKET}/service/{result['key']}")
        assert fs.exists(f"{BUCKET}/service/assets/{asset['asset_id']}")
        got = httpx.get(url, timeout=60)
        assert got.status_code == 200
        out = tmp_path / "s3.mp4"
        out.write_bytes(got.content)
        facts = inspect(str(out))
        assert (facts.width, facts.height) == (320, 240)
        assert facts.frames == 30 and facts.audio_codec == "aac"
        part = httpx.get(url, headers={"Range": "bytes=0-99"}, timeout=60)
        assert part.status_code == 206 and part.content == got.content[:100]
        with proc.client(KEY) as c:
            assert c.delete(f"/v2/jobs/{job['id']}/result").status_code == 204
            assert c.get(f"/v2/jobs/{job['id']}").json()["result_data"]["url"] is None
        assert not fs.exists(f"{BUCKET}/service/{result['key']}")
    finally:
        proc.stop()


def test_url_expiry_and_retention(media_factory: MediaFactory, tmp_path: Path) -> None:
    retention_hours = 0.006  # 21.6 s; the sweeper then runs every ~2 s
    proc = ServeProcess(
        tmp_path / "data",
        env={
            "BGSERVICE_API_KEYS": f"ret:{KEY}",
            "BGSERVICE_RETENTION_HOURS": str(retention_hours),
            "BGSERVICE_URL_TTL_SECONDS": "2",
        },
    )
    try:
        proc.start()
        with proc.client(KEY) as c:
            asset = upload(c, media_factory.basic())
            r = submit(c, {"videoUrl": asset["asset_id"], "end": 0.4})
            job = wait_status(c, r.json()["job"]["id"], {"completed", "failed"})
            assert job["status"] == "completed", job
            result = job["result_data"]
            expires = datetime.fromisoformat(result["expires_at"])
            assert (expires - datetime.now(UTC)).total_seconds() <= 2.5
            assert httpx.get(result["url"], timeout=30).status_code == 200
            wait_for(lambda: time.time() > expires.timestamp() + 1, 10, "the URL's end")
            r = httpx.get(result["url"], timeout=30)
            assert r.status_code == 403 and error_of(r)["code"] == "forbidden"

            stored = proc.data_dir / "storage" / result["key"]
            assert stored.is_file()

            def swept() -> bool:
                data = c.get(f"/v2/jobs/{job['id']}").json()["result_data"]
                return bool(data["expired"]) and data["url"] is None

            wait_for(swept, 120, "the result to expire")
            wait_for(lambda: not stored.exists(), 30, "the result file to be removed")
            wait_for(
                lambda: not (proc.data_dir / "storage" / "assets" / asset["asset_id"]).exists(),
                60,
                "the asset to be removed",
            )
            r = submit(c, {"videoUrl": asset["asset_id"]})
            assert r.status_code == 422 and error_of(r)["code"] == "invalid_asset"
    finally:
        proc.stop()
