"""The Ray Serve deployment: a thin FastAPI ingress around :func:`~bgservice.api.app.create_app`.

A replica answers HTTP and writes job records; it never runs a job's driver loop (a replica is cancelled
with its request and killed on downscale, and the tasks it launched would die with it). Jobs are run by
the runner, a detached Ray actor (:mod:`bgservice.jobs.runner`).

Limits (what a client may see from Serve's own proxy rather than from the app, as plain text, not JSON):

- ``request_timeout_s`` (:data:`REQUEST_TIMEOUT_S`, in ``http_options``): a request still unanswered
  after it -> **408** ``Request <id> timed out after …s``. Only an upload of a very large file on a slow
  link comes near it; every other route answers in milliseconds.
- ``max_ongoing_requests`` per replica (:data:`MAX_ONGOING_REQUESTS`) and ``max_queued_requests``
  (:data:`MAX_QUEUED_REQUESTS`): past both -> **503** (back pressure), with ``Retry-After`` when Serve
  gives one; a replica being replaced or no replica up yet -> **503**.
- a replica that died mid-request -> **500** with Serve's message.

Clients should retry 408, 429, 500 and 503 with backoff (submits are not idempotent: check
``GET /v2/jobs`` before re-submitting after a 500 or a timeout).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ray import serve

from bgservice.api.app import create_app
from bgservice.api.service import Service
from bgservice.api.sweeper import Sweeper
from bgservice.settings import get_settings

REQUEST_TIMEOUT_S = 300.0
MAX_ONGOING_REQUESTS = 64
MAX_QUEUED_REQUESTS = 256
REPLICA_CPUS = 0.1  # a replica mostly waits on the database; the cores go to the Segmenters


def _log_to_stderr() -> None:
    logger = logging.getLogger("bgservice")
    if not any(getattr(h, "_bgservice", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        handler._bgservice = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@serve.deployment(
    name="bgservice",
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    max_queued_requests=MAX_QUEUED_REQUESTS,
    ray_actor_options={"num_cpus": REPLICA_CPUS},
    health_check_period_s=10,
    logging_config={"enable_access_log": False},  # the app logs one line per request, with the job id
)
@serve.ingress()
class Ingress:
    """One replica: the FastAPI app, its :class:`Service` and a retention sweeper."""

    def __init__(self, start_runner: bool = False) -> None:
        _log_to_stderr()
        settings = get_settings()
        self.service = Service.from_settings(settings)
        self.sweeper = Sweeper(self.service)
        self.sweeper.start()
        from bgservice.api.webhooks import Deliverer

        self.deliverer = Deliverer(self.service)  # webhooks of ended jobs, claimed with a lease
        self.deliverer.start()
        if start_runner:
            from bgservice.jobs.runner import ensure_runner

            ensure_runner(settings)

    def __serve_build_asgi_app__(self) -> Any:
        """Serve calls this after ``__init__``: the replica's own app around its own service."""
        return create_app(self.service)

    def __del__(self) -> None:
        for worker in (getattr(self, "sweeper", None), getattr(self, "deliverer", None)):
            if worker is not None:
                worker.stop()


def build(
    num_replicas: int | str = 1, start_runner: bool = False, autoscaling: dict[str, Any] | None = None
) -> Any:
    """The Serve application: ``num_replicas`` replicas (or ``autoscaling``: an ``autoscaling_config``)."""
    options: dict[str, Any] = {}
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = int(num_replicas)
    deployment: Any = Ingress
    return deployment.options(**options).bind(start_runner=start_runner)


def app_builder(args: dict[str, Any]) -> Any:
    """For ``serve deploy serve_config.yaml`` (``import_path: bgservice.api.serve:app_builder``)."""
    return build(
        num_replicas=args.get("num_replicas", 1),
        start_runner=bool(args.get("start_runner", True)),
        autoscaling=args.get("autoscaling_config"),
    )
