"""The durable job store against SQLite and a real PostgreSQL server (tests/postgres.py starts it)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bgservice.errors import InvalidSettings, JobNotCancellable, NotFound, ServiceUnavailable
from bgservice.jobs.record import MAX_ATTEMPTS, TRANSITIONS, IllegalTransition, JobState
from bgservice.jobs.schema import metadata
from bgservice.jobs.store import JobStore, head_revision, key_id
from bgservice.settings import Settings, default_data_dir, get_settings
from bgservice.spec import JobSpec
from tests.conftest import REPO

SPEC = {"input_url": "in.mp4", "output_url": "out.mp4"}
LEASE = 30.0
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(job_store: JobStore) -> JobStore:
    return job_store  # tests/postgres.py: SQLite, then a real PostgreSQL


def claim(store: JobStore, runner: str = "r1", *, now: datetime | None = None, **limits: int) -> Any:
    limits.setdefault("max_running", 100)
    limits.setdefault("max_running_per_key", 100)
    return store.claim(runner, lease_seconds=LEASE, now=now, **limits)


def state_of(store: JobStore, job_id: str) -> JobState:
    record = store.get(job_id)
    assert record is not None
    return record.state


# --- schema and migrations ---------------------------------------------------------------------------
def test_open_twice_is_at_head_and_matches_the_schema(job_store_url: str) -> None:
    for _ in range(2):
        with JobStore(job_store_url) as s:
            assert s.schema_revision() == head_revision()
    engine = sa.create_engine(JobStore(job_store_url).url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        inspector = sa.inspect(engine)
        for table in metadata.sorted_tables:
            assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.c.keys()), table.name
    finally:
        engine.dispose()


def test_an_older_database_is_upgraded_and_keeps_its_jobs(job_store_url: str, tmp_path: Path) -> None:
    """A database made by revision 0001 (before any later migration) opens with today's code."""
    from alembic import command
    from alembic.config import Config

    from bgservice.jobs.store import normalise_url

    url = normalise_url(job_store_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(REPO / "bgservice" / "jobs" / "migrations"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (id, state, spec, created_at, updated_at) "
                    "VALUES ('old-job', 'queued', '{\"input_url\": \"a.mp4\"}', :t, :t)"
                ),
                {"t": T0 if url.get_backend_name() == "postgresql" else "2026-01-01 12:00:00.000000"},
            )
    finally:
        engine.dispose()
    with JobStore(job_store_url) as s:
        assert s.schema_revision() == head_revision()
        old = s.get("old-job")
        assert old is not None and old.state is JobState.QUEUED and old.spec == {"input_url": "a.mp4"}
        assert old.created_at == T0 and old.attempts == 0 and old.cancel_requested is False


def test_head_is_the_newest_migration() -> None:
    versions = REPO / "bgservice" / "jobs" / "migrations" / "versions"
    newest = max(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*.py"))
    assert head_revision() == newest


def test_several_processes_may_open_a_new_database_at_once(job_store_url: str) -> None:
    start = threading.Barrier(3)

    def open_it(_: int) -> str | None:
        start.wait()
        with JobStore(job_store_url) as s:
            s.create(SPEC)
            return s.schema_revision()

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(open_it, range(3))) == [head_revision()] * 3
    with JobStore(job_store_url) as s:
        assert s.counts()["queued"] == 3


def test_spec_round_trips_and_times_are_aware_utc(store: JobStore) -> None:
    spec = JobSpec.build("s3://b/in.mp4", "s3://b/out.mp4", colour="#0f0", start="1.5", end="00:00:03")
    record = store.create(spec.to_dict(), owner="k" * 64, request={"input": "x"}, extra={"webhook": "w"})
    assert record.extra == {"webhook": "w"}
    got = store.get(record.id)
    assert got is not None
    assert JobSpec.from_dict(got.spec) == spec
    assert got.request == {"input": "x"} and got.owner == "k" * 64
    assert got.state is JobState.QUEUED and got.attempts == 0 and got.progress == 0.0
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert store.get(record.id, owner="someone else") is None
    assert store.get("no-such-job") is None


# --- transitions -------------------------------------------------------------------------------------
def _job_in(store: JobStore, state: JobState) -> str:
    job = store.create(SPEC)
    if state is JobState.QUEUED:
        return job.id
    if state is JobState.CANCELLED:
        store.cancel(job.id)
        return job.id
    claimed = claim(store)
    assert claimed is not None and claimed.id == job.id
    if state is JobState.COMPLETED:
        store.complete(job.id, "r1", {"output_url": "out.mp4"})
    elif state is JobState.FAILED:
        store.fail(job.id, "r1", {"code": "decode_failed", "message": "boom"})
    return job.id


def _move(store: JobStore, job_id: str, src: JobState, dst: JobState) -> None:
    """Ask the store for ``src -> dst`` through the public operation that makes it."""
    if dst is JobState.RUNNING:
        if claim(store) is None:
            raise IllegalTransition("nothing claimable")
    elif dst is JobState.COMPLETED:
        store.complete(job_id, "r1", {"output_url": "out.mp4"})
    elif dst is JobState.FAILED:
        store.fail(job_id, "r1", {"code": "internal", "message": "x"})
    elif dst is JobState.QUEUED:
        store.release(job_id, "r1")
    elif src is JobState.RUNNING:
        store.mark_cancelled(job_id, "r1")
    else:
        store.cancel(job_id)


@pytest.mark.parametrize("src", list(JobState), ids=lambda s: s.value)
def test_every_transition_is_allowed_or_refused(store: JobStore, src: JobState) -> None:
    for dst in JobState:
        job_id = _job_in(store, src)
        before = store.get(job_id)
        if dst in TRANSITIONS[src]:
            _move(store, job_id, src, dst)
            assert state_of(store, job_id) is dst, f"{src} -> {dst}"
        elif src is JobState.CANCELLED and dst is JobState.CANCELLED:
            assert store.cancel(job_id) == before  # cancelling a cancelled job changes nothing
        elif dst is JobState.CANCELLED and src in (JobState.COMPLETED, JobState.FAILED):
            with pytest.raises(JobNotCancellable):
                store.cancel(job_id)
            with pytest.raises(IllegalTransition):
                store.mark_cancelled(job_id, "r1")
            assert store.get(job_id) == before
        else:
            with pytest.raises(IllegalTransition):
                _move(store, job_id, src, dst)
            assert store.get(job_id) == before, f"{src} -> {dst} changed the job"
        # leave nothing queued or running behind for the next claim
        record = store.get(job_id)
        assert record is not None
        if record.state is JobState.RUNNING:
            store.mark_cancelled(job_id, "r1")
        elif record.state is JobState.QUEUED:
            store.cancel(job_id)


def test_illegal_transition_is_an_internal_error_with_a_clear_message(store: JobStore) -> None:
    job_id = _job_in(store, JobState.COMPLETED)
    with pytest.raises(IllegalTransition, match="from completed to failed") as info:
        store.fail(job_id, "r1", {"code": "internal", "message": "late"})
    assert info.value.code == "internal"


def test_another_runner_cannot_finish_a_job_it_does_not_hold(store: JobStore) -> None:
    job_id = _job_in(store, JobState.RUNNING)
    with pytest.raises(IllegalTransition, match="no longer leased"):
        store.complete(job_id, "r2", {})
    assert store.heartbeat(job_id, "r2", lease_seconds=LEASE).ok is False
    assert state_of(store, job_id) is JobState.RUNNING
    swept = store.fail(job_id, None, {"code": "internal", "message": "sweep"})  # a sweep needs no lease
    assert swept.state is JobState.FAILED and swept.lease_owner is None and swept.finished_at is not None


def test_complete_stores_the_result(store: JobStore) -> None:
    job_id = _job_in(store, JobState.RUNNING)
    hb = store.heartbeat(job_id, "r1", lease_seconds=LEASE, progress=0.4)
    assert hb.ok and not hb.cancel_requested
    record = store.get(job_id)
    assert record is not None and record.progress == pytest.approx(0.4)
    result = {"output_url": "out.mp4", "frames": 10, "engine": "ray", "quality": "balanced"}
    done = store.complete(job_id, "r1", result)
    assert done.state is JobState.COMPLETED and done.result == result and done.progress == 1.0
    assert done.engine == "ray" and done.quality == "balanced" and done.attempts == 1
    assert done.lease_owner is None and done.finished_at is not None
    assert store.heartbeat(job_id, "r1", lease_seconds=LEASE).ok is False


# --- claim -------------------------------------------------------------------------------------------
def test_claim_takes_the_oldest_first_and_nothing_when_empty(store: JobStore) -> None:
    assert claim(store) is None
    ids = [store.create(SPEC, now=T0 + timedelta(seconds=i)).id for i in range(3)]
    got = [claim(store, now=T0 + timedelta(minutes=1)) for _ in range(3)]
    assert [g.id for g in got] == ids
    assert all(g.state is JobState.RUNNING and g.attempts == 1 and g.lease_owner == "r1" for g in got)
    assert got[0].lease_expires_at == T0 + timedelta(minutes=1, seconds=LEASE)
    assert claim(store) is None


def test_two_runners_in_threads_never_take_the_same_job(store: JobStore) -> None:
    n = 40
    ids = {store.create(SPEC, owner=f"key{i % 4}").id for i in range(n)}
    start = threading.Barrier(4)

    def runner(name: str) -> list[str]:
        start.wait()
        mine = []
        while (job := claim(store, name)) is not None:
            mine.append(job.id)
        return mine

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(runner, [f"r{i}" for i in range(4)]))
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == len(set(claimed)) == n
    assert set(claimed) == ids
    for name, mine in zip([f"r{i}" for i in range(4)], results, strict=True):
        assert sorted(r.id for r in store.leased_to(name)) == sorted(mine)
        for job_id in mine:
            record = store.get(job_id)
            assert record is not None and record.lease_owner == name and record.attempts == 1


def test_concurrent_claims_respect_max_running(store: JobStore) -> None:
    for i in range(12):
        store.create(SPEC, owner=f"key{i % 3}")
    start = threading.Barrier(6)

    def runner(name: str) -> int:
        start.wait()
        got = 0
        for _ in range(4):
            if claim(store, name, max_running=3, max_running_per_key=1) is not None:
                got += 1
        return got

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(runner, [f"r{i}" for i in range(6)])) == 3
    running = store.list_jobs(owner=None, states=[JobState.RUNNING], limit=100)[0]
    assert sorted(r.owner or "" for r in running) == ["key0", "key1", "key2"]  # one per key


_CLAIMER = r"""
import json, sys, time
from pathlib import Path
from bgservice.jobs.store import JobStore
url, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
store = JobStore(url)
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go")
    time.sleep(0.005)
mine = []
while (job := store.claim(name, lease_seconds=30, max_running=1000, max_running_per_key=1000)) is not None:
    mine.append(job.id)
store.close()
print(json.dumps(mine), flush=True)
"""


def test_two_runner_processes_never_take_the_same_job(tmp_path: Path) -> None:
    """Two processes on one SQLite file (on PostgreSQL, the thread test's connections are already
    separate sessions to the server)."""
    job_store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    n = 60
    with JobStore(job_store_url) as s:
        ids = {s.create(SPEC, owner=f"key{i % 3}").id for i in range(n)}
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, job_store_url, str(go), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    claimed = [job_id for out, _ in outs for job_id in json.loads(out.strip().splitlines()[-1])]
    assert len(claimed) == len(set(claimed)) == n
    assert set(claimed) == ids


def _claim_and_cancel_at_once(store: JobStore, job_id: str) -> dict[str, Any]:
    start = threading.Barrier(2)
    got: dict[str, Any] = {}

    def do_claim() -> None:
        start.wait()
        got["claim"] = claim(store)

    def do_cancel() -> None:
        start.wait()
        got["cancel"] = store.cancel(job_id)

    threads = [threading.Thread(target=do_claim), threading.Thread(target=do_cancel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(got) == {"claim", "cancel"}
    return got


def test_cancel_while_being_claimed_has_one_consistent_winner(store: JobStore) -> None:
    outcomes: set[str] = set()
    for _ in range(15):
        job = store.create(SPEC)
        got = _claim_and_cancel_at_once(store, job.id)
        final = store.get(job.id)
        assert final is not None
        if got["claim"] is not None:  # the runner won: the job runs, with its cancel requested
            assert got["claim"].id == job.id
            assert final.state is JobState.RUNNING and final.cancel_requested
            assert got["cancel"].state is JobState.RUNNING and got["cancel"].cancel_requested
            assert store.heartbeat(job.id, "r1", lease_seconds=LEASE).cancel_requested
            assert store.mark_cancelled(job.id, "r1").state is JobState.CANCELLED
            outcomes.add("running")
        else:  # the cancel won: nobody runs it
            assert final.state is JobState.CANCELLED and final.attempts == 0 and final.lease_owner is None
            assert got["cancel"].state is JobState.CANCELLED
            outcomes.add("cancelled")
        assert state_of(store, job.id) is JobState.CANCELLED
    assert outcomes  # which side wins depends on timing; each round above was consistent


# --- cancel ------------------------------------------------------------------------------------------
def test_cancel_semantics(store: JobStore) -> None:
    queued = store.create(SPEC, owner="a")
    with pytest.raises(NotFound):
        store.cancel(queued.id, owner="b")
    with pytest.raises(NotFound):
        store.cancel("no-such-job")
    cancelled = store.cancel(queued.id, owner="a")
    assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
    assert cancelled.error is not None and cancelled.error["code"] == "cancelled"
    assert store.cancel(queued.id).state is JobState.CANCELLED
    assert claim(store) is None  # a cancelled job is never claimed

    running = store.create(SPEC, owner="a")
    assert claim(store) is not None
    asked = store.cancel(running.id)
    assert asked.state is JobState.RUNNING and asked.cancel_requested
    hb = store.heartbeat(running.id, "r1", lease_seconds=LEASE)
    assert hb.ok and hb.cancel_requested
    assert store.mark_cancelled(running.id, "r1").state is JobState.CANCELLED

    for end in (JobState.COMPLETED, JobState.FAILED):
        job_id = _job_in(store, end)
        with pytest.raises(JobNotCancellable):
            store.cancel(job_id)


def test_a_running_job_that_completes_first_stays_completed(store: JobStore) -> None:
    job_id = _job_in(store, JobState.RUNNING)
    store.cancel(job_id)
    assert store.complete(job_id, "r1", {"output_url": "o"}).state is JobState.COMPLETED
    with pytest.raises(JobNotCancellable):
        store.cancel(job_id)


# --- leases, release, timeout ------------------------------------------------------------------------
def test_a_lapsed_lease_requeues_the_job_and_the_next_claim_is_attempt_2(store: JobStore) -> None:
    job = store.create(SPEC, now=T0)
    first = claim(store, "dead-runner", now=T0)
    assert first.attempts == 1
    assert store.requeue_expired(now=T0 + timedelta(seconds=LEASE - 1)) == []
    # the runner renews: the lease moves on
    assert store.heartbeat(job.id, "dead-runner", lease_seconds=LEASE, now=T0 + timedelta(seconds=20)).ok
    assert store.requeue_expired(now=T0 + timedelta(seconds=LEASE + 1)) == []
    # then it dies: nothing renews the lease
    assert store.requeue_expired(now=T0 + timedelta(seconds=20 + LEASE + 1)) == [job.id]
    back = store.get(job.id)
    assert back is not None and back.state is JobState.QUEUED and back.attempts == 1
    assert back.lease_owner is None and back.lease_expires_at is None and back.progress == 0.0
    assert store.heartbeat(job.id, "dead-runner", lease_seconds=LEASE).ok is False
    with pytest.raises(IllegalTransition):
        store.complete(job.id, "dead-runner", {})
    second = claim(store, "new-runner")
    assert second.id == job.id and second.attempts == 2 and second.lease_owner == "new-runner"


def test_three_lapsed_leases_fail_the_job_with_internal(store: JobStore) -> None:
    job = store.create(SPEC, now=T0)
    at = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        got = claim(store, f"r{attempt}", now=at)
        assert got.id == job.id and got.attempts == attempt
        at += timedelta(seconds=LEASE + 1)
        assert store.requeue_expired(now=at) == [job.id]
    final = store.get(job.id)
    assert final is not None and final.state is JobState.FAILED and final.attempts == MAX_ATTEMPTS
    assert final.error is not None and final.error["code"] == "internal"
    assert claim(store) is None


def test_a_lapsed_job_whose_cancel_was_requested_ends_cancelled(store: JobStore) -> None:
    job = store.create(SPEC, now=T0)
    claim(store, now=T0)
    store.cancel(job.id)
    assert store.requeue_expired(now=T0 + timedelta(seconds=LEASE + 1)) == [job.id]
    assert state_of(store, job.id) is JobState.CANCELLED


def test_graceful_release_gives_the_attempt_back(store: JobStore) -> None:
    job = store.create(SPEC, now=T0)
    claim(store, "r1", now=T0)
    store.requeue_expired(now=T0 + timedelta(seconds=LEASE + 1))  # one real lapse: attempt 1 counted
    second = claim(store, "r2")
    assert second.attempts == 2
    released = store.release(job.id, "r2")
    assert released.state is JobState.QUEUED and released.attempts == 1 and released.lease_owner is None
    assert claim(store, "r3").attempts == 2
    store.cancel(job.id)  # a release of a job whose cancel was requested ends it instead
    assert store.release(job.id, "r3").state is JobState.CANCELLED


def test_a_job_running_too_long_fails_with_timeout(store: JobStore) -> None:
    job = store.create(SPEC, now=T0)
    claim(store, now=T0)
    other = store.create(SPEC, now=T0)
    assert store.fail_timed_out(60, now=T0 + timedelta(seconds=59)) == []
    assert store.fail_timed_out(60, now=T0 + timedelta(seconds=61)) == [job.id]
    final = store.get(job.id)
    assert final is not None and final.state is JobState.FAILED and final.lease_owner is None
    assert final.error is not None and final.error["code"] == "timeout"
    assert "60 seconds" in final.error["message"]
    assert state_of(store, other.id) is JobState.QUEUED  # a queued job is not timed out
    with pytest.raises(IllegalTransition):
        store.complete(job.id, "r1", {})


# --- fairness ----------------------------------------------------------------------------------------
def test_one_keys_burst_never_starves_another_keys_first_job(store: JobStore) -> None:
    burst = [store.create(SPEC, owner="A", now=T0 + timedelta(seconds=i)).id for i in range(10)]
    lone = store.create(SPEC, owner="B", now=T0 + timedelta(seconds=30)).id
    first = [claim(store, max_running=2, max_running_per_key=2) for _ in range(3)]
    assert first[2] is None  # max_running: nothing more starts while two run
    assert {first[0].id, first[1].id} == {burst[0], lone}


def test_the_per_key_limit_is_respected(store: JobStore) -> None:
    a = [store.create(SPEC, owner="A", now=T0 + timedelta(seconds=i)).id for i in range(5)]
    b = store.create(SPEC, owner="B", now=T0 + timedelta(seconds=10)).id
    local = store.create(SPEC, now=T0 + timedelta(seconds=11)).id  # no owner: local jobs are one key
    got = []
    while (job := claim(store, max_running=10, max_running_per_key=2)) is not None:
        got.append(job.id)
    assert got[:3] == [a[0], b, local]  # fewest running first, then oldest
    assert sorted(got) == sorted([a[0], a[1], b, local])  # A stops at 2
    store.complete(a[0], "r1", {})
    assert claim(store, max_running=10, max_running_per_key=2).id == a[2]  # oldest of A's next


# --- shared state ------------------------------------------------------------------------------------
def test_the_secret_is_generated_once_and_shared(job_store_url: str) -> None:
    with JobStore(job_store_url) as one, JobStore(job_store_url) as two:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda s: s.secret(), [one, two])
        assert a == b and len(a) == 32
        assert one.secret("webhooks") != a and len(one.secret("webhooks")) == 32
    with JobStore(job_store_url) as three:
        assert three.secret() == a
    with JobStore(job_store_url, secret="operator-chosen") as four:
        assert four.secret() == b"operator-chosen"
        assert four.secret("webhooks") != b"operator-chosen"


def test_generation_bumps_are_seen_by_every_instance(job_store_url: str) -> None:
    with JobStore(job_store_url) as one, JobStore(job_store_url) as two:
        assert one.generation() == 0
        assert one.bump_generation() == 1
        assert two.generation() == 1
        with ThreadPoolExecutor(4) as pool:
            bumped = sorted(pool.map(lambda s: s.bump_generation(), [one, two, one, two]))
        assert bumped == [2, 3, 4, 5]  # concurrent deploys each get their own number
        assert one.generation() == two.generation() == 5
        assert one.generation("other") == 0


def test_api_keys_are_kept_as_sha256_ids_only(store: JobStore) -> None:
    key = "sk-live-1234567890abcdef"
    kid = store.add_api_key(key, name="ci")
    assert kid == hashlib.sha256(key.encode()).hexdigest() == key_id(key)
    assert store.add_api_key(key) == kid
    assert store.api_key_id(key) == kid and store.api_key_id("sk-other") is None
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_keys")).all()
    engine.dispose()
    assert len(rows) == 1 and key not in repr(rows)
    assert store.revoke_api_key(kid) and not store.revoke_api_key(kid)
    assert store.api_key_id(key) is None


def test_counts(store: JobStore) -> None:
    _job_in(store, JobState.COMPLETED)
    store.create(SPEC, owner="x")
    store.create(SPEC, owner="x")
    assert store.counts() == {"queued": 2, "running": 0, "completed": 1, "failed": 0, "cancelled": 0}
    assert store.counts(owner="x")["queued"] == 2


# --- listing -----------------------------------------------------------------------------------------
def test_list_pages_newest_first_and_stable_under_equal_times(store: JobStore) -> None:
    mine = []
    for i in range(25):  # groups of five share one created_at: the id breaks the tie
        mine.append(store.create(SPEC, owner="A", now=T0 + timedelta(seconds=i // 5)))
    for i in range(3):
        store.create(SPEC, owner="B", now=T0 + timedelta(seconds=i))
    expected = [r.id for r in sorted(mine, key=lambda r: (r.created_at, r.id), reverse=True)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.list_jobs(owner="A", limit=10, cursor=cursor)
        seen.extend(r.id for r in page)
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and seen == expected
    exact, end = store.list_jobs(owner="A", limit=25)
    assert len(exact) == 25 and end is None
    assert len(store.list_jobs(owner=None, limit=100)[0]) == 28
    assert store.list_jobs(owner="nobody")[0] == []


def test_list_filters_by_state(store: JobStore) -> None:
    done = _job_in(store, JobState.COMPLETED)
    store.create(SPEC)
    page, _ = store.list_jobs(owner=None, states=[JobState.COMPLETED, JobState.FAILED])
    assert [r.id for r in page] == [done]


@pytest.mark.parametrize("cursor", ["garbage!", "", "bm90IGpzb24", "WzEsMl0", "WyJub3QgYSB0aW1lIiwiYSJd"])
def test_a_bad_cursor_is_a_value_error(store: JobStore, cursor: str) -> None:
    with pytest.raises(ValueError):
        store.list_jobs(owner=None, cursor=cursor)


# --- SQLite specifics, files and settings -------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "share" / "bgservice"
    settings = Settings(data_dir=data_dir)
    with JobStore.from_settings(settings) as s:
        assert s.url.get_backend_name() == "sqlite"
        assert Path(str(s.url.database)) == data_dir / "jobs.db"
        s.create(SPEC)
        assert _mode(data_dir) == 0o700
        files = sorted(data_dir.iterdir())
        assert data_dir / "jobs.db" in files
        for f in files:  # jobs.db and, while open, its -wal / -shm
            assert _mode(f) == 0o600, f
    with JobStore.from_settings(settings) as again:
        assert len(again.list_jobs(owner=None)[0]) == 1


def test_sqlite_is_safe_from_many_threads(tmp_path: Path) -> None:
    with JobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as s:

        def work(i: int) -> None:
            for _ in range(10):
                job = s.create(SPEC, owner=f"k{i}")
                s.get(job.id)
                s.list_jobs(owner=f"k{i}", limit=5)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        assert s.counts()["queued"] == 80
        engine = sa.create_engine(s.url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        engine.dispose()


def test_a_data_dir_that_cannot_be_made_is_an_operator_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(InvalidSettings, match="BGSERVICE_DATA_DIR"):
        JobStore.from_settings(Settings(data_dir=tmp_path / "file" / "bgservice"))
    with pytest.raises(ServiceUnavailable, match="cannot create"):
        JobStore(f"sqlite:///{tmp_path / 'file' / 'jobs.db'}")


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "bgservice"
    assert Settings().data_dir == tmp_path / "xdg" / "bgservice"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "bgservice"


def test_settings_name_a_bad_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGSERVICE_DATABASE_URL", "mysql://x/y")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidSettings, match="BGSERVICE_DATABASE_URL"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_settings_select_postgres_and_the_secret(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    monkeypatch.setenv("BGSERVICE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("BGSERVICE_SECRET", "from-the-environment")
    with JobStore.from_settings(Settings()) as s:
        assert s.dialect == "postgresql"
        assert s.secret() == b"from-the-environment"


def test_an_unreachable_postgres_is_service_unavailable() -> None:
    from tests.postgres import _free_port

    port = _free_port()
    with pytest.raises(ServiceUnavailable, match="job store unreachable"):
        JobStore(f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=5")


def test_unsupported_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        JobStore("sqlite://")
    with pytest.raises(ValueError, match="unsupported"):
        JobStore("mysql://x/y")


def test_a_second_store_in_one_process_never_blinds_the_first_to_other_processes(tmp_path: Path) -> None:
    """A process holding a store (the HTTP service) may open and close another on the same SQLite file
    (``ensure_runner`` does); what other processes write later must stay visible to the first one."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = JobStore(url)
    try:
        job = first.create(SPEC)
        JobStore(url).close()
        # another process claims it and closes its last connection (SQLite checkpoints, removes the WAL)
        claim = (
            "from bgservice.jobs.store import JobStore\n"
            f"s = JobStore({url!r})\n"
            "s.claim('other', lease_seconds=30, max_running=5, max_running_per_key=5)\n"
            "s.close()\n"
        )
        subprocess.run([sys.executable, "-c", claim], check=True, env=env, timeout=60)
        # a third writes progress and stays open (a runner at work)
        beat = (
            "import sys\n"
            "from bgservice.jobs.store import JobStore\n"
            f"s = JobStore({url!r})\n"
            f"s.heartbeat({job.id!r}, 'other', lease_seconds=30, progress=0.5)\n"
            "print('written', flush=True)\n"
            "sys.stdin.read()\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", beat], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "written"
            seen = first.get(job.id)
            proc.stdin.close()
        assert seen is not None and seen.state is JobState.RUNNING and seen.progress == 0.5
    finally:
        first.close()
