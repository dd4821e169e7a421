"""The job runner end to end: the real store (SQLite in a temporary data dir) and a real local Ray.

- Restarts: a subprocess owns the local Ray (``python -m bgservice.jobs.runner``: it starts Ray and the
  runner, then waits); the test only talks to the store. kill -9 of that process loses the runner with
  the whole local Ray (a crash); SIGTERM is a graceful stop.
- Generation, cancel, timeout: one local Ray in this process for the rest of the module, with runners
  started by :func:`ensure_runner` like the HTTP service does.

Clips are short synthetic ones (tests/media_factory.py's generator) and the pool is one Segmenter, so
the module stays quick on 2 cores. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bgservice.jobs.record import JobRecord, JobState
from bgservice.jobs.store import JobStore
from bgservice.media.ffmpeg import ClipSpec, synth_clip
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from tests.conftest import REPO
from tests.outputs import inspect

pytestmark = pytest.mark.ray

# What every runner here runs with: a small pool, short shards (progress early), short leases (a dead
# runner's job is re-queued within seconds).
RUNNER_ENV = {
    "BGSERVICE_POOL_MIN": "1",
    "BGSERVICE_POOL_MAX": "1",
    "BGSERVICE_SHARD_FRAMES": "8",
    "BGSERVICE_MAX_SHARDS_IN_FLIGHT": "2",
    "BGSERVICE_JOB_LEASE_SECONDS": "3",
    "BGSERVICE_MAX_RUNNING_JOBS": "1",
}
START_SECONDS = 240.0  # a local Ray and the first Segmenter coming up on a busy 2-core machine
JOB_SECONDS = 300.0


def wait_for(
    what: Callable[[], Any], timeout: float, message: str, show: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    seen = f"; last seen: {show()}" if show is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}{seen}")


def record(store: JobStore, job_id: str) -> JobRecord:
    rec = store.get(job_id)
    assert rec is not None
    return rec


def ended(store: JobStore, job_id: str) -> JobRecord | None:
    rec = record(store, job_id)
    return rec if rec.state.terminal else None


def running_with_progress(store: JobStore, job_id: str) -> JobRecord | None:
    rec = record(store, job_id)
    assert not rec.state.terminal, f"the job ended {rec.state.value} too early: {rec.error}"
    return rec if rec.state == JobState.RUNNING and rec.progress > 0 else None


def queue(store: JobStore, clip: Path, output: Path) -> str:
    return store.create(JobSpec.build(str(clip), str(output), colour="#00ff00").to_dict()).id


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("clips")
    return {
        "short": Path(synth_clip(str(base / "short.mp4"), ClipSpec(duration=1.0))),
        "long": Path(synth_clip(str(base / "long.mp4"), ClipSpec(duration=12.0))),
    }


class Owner:
    """``python -m bgservice.jobs.runner`` in its own session: it owns a local Ray and the runner."""

    def __init__(self, data_dir: Path, scratch: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RUNNER_ENV)
        env.update(
            {"BGSERVICE_DATA_DIR": str(data_dir), "BGSERVICE_TMP_DIR": str(scratch), "PYTHONPATH": str(REPO)}
        )
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgservice.jobs.runner"],
            cwd=REPO,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._started, START_SECONDS, "the runner to start")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the runner exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        return "started (generation" in self.log.read_text()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        finally:
            self._out.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._out.close()


@pytest.fixture
def owners(tmp_path: Path) -> Iterator[Callable[[], Owner]]:
    started: list[Owner] = []

    def start() -> Owner:
        owner = Owner(tmp_path / "data", tmp_path / "scratch", tmp_path / f"runner-{len(started)}.log")
        started.append(owner)
        return owner

    yield start
    for owner in started:
        owner.cleanup()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    db = JobStore.from_settings(Settings(data_dir=tmp_path / "data"))
    yield db
    db.close()


def outputs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_kill_9_of_the_ray_owner_requeues_the_job_which_completes_once(
    owners: Callable[[], Owner], store: JobStore, clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = owners()
    # a job queued through the store completes
    short = queue(store, clips["short"], out / "short.mp4")
    done = wait_for(lambda: ended(store, short), JOB_SECONDS, "the short job")
    assert done.state == JobState.COMPLETED and done.attempts == 1, done.error
    assert done.result is not None and done.result["frames"] == 25
    assert inspect(str(out / "short.mp4")).frames == 25

    job_id = queue(store, clips["long"], out / "long.mp4")
    wait_for(lambda: running_with_progress(store, job_id), JOB_SECONDS, "progress > 0")
    first.kill9()
    rec = record(store, job_id)
    assert rec.state == JobState.RUNNING and rec.attempts == 1  # nobody wrote anything: a crash

    owners()
    rec = wait_for(lambda: ended(store, job_id), JOB_SECONDS, "the re-queued job")
    assert rec.state == JobState.COMPLETED, rec.error
    assert rec.attempts == 2
    assert inspect(str(out / "long.mp4")).frames == 300
    assert outputs(out) == ["long.mp4", "short.mp4"]  # one output each, no partial object left


def test_graceful_stop_requeues_without_an_attempt_and_the_job_completes_after_restart(
    owners: Callable[[], Owner], store: JobStore, clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = owners()
    job_id = queue(store, clips["long"], out / "long.mp4")
    wait_for(lambda: running_with_progress(store, job_id), JOB_SECONDS, "progress > 0")
    assert first.terminate() == 0, first.log.read_text()[-3000:]
    rec = record(store, job_id)
    assert rec.state == JobState.QUEUED and rec.attempts == 0
    assert outputs(out) == []

    second = owners()
    rec = wait_for(lambda: ended(store, job_id), JOB_SECONDS, "the released job")
    assert rec.state == JobState.COMPLETED and rec.attempts == 1, rec.error
    assert inspect(str(out / "long.mp4")).frames == 300
    assert outputs(out) == ["long.mp4"]
    assert second.terminate() == 0


# --- one local Ray in this process for the rest ---------------------------------------------------------
@pytest.fixture(scope="module")
def ray_here() -> Iterator[None]:
    import ray

    from bgservice.jobs.runner import runner_names
    from tests.dagtools import local_ray

    with local_ray(num_cpus=2):
        yield
        for name in runner_names():  # a test that failed half-way may leave one
            ray.kill(ray.get_actor(name, namespace="bgservice"), no_restart=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runner-data")


def here_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {k[len("BGSERVICE_") :].lower(): v for k, v in RUNNER_ENV.items()}
    values.update({"data_dir": data_dir, "tmp_dir": data_dir / "scratch"})
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def here_store(data_dir: Path) -> Iterator[JobStore]:
    db = JobStore.from_settings(here_settings(data_dir))
    yield db
    db.close()


def test_a_runner_of_an_older_generation_stops_claiming_after_a_new_one_starts(
    ray_here: None, data_dir: Path, here_store: JobStore, clips: dict[str, Path], tmp_path: Path
) -> None:
    from bgservice.jobs.runner import ensure_runner, runner_alive, runner_name, runner_names, stop_runner

    old = here_settings(data_dir)
    new = here_settings(data_dir, job_timeout_seconds=1800)  # another deploy: other settings, other name
    assert runner_name(old) != runner_name(new)
    ensure_runner(old)
    assert runner_alive(old)
    job_id = queue(here_store, clips["long"], tmp_path / "long.mp4")
    wait_for(lambda: running_with_progress(here_store, job_id), JOB_SECONDS, "progress > 0")
    generation = here_store.generation()

    ensure_runner(new)
    assert here_store.generation() == generation + 1
    wait_for(lambda: runner_names() == [runner_name(new)], 120, "the old runner to exit")
    assert not runner_alive(old) and runner_alive(new)
    # its job went back to the queue (no attempt counted) and the new runner finished it
    rec = wait_for(
        lambda: ended(here_store, job_id), JOB_SECONDS, "the job", lambda: record(here_store, job_id)
    )
    assert rec.state == JobState.COMPLETED and rec.attempts == 1, rec.error
    # and new work goes to the new runner only
    later = queue(here_store, clips["short"], tmp_path / "short.mp4")
    rec = wait_for(lambda: ended(here_store, later), JOB_SECONDS, "a later job")
    assert rec.state == JobState.COMPLETED and rec.attempts == 1
    assert stop_runner(new)
    assert runner_names() == []


def test_cancel_a_queued_and_a_running_job(
    ray_here: None, data_dir: Path, here_store: JobStore, clips: dict[str, Path], tmp_path: Path
) -> None:
    import ray

    from bgservice.engines.ray.pool import get_pool
    from bgservice.jobs.runner import ensure_runner, stop_runner

    settings = here_settings(data_dir)
    ensure_runner(settings)
    running = queue(here_store, clips["long"], tmp_path / "running.mp4")
    wait_for(lambda: running_with_progress(here_store, running), JOB_SECONDS, "progress > 0")
    queued = queue(here_store, clips["short"], tmp_path / "queued.mp4")  # one job at a time: it waits
    assert record(here_store, queued).state == JobState.QUEUED

    assert here_store.cancel(queued).state == JobState.CANCELLED  # at once
    assert here_store.cancel(running).cancel_requested
    rec = wait_for(lambda: ended(here_store, running), 60, "the running job to stop")
    assert rec.state == JobState.CANCELLED
    assert record(here_store, queued).state == JobState.CANCELLED
    # its work stopped and its resources came back: no output, no Segmenter lease held
    pool = get_pool(settings)
    wait_for(lambda: ray.get(pool.load.remote())["leased"] == 0, 60, "the leases back in the pool")
    assert outputs(tmp_path) == []
    assert stop_runner(settings)


def test_a_job_over_the_timeout_fails_with_timeout(
    ray_here: None, data_dir: Path, here_store: JobStore, clips: dict[str, Path], tmp_path: Path
) -> None:
    import ray

    from bgservice.engines.ray.pool import get_pool
    from bgservice.jobs.runner import ensure_runner, stop_runner

    settings = here_settings(data_dir, job_timeout_seconds=2)
    ensure_runner(settings)
    job_id = queue(here_store, clips["long"], tmp_path / "long.mp4")
    rec = wait_for(lambda: ended(here_store, job_id), 120, "the job to time out")
    assert rec.state == JobState.FAILED and rec.error is not None
    assert rec.error["code"] == "timeout", rec.error
    # its work stopped (whichever noticed first, the runner or the store's sweep): leases back, no output
    pool = get_pool(settings)
    wait_for(lambda: ray.get(pool.load.remote())["leased"] == 0, 60, "the leases back in the pool")
    assert outputs(tmp_path) == []
    assert stop_runner(settings)


def test_on_postgresql_a_queued_job_completes(
    ray_here: None, data_dir: Path, postgres_url: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    from bgservice.jobs.runner import ensure_runner, stop_runner

    settings = here_settings(data_dir, database_url=postgres_url)
    db = JobStore.from_settings(settings)
    try:
        ensure_runner(settings)
        job_id = queue(db, clips["short"], tmp_path / "short.mp4")
        rec = wait_for(lambda: ended(db, job_id), JOB_SECONDS, "the job", lambda: record(db, job_id))
        assert rec.state == JobState.COMPLETED and rec.attempts == 1, rec.error
        assert inspect(str(tmp_path / "short.mp4")).frames == 25
        assert stop_runner(settings)
    finally:
        db.close()
