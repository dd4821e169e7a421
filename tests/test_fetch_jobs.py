"""Safe fetching at the job level (issue 9): a stranger's job -- queued in the real job store and run by a
real runner through the one-process engine, as the service runs it -- fails with the right code when its
URL is refused after resolution or on a redirect, and the refused address sees nothing."""

from __future__ import annotations

import http.server
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgservice.counters import FETCHED_BYTES, FRAMES_PROCESSED
from bgservice.jobs.record import JobRecord
from bgservice.jobs.runner import Runner
from bgservice.jobs.store import JobStore
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from tests.api_server import wait_for
from tests.test_fetch import Server, body, internal, redirect, serve  # noqa: F401 (fixture)


@pytest.fixture
def canary(serve: Callable[..., Server]) -> Server:  # noqa: F811
    """A server on 127.0.0.1 that no stranger's job may ever reach."""
    return serve("127.0.0.1", body(b"SECRET"))


@pytest.fixture
def run_untrusted(tmp_path: Path) -> Iterator[Callable[[str, Settings], JobRecord]]:
    """Queue one stranger's job (``untrusted``) with ``videoUrl`` and wait for its record to end."""
    stores: list[JobStore] = []
    runners: list[Runner] = []

    def run(video_url: str, settings: Settings) -> JobRecord:
        store = JobStore(f"sqlite:///{tmp_path / f'jobs{len(stores)}.db'}")
        stores.append(store)
        spec = JobSpec.build(video_url, str(tmp_path / "out.mp4"), colour="#00FF00")
        spec = JobSpec.from_dict({**spec.to_dict(), "untrusted": True})
        job = store.create(spec.to_dict(), owner="key-a")
        runner = Runner(settings, store, engine="local", max_running=1).start()
        runners.append(runner)
        record = wait_for(
            lambda: (r := store.get(job.id)) is not None and r.state.terminal and r, 120, "the job to end"
        )
        assert isinstance(record, JobRecord)
        return record

    yield run
    for runner in runners:
        runner.stop(graceful=True)
        runner.wait(30)
    for store in stores:
        store.close()


def test_a_redirect_into_the_canary_fails_the_job_url_not_allowed(
    serve: Callable[..., Server],  # noqa: F811
    canary: Server,
    run_untrusted: Callable[[str, Settings], JobRecord],
    tmp_path: Path,
) -> None:
    hop = serve("127.0.0.2", redirect(lambda: canary.url("/steal")))
    record = run_untrusted(hop.url("/v.mp4"), internal(tmp_path))
    assert record.state.value == "failed"
    assert record.error is not None and record.error["code"] == "url_not_allowed", record.error
    assert hop.hits == ["/v.mp4"]
    assert canary.hits == []
    assert not (tmp_path / "out.mp4").exists()


def test_a_private_address_fails_the_job_and_is_never_requested(
    canary: Server, run_untrusted: Callable[[str, Settings], JobRecord], tmp_path: Path
) -> None:
    # decidable only after resolution: "localhost" is a name; nothing allows 127.0.0.1
    record = run_untrusted(f"http://localhost:{canary.port}/v.mp4", Settings(tmp_dir=tmp_path / "s"))
    assert record.error is not None and record.error["code"] == "url_not_allowed", record.error
    assert canary.hits == []


def test_an_endless_body_fails_the_job_input_too_large(
    serve: Callable[..., Server],  # noqa: F811
    run_untrusted: Callable[[str, Settings], JobRecord],
    tmp_path: Path,
) -> None:
    def endless(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        while True:
            h.wfile.write(b"\0" * 65536)

    server = serve("127.0.0.2", endless)
    record = run_untrusted(server.url("/v.mp4"), internal(tmp_path, max_input_bytes=1_000_000))
    assert record.error is not None and record.error["code"] == "input_too_large", record.error


def test_a_silent_server_fails_the_job_fetch_failed(
    run_untrusted: Callable[[str, Settings], JobRecord], tmp_path: Path
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.2", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.2:{silent.getsockname()[1]}/v.mp4"
        record = run_untrusted(url, internal(tmp_path, fetch_timeout_seconds=1.0))
    finally:
        silent.close()
    assert record.error is not None and record.error["code"] == "fetch_failed", record.error


def test_an_allowed_internal_server_serves_a_job_that_completes(
    serve: Callable[..., Server],  # noqa: F811
    run_untrusted: Callable[[str, Settings], JobRecord],
    videos: Path,
    tmp_path: Path,
) -> None:
    clip = (videos / "talking_head_cremad_1001_DFA_NEU_XX.flv").read_bytes()
    server = serve("127.0.0.2", body(clip, "video/x-flv"))
    spec_url = server.url("/talking.flv")
    settings = internal(tmp_path)
    fetched, frames = FETCHED_BYTES.value, FRAMES_PROCESSED.value
    record = run_untrusted(spec_url, settings)
    assert record.state.value == "completed", record.error
    assert (tmp_path / "out.mp4").stat().st_size > 0
    # the runner's process counted the download and the frames (what /metrics reports for it)
    assert record.result is not None
    assert FETCHED_BYTES.value - fetched >= len(clip)
    assert FRAMES_PROCESSED.value - frames >= record.result["frames"] > 0
