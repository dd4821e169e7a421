"""``/metrics`` without a server: the runner's figures rendered, or ``bgservice_runner_up 0`` when no
runner answers (the database's figures still there), and the per-process counters. The figures of a real
runner over real HTTP are checked in tests/test_client.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgservice.api import metrics
from bgservice.counters import Counter
from bgservice.jobs.store import JobStore
from bgservice.settings import Settings
from bgservice.spec import JobSpec

RUNNER_SERIES = (
    "bgservice_frames_processed_total",
    "bgservice_fetched_bytes_total",
    "bgservice_segmenter_pool_size",
    "bgservice_segmenter_pool_busy",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    spec = JobSpec.build("https://example.com/v.mp4", str(tmp_path / "out.mp4"))
    s.create(spec.to_dict(), owner="key-a")
    try:
        yield s
    finally:
        s.close()


def samples(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{label}}}" if label else sample.name] = sample.value
    return out


def test_no_runner_gives_runner_up_0_and_the_database_figures(store: JobStore, tmp_path: Path) -> None:
    """Not connected to Ray (or no runner of these settings): the scrape still answers, runner_up 0."""
    for body in (
        metrics.render(store.engine, None),
        metrics.scrape(store.engine, Settings(tmp_dir=tmp_path / "scratch")),
    ):
        got = samples(body)
        assert got["bgservice_runner_up"] == 0.0
        assert got["bgservice_jobs{state=queued}"] == 1.0
        assert got["bgservice_queue_depth"] == 1.0
        assert not [name for name in got if name.startswith(RUNNER_SERIES)]


def test_the_runners_figures_are_rendered(store: JobStore) -> None:
    figures = {"frames_processed": 48, "fetched_bytes": 123456, "name": "r", "pool": {"size": 2, "busy": 1}}
    got = samples(metrics.render(store.engine, figures))
    assert got["bgservice_runner_up"] == 1.0
    assert got["bgservice_frames_processed_total"] == 48.0
    assert got["bgservice_fetched_bytes_total"] == 123456.0
    assert got["bgservice_segmenter_pool_size"] == 2.0
    assert got["bgservice_segmenter_pool_busy"] == 1.0
    # a pool that did not answer (or the one-process engine): the counters without the pool gauges
    got = samples(metrics.render(store.engine, {**figures, "pool": None}))
    assert got["bgservice_runner_up"] == 1.0 and got["bgservice_frames_processed_total"] == 48.0
    assert "bgservice_segmenter_pool_size" not in got and "bgservice_segmenter_pool_busy" not in got


def test_counter_tallies_only_its_own_threads_work() -> None:
    counter = Counter("test")
    other = threading.Thread(target=lambda: counter.add(1000))
    with counter.tally() as outer:
        counter.add(5)
        with counter.tally() as inner:
            counter.add(7)
            other.start()
            other.join()
        counter.add(-3)  # never goes down
    counter.add(1)
    assert (outer.value, inner.value) == (12, 7)
    assert counter.value == 1013
