"""The runner's own decisions (cancel, timeout, release, lost lease, retirement, per-job outcome) with an
in-memory fake store and a fake engine: no Ray, no database, quick. The same behaviours end to end, on
the real store and a real local Ray, are in tests/test_runner.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bgservice.errors import InvalidInput
from bgservice.jobs.record import JobRecord, JobState
from bgservice.jobs.runner import Runner
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from tests.fakes import FakeEngine, FakeJobStore


def wait_for(what: Callable[[], Any], timeout: float = 20.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


def spec(tmp_path: Path, n: int = 0) -> dict[str, Any]:
    return JobSpec.build(str(tmp_path / "in.mp4"), str(tmp_path / f"out{n}.mp4")).to_dict()


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore()


@pytest.fixture
def make_runner(store: FakeJobStore) -> Iterator[Callable[..., Runner]]:
    runners: list[Runner] = []

    def make(engine: FakeEngine, **settings: Any) -> Runner:
        values: dict[str, Any] = {"max_running_jobs": 2, "job_lease_seconds": 3.0}
        values.update(settings)
        runner = Runner(Settings(**values), store, engine=engine).start()  # type: ignore[arg-type]
        runners.append(runner)
        return runner

    yield make
    for r in runners:
        r.stop(graceful=True)
        assert r.wait(10)


def state(store: FakeJobStore, job_id: str) -> JobRecord:
    rec = store.get(job_id)
    assert rec is not None
    return rec


def ended(store: FakeJobStore, job_id: str) -> JobRecord | None:
    rec = state(store, job_id)
    return rec if rec.state.terminal else None


def test_jobs_complete_with_result(store: FakeJobStore, make_runner: Any, tmp_path: Path) -> None:
    ids = [store.create(spec(tmp_path, i)).id for i in range(3)]
    make_runner(FakeEngine(frames=5))
    for job_id in ids:
        rec = wait_for(lambda j=job_id: ended(store, j), message="job end")
        assert rec.state == JobState.COMPLETED and rec.attempts == 1
        assert rec.result["frames"] == 5 and rec.result["engine"] == "fake"


def test_failure_is_recorded_with_its_code(store: FakeJobStore, make_runner: Any, tmp_path: Path) -> None:
    job_id = store.create(spec(tmp_path)).id
    make_runner(FakeEngine(frames=2, fail=InvalidInput("not a video")))
    rec = wait_for(lambda: ended(store, job_id))
    assert rec.state == JobState.FAILED and rec.error == {"code": "invalid_input", "message": "not a video"}


def test_cancel_running_and_queued(store: FakeJobStore, make_runner: Any, tmp_path: Path) -> None:
    engine = FakeEngine(frames=10_000, frame_seconds=0.01)
    running = store.create(spec(tmp_path, 1)).id
    make_runner(engine, max_running_jobs=1)
    wait_for(lambda: state(store, running).progress > 0, message="progress written")
    queued = store.create(spec(tmp_path, 2)).id
    assert store.cancel(queued).state == JobState.CANCELLED
    store.cancel(running)
    assert wait_for(lambda: ended(store, running)).state == JobState.CANCELLED


def test_timeout_fails_the_job(store: FakeJobStore, make_runner: Any, tmp_path: Path) -> None:
    job_id = store.create(spec(tmp_path)).id
    make_runner(FakeEngine(frames=10_000), job_timeout_seconds=0.3)
    rec = wait_for(lambda: ended(store, job_id))
    assert rec.state == JobState.FAILED and rec.error is not None and rec.error["code"] == "timeout"


def test_graceful_stop_releases_without_counting_an_attempt(store: FakeJobStore, tmp_path: Path) -> None:
    job_id = store.create(spec(tmp_path)).id
    runner = Runner(Settings(max_running_jobs=1), store, engine=FakeEngine(frames=10_000)).start()  # type: ignore[arg-type]
    wait_for(lambda: state(store, job_id).progress > 0)
    runner.stop(graceful=True)
    assert runner.wait(10)
    rec = state(store, job_id)
    assert rec.state == JobState.QUEUED and rec.attempts == 0


def test_lost_runner_lease_lapses_then_another_runner_finishes(store: FakeJobStore, tmp_path: Path) -> None:
    job_id = store.create(spec(tmp_path)).id
    settings = Settings(max_running_jobs=1, job_lease_seconds=0.5)
    first = Runner(settings, store, engine=FakeEngine(frames=10_000)).start()  # type: ignore[arg-type]
    wait_for(lambda: state(store, job_id).progress > 0)
    first.stop(graceful=False)  # like a crash: nothing written, the lease lapses
    assert first.wait(10)
    assert state(store, job_id).state == JobState.RUNNING
    second = Runner(settings, store, engine=FakeEngine(frames=3)).start()  # type: ignore[arg-type]
    rec = wait_for(lambda: ended(store, job_id))
    assert rec.state == JobState.COMPLETED and rec.attempts == 2
    second.stop()
    assert second.wait(10)


def test_an_older_generation_retires(store: FakeJobStore, tmp_path: Path) -> None:
    settings = Settings(max_running_jobs=1)
    old = Runner(settings, store, engine=FakeEngine(frames=10_000), name="old").start()  # type: ignore[arg-type]
    job_id = store.create(spec(tmp_path)).id
    wait_for(lambda: state(store, job_id).progress > 0)
    new = Runner(settings, store, engine=FakeEngine(frames=3), name="new").start()  # type: ignore[arg-type]
    assert old.wait(10) and old.stopping == "retired"
    rec = wait_for(lambda: ended(store, job_id))
    assert rec.state == JobState.COMPLETED and rec.attempts == 1 and new.claimed == 1
    new.stop()
    assert new.wait(10)


def test_actor_names_carry_the_version_and_a_hash_of_their_settings() -> None:
    from bgservice import __version__
    from bgservice.engines.ray.pool import pool_name
    from bgservice.jobs.runner import runner_name

    base = Settings()
    assert pool_name(base).startswith(f"bgservice-segmenter-pool-{__version__}-")
    assert runner_name(base).startswith(f"bgservice-runner-{__version__}-")
    assert pool_name(base) == pool_name(Settings())  # stable across processes: a hash, not an id
    # the pool changes with what its Segmenters are built from, not with the encoder's settings
    assert pool_name(Settings(model="selfie_landscape")) != pool_name(base)
    assert pool_name(Settings(pool_max=3)) != pool_name(base)
    assert pool_name(Settings(crf=30)) == pool_name(base)
    # the runner changes with any setting it runs jobs with
    assert runner_name(Settings(crf=30)) != runner_name(base)
    assert runner_name(Settings(job_timeout_seconds=5)) != runner_name(base)
