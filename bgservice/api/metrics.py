"""``GET /metrics``: Prometheus text format (``prometheus-client``).

The job figures are read from the database at scrape time, so every replica answers the same:

- ``bgservice_jobs{state}``: jobs by state; ``bgservice_jobs_failed{code}``: failed jobs by error code
- ``bgservice_queue_depth``: queued jobs; ``bgservice_queue_oldest_seconds``: age of the oldest queued job
- ``bgservice_queue_wait_seconds``: histogram of created → started, over started jobs
- ``bgservice_job_duration_seconds``: histogram of started → finished, over completed jobs
- ``bgservice_billed_seconds_total``: billed seconds of completed jobs

Per-process figures of the runner (the detached actor whose threads drive every job, and which knows its
Segmenter pool), asked at scrape time (:func:`bgservice.jobs.runner.runner_metrics`, at most
:data:`~bgservice.jobs.runner.METRICS_SECONDS`):

- ``bgservice_runner_up``: 1 when the runner answered, else 0 (and the runner's figures are left out:
  the scrape still answers, with the database's figures)
- ``bgservice_frames_processed_total``: frames the runner's jobs wrote to their outputs
- ``bgservice_fetched_bytes_total``: bytes the runner's jobs downloaded (http(s)) or copied (object
  stores) into scratch: inputs, background images and videos
- ``bgservice_segmenter_pool_size`` / ``bgservice_segmenter_pool_busy``: Segmenters in the pool (starting
  ones included) / those holding a lease now; left out when the pool does not answer in time

The two counters belong to the runner's process: a new runner (a restart, a deploy) starts them again
from zero, which Prometheus's ``rate()`` / ``increase()`` read as a counter reset.

Then this replica's own counters (:data:`WEBHOOK_DELIVERIES`, labelled by outcome).
The endpoint takes no API key: scrape it from inside the cluster, and keep it off the public ingress.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from bgservice.api.billing import billed_seconds
from bgservice.jobs.runner import runner_metrics
from bgservice.jobs.schema import jobs
from bgservice.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("queued", "running", "completed", "failed", "cancelled")
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

PROCESS = CollectorRegistry(auto_describe=True)
WEBHOOK_DELIVERIES = Counter(
    "bgservice_webhook_deliveries",
    "webhook delivery attempts made by this process, by outcome",
    ["outcome"],  # delivered | retry | failed | disabled
    registry=PROCESS,
)


def _histogram(name: str, doc: str, values: Sequence[float], bounds: Sequence[float]) -> Metric:
    buckets: list[tuple[str, float]] = []
    for bound in bounds:
        buckets.append((str(float(bound)), float(sum(1 for v in values if v <= bound))))
    buckets.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=float(sum(values)))


class JobsCollector(Collector):
    """Job figures from the store, computed at every scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        with self._engine.connect() as conn:
            by_state: dict[str, int] = dict(
                conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
            )
            oldest = conn.execute(
                select(func.min(jobs.c.created_at)).where(jobs.c.state == "queued")
            ).scalar()
            failed = conn.execute(select(jobs.c.error).where(jobs.c.state == "failed")).scalars().all()
            started = conn.execute(
                select(jobs.c.created_at, jobs.c.started_at).where(jobs.c.started_at.is_not(None))
            ).all()
            done = conn.execute(
                select(jobs.c.started_at, jobs.c.finished_at, jobs.c.result).where(
                    jobs.c.state == "completed"
                )
            ).all()

        states = GaugeMetricFamily("bgservice_jobs", "jobs by state", labels=["state"])
        for state in STATES:
            states.add_metric([state], float(by_state.get(state, 0)))
        yield states

        codes = Tally(
            str((e or {}).get("code", "internal")) if isinstance(e, dict) else "internal" for e in failed
        )
        by_code = GaugeMetricFamily("bgservice_jobs_failed", "failed jobs by error code", labels=["code"])
        for code, n in sorted(codes.items()):
            by_code.add_metric([code], float(n))
        yield by_code

        yield GaugeMetricFamily(
            "bgservice_queue_depth", "queued jobs", value=float(by_state.get("queued", 0))
        )
        age = 0.0 if oldest is None else max(0.0, (now - _utc(oldest)).total_seconds())
        yield GaugeMetricFamily("bgservice_queue_oldest_seconds", "age of the oldest queued job", value=age)

        waits = [max(0.0, (_utc(s) - _utc(c)).total_seconds()) for c, s in started]
        yield _histogram("bgservice_queue_wait_seconds", "created to started", waits, WAIT_BUCKETS)
        durations = [max(0.0, (_utc(f) - _utc(s)).total_seconds()) for s, f, _ in done if s and f]
        yield _histogram("bgservice_job_duration_seconds", "started to finished, completed jobs",
                         durations, DURATION_BUCKETS)  # fmt: skip
        billed = sum(billed_seconds(float((r or {}).get("duration_seconds", 0.0))) for _, _, r in done)
        total = CounterMetricFamily("bgservice_billed_seconds", "billed seconds of completed jobs")
        total.add_metric([], float(billed))
        yield total


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class RunnerCollector(Collector):
    """The runner's figures (:meth:`bgservice.jobs.runner.RunnerActor.metrics`), or ``None``: not up."""

    def __init__(self, figures: Mapping[str, Any] | None) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures
        up = 0.0 if figures is None else 1.0
        yield GaugeMetricFamily("bgservice_runner_up", "1 when the job runner answered this scrape", value=up)
        if figures is None:
            return
        frames = CounterMetricFamily(
            "bgservice_frames_processed", "frames the runner's jobs wrote (since the runner started)"
        )
        frames.add_metric([], float(figures.get("frames_processed", 0)))
        yield frames
        fetched = CounterMetricFamily(
            "bgservice_fetched_bytes", "bytes the runner's jobs fetched into scratch (since it started)"
        )
        fetched.add_metric([], float(figures.get("fetched_bytes", 0)))
        yield fetched
        pool = figures.get("pool")
        if isinstance(pool, Mapping):
            yield GaugeMetricFamily(
                "bgservice_segmenter_pool_size", "Segmenters in the pool", value=float(pool.get("size", 0))
            )
            yield GaugeMetricFamily(
                "bgservice_segmenter_pool_busy",
                "Segmenters holding a lease (working on a shard)",
                value=float(pool.get("busy", 0)),
            )


def render(engine: Engine, runner: Mapping[str, Any] | None) -> bytes:
    """The scrape: the database's job figures, the runner's figures (``None``: it did not answer), then
    this process's counters."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(engine))
    registry.register(RunnerCollector(runner))
    return generate_latest(registry) + generate_latest(PROCESS)


def scrape(engine: Engine, settings: Settings) -> bytes:
    """``GET /metrics``: asks the runner for these settings (bounded wait), then :func:`render`."""
    return render(engine, runner_metrics(settings))
