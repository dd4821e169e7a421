"""The service's tables without a server (SQLite in a temp dir, then a real PostgreSQL): retention
keeps an asset a queued job uses, expired results are removed, and one token bucket is shared by two
services on one database (two replicas) even when they take tokens at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bgservice.api import assets, files
from bgservice.api.auth import folder_id
from bgservice.api.service import Service
from bgservice.api.sweeper import sweep
from bgservice.api.views import job_view
from bgservice.settings import Settings

OWNER = "a" * 64


@pytest.fixture
def service(tmp_path: Path, job_store_url: str) -> Iterator[Service]:
    svc = Service.from_settings(
        Settings(
            data_dir=tmp_path / "data",
            database_url=job_store_url,
            api_keys="k1",
            retention_hours=1,
            rate_limit_per_minute=10,
        )
    )
    yield svc
    svc.close()


def _asset(service: Service, tmp_path: Path) -> assets.AssetRow:
    src = tmp_path / "clip.bin"
    src.write_bytes(b"x" * 100)
    return assets.store_upload(service.writer, service.settings, OWNER, src, 100, "video", "video/mp4")


def test_an_asset_a_queued_job_uses_outlives_its_expiry(service: Service, tmp_path: Path) -> None:
    row = _asset(service, tmp_path)
    stored = files.local_file(service.settings, row.key)
    assert stored is not None and stored.is_file()
    job = service.store.create({"input_url": row.id}, owner=OWNER, request={"videoUrl": row.id})
    assets.record_use(service.writer, row.id, job.id)
    later = datetime.now(UTC) + timedelta(hours=2)
    assert sweep(service, now=later) == (0, 0)  # expired, but the queued job still needs it
    assert assets.get(service.engine, row.id, OWNER) is not None and stored.is_file()
    service.store.cancel(job.id, owner=OWNER)
    assert sweep(service, now=later) == (0, 1)
    assert assets.get(service.engine, row.id, OWNER) is None and not stored.exists()


def test_an_expired_result_is_removed_and_shown_expired(service: Service, tmp_path: Path) -> None:
    job = service.store.create({"input_url": "x"}, owner=OWNER, request={"videoUrl": "https://e.com/a.mp4"})
    claimed = service.store.claim("r1", lease_seconds=30, max_running=10, max_running_per_key=10)
    assert claimed is not None and claimed.id == job.id
    key = files.result_key(folder_id(OWNER), job.id)
    target = Path(files.url_of(service.settings, key))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"mp4")
    done = service.store.complete(job.id, "r1", {"duration_seconds": 2.0})
    view = job_view(service, done, "http://127.0.0.1:1")
    assert view.result_data is not None and view.result_data.url and not view.result_data.expired
    assert view.result_data.usage.billed_seconds == 2.0 and view.result_data.usage.amount_usd == 0.12
    assert sweep(service) == (0, 0)  # not yet
    assert sweep(service, now=datetime.now(UTC) + timedelta(hours=1, minutes=1)) == (1, 0)
    assert not target.exists()
    record = service.store.get(job.id)
    assert record is not None
    gone = job_view(service, record, "http://127.0.0.1:1").result_data
    assert gone is not None and gone.url is None and gone.expired is True
    assert sweep(service, now=datetime.now(UTC) + timedelta(hours=2)) == (0, 0)  # once


def test_one_bucket_for_two_replicas(service: Service) -> None:
    other = Service.from_settings(service.settings)  # a second replica on the same database
    try:
        results: list[bool] = []
        lock = threading.Lock()

        def burst(svc: Service) -> None:
            for _ in range(10):
                ok = svc.limiter.take("key").allowed
                with lock:
                    results.append(ok)

        threads = [threading.Thread(target=burst, args=(s,)) for s in (service, other, service, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 40
        assert 10 <= results.count(True) <= 11  # the quota (+ at most one refilled), not 10 per replica
        bucket = other.limiter.peek("key")
        assert bucket.remaining <= 1
        assert bucket.headers()["RateLimit-Policy"] == '"submit";q=10;w=60'
    finally:
        other.close()
