"""``bgservice submit`` and ``bgservice jobs`` as a user runs them: subprocesses against a real
``bgservice serve`` (local Ray, Serve, the runner), with their exit codes and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bgservice.client import Client
from bgservice.errors import TABLE
from tests.api_server import REPO, wait_for
from tests.client_service import LiveService
from tests.media_factory import MediaFactory
from tests.outputs import inspect

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOB_SECONDS = 300.0


def env_for(live: LiveService, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGSERVICE_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    env["BGSERVICE_URL"] = live.base
    if key is not None:
        env["BGSERVICE_API_KEY"] = key
    return env


def bgservice(
    live: LiveService, *args: str, key: str | None, cwd: Path, timeout: float = JOB_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgservice", *args],
        env=env_for(live, key),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_submit_end_to_end(live_service: LiveService, media_factory: MediaFactory, tmp_path: Path) -> None:
    clip = media_factory.basic()
    key = live_service.key("cli")
    done = bgservice(
        live_service,
        "submit", str(clip), "-o", str(tmp_path / "out.mp4"),
        "--background", "#FF00FF", "--start", "0.5", "--end", "1.5",
        key=key, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = inspect(str(tmp_path / "out.mp4"))
    assert (info.width, info.height) == (320, 240)
    assert info.video_duration == pytest.approx(1.0, abs=0.1)
    assert "out.mp4" in done.stdout and "billed 1.0s" in done.stdout

    # jobs list / get show it; the job's request is the normalised one the CLI built
    listed = bgservice(live_service, "jobs", "list", "--json", key=key, cwd=tmp_path, timeout=60)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    job = page["jobs"][0]
    assert job["status"] == "completed"
    assert job["request"]["back_ground"].upper() == "#FF00FF"
    got = bgservice(live_service, "jobs", "get", job["id"], key=key, cwd=tmp_path, timeout=60)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == job["id"]
    # cancelling a completed job: job_not_cancellable, exit from the table
    cancel = bgservice(live_service, "jobs", "cancel", job["id"], key=key, cwd=tmp_path, timeout=60)
    assert cancel.returncode == TABLE["job_not_cancellable"].exit_code == 2
    assert "error: job_not_cancellable:" in cancel.stderr


@pytest.mark.parametrize(
    ("args", "key", "code"),
    [
        (("--background", "#12345G"), "cli", "invalid_background"),
        (("--background", "#FFFFFF", "--background-image", "bg.png"), "cli", "invalid_background"),
        (("--start", "banana"), "cli", "invalid_trim"),
        ((), "wrong-key", "unauthorized"),
        ((), None, "unauthorized"),
    ],
    ids=["bad-hex", "colour-and-image", "bad-trim", "wrong-key", "no-key"],
)
def test_submit_errors_exit_as_the_table_says(
    live_service: LiveService,
    media_factory: MediaFactory,
    tmp_path: Path,
    args: tuple[str, ...],
    key: str | None,
    code: str,
) -> None:
    real_key = live_service.key(key) if key == "cli" else key
    done = bgservice(
        live_service, "submit", str(media_factory.basic()), *args, key=real_key, cwd=tmp_path, timeout=120
    )
    assert done.returncode == TABLE[code].exit_code, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {code}: "), done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("*.mp4"))


def test_no_wait_prints_the_job_id(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path
) -> None:
    key = live_service.key("cli")
    done = bgservice(
        live_service, "submit", str(media_factory.basic()), "--no-wait", "--end", "0.4",
        key=key, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    with Client(live_service.base, key) as c:
        assert c.get(job_id).status in ("queued", "running", "completed")
        if not c.get(job_id).done:
            c.cancel(job_id)


def test_ctrl_c_leaves_the_job_running(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path
) -> None:
    key = live_service.key("cli")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bgservice",
            "submit",
            str(media_factory.basic()),
            "-o",
            str(tmp_path / "o.mp4"),
        ],
        env=env_for(live_service, key),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "job <id> queued": it is now waiting
    assert first.startswith("job ") and first.strip().endswith("queued"), first
    job_id = first.split()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert job_id in err and f"bgservice jobs cancel {job_id}" in err
    assert not (tmp_path / "o.mp4").exists()
    with Client(live_service.base, key) as c:
        job = c.get(job_id)
        assert job.status != "cancelled"  # left running
        if not job.done:
            c.cancel(job_id)
        wait_for(lambda: c.get(job_id).done, JOB_SECONDS, f"job {job_id} to end")
