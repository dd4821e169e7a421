"""Nothing lost: ``kill -9`` of ``bgservice serve`` while a job runs -> start again -> the job completes
(attempts 2); SIGTERM -> the unfinished job is left queued and the next start runs it (attempts 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgservice.jobs.record import JobState
from bgservice.jobs.store import JobStore
from bgservice.media.ffmpeg import ClipSpec
from bgservice.settings import Settings
from tests.api_server import ServeProcess
from tests.media_factory import MediaFactory
from tests.test_api import submit, upload, wait_status

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEY = "restart-key-1"


def _running_with_progress(c: object, job_id: str) -> dict[str, object]:
    from tests.api_server import wait_for

    def check() -> dict[str, object] | None:
        job = c.get(f"/v2/jobs/{job_id}").json()  # type: ignore[attr-defined]
        if job["status"] not in ("queued", "running"):
            raise AssertionError(f"the job ended before the restart: {job}")
        return dict(job) if job["status"] == "running" and job["progress"] > 0 else None

    return dict(wait_for(check, 240, f"job {job_id} running with progress", 0.3))


def test_kill_9_then_restart_completes_and_sigterm_leaves_queued(
    media_factory: MediaFactory, tmp_path: Path
) -> None:
    clip = media_factory.clip("long_audio_30.mp4", ClipSpec(duration=30.0))
    data = tmp_path / "data"
    env = {"BGSERVICE_API_KEYS": f"r:{KEY}", "BGSERVICE_JOB_LEASE_SECONDS": "10"}
    first = ServeProcess(data, env=env)
    try:
        first.start()
        with first.client(KEY) as c:
            asset = upload(c, clip)["asset_id"]
            job_id = submit(c, {"videoUrl": asset, "back_ground": "#00f"}).json()["job"]["id"]
            _running_with_progress(c, job_id)
        first.kill()  # SIGKILL: no cleanup, the runner's lease lapses
    finally:
        first.stop()

    second = ServeProcess(data, env=env)
    try:
        second.start()
        with second.client(KEY) as c:
            done = wait_status(c, job_id, {"completed", "failed", "cancelled"}, 600)
            assert done["status"] == "completed", done
            assert done["attempts"] == 2
            # a second job, then a graceful stop while it runs
            job2 = submit(c, {"videoUrl": asset, "end": 20}).json()["job"]["id"]
            _running_with_progress(c, job2)
        assert second.stop() == 0
        assert "unfinished jobs stay queued" in second.output()
    finally:
        second.stop()
    with JobStore.from_settings(Settings(data_dir=data)) as store:
        left = store.get(job2)
        assert left is not None and left.state == JobState.QUEUED and left.attempts == 0

    third = ServeProcess(data, env=env)
    try:
        third.start()
        with third.client(KEY) as c:
            done = wait_status(c, job2, {"completed", "failed", "cancelled"}, 600)
            assert done["status"] == "completed", done
            assert done["attempts"] == 1
    finally:
        third.stop()
