"""``bgservice serve``: the whole service on this machine — a local Ray, Serve's HTTP proxy on
``--host:--port``, the API deployment and the runner — on the embedded default (SQLite and local storage
under the data dir) unless ``BGSERVICE_*`` settings say otherwise.

It prints the base URL, the ``/docs`` URL and the dev key, then logs one line per request (from the
replicas) and one per job event (from the store). Ctrl-C or SIGTERM: Serve stops taking requests, the
runner stops gracefully (unfinished jobs go back to ``queued`` without counting an attempt) and the next
``bgservice serve`` runs them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from bgservice.settings import Settings

log = logging.getLogger("bgservice")
POLL_SECONDS = 0.5


def _console_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("bgservice")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def run(settings: Settings, host: str, port: int, *, replicas: int = 1, start_runner: bool = True) -> int:
    _console_logging()
    from bgservice.api.auth import KeyRing, dev_key
    from bgservice.api.events import JobEventLog
    from bgservice.api.files import apply_endpoint, storage_root
    from bgservice.jobs.store import JobStore

    apply_endpoint(settings)
    KeyRing(settings)  # refuses to start without keys outside the embedded default (invalid_settings)
    key = dev_key(settings)
    store = JobStore.from_settings(settings)  # migrations run once, here, before any replica opens it

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions
    from ray.serve.schema import LoggingConfig

    from bgservice.api.serve import REQUEST_TIMEOUT_S, build

    started_ray = not ray.is_initialized()
    if started_ray:
        # log_to_driver: the replicas' request lines and the runner's job lines reach this console
        address = os.environ.get("RAY_ADDRESS") or "local"
        dashboard = False if address == "local" else None
        ray.init(
            address=address, include_dashboard=dashboard, log_to_driver=True, logging_level=logging.ERROR
        )
    # after ray.init, which installs its own SIGTERM handler in this process (it would kill us unclean)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    runner_started = False
    try:
        serve.start(
            http_options=HTTPOptions(host=host, port=port, request_timeout_s=REQUEST_TIMEOUT_S),
            logging_config=LoggingConfig(enable_access_log=False, log_level="WARNING"),
        )
        serve.run(build(num_replicas=replicas), name="bgservice", route_prefix="/", blocking=False)
        if start_runner:
            from bgservice.jobs.runner import ensure_runner

            ensure_runner(settings)
            runner_started = True
        base = f"http://{host}:{port}"
        print(f"studio-background is up at {base}", flush=True)
        print(f"  API docs:  {base}/docs", flush=True)
        print(f"  storage:   {storage_root(settings)}", flush=True)
        if key:
            print(f"  dev key:   {key}", flush=True)
        from bgservice.web import page_url

        print(f"  web page:  {page_url(base, key)}", flush=True)
        if not start_runner:
            print("  runner:    not started here (--no-runner): jobs stay queued", flush=True)
        events = JobEventLog(store.engine)
        while not stop.wait(POLL_SECONDS):
            try:
                events.poll()
            except Exception as exc:  # the console log never takes the service down
                log.warning("job event log: %s", exc)
        print("stopping: no new requests; unfinished jobs stay queued for the next start", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            try:
                if runner_started:
                    from bgservice.jobs.runner import stop_runner

                    stop_runner(settings, graceful=True)
            finally:
                store.close()
                if started_ray and ray.is_initialized():
                    ray.shutdown()
