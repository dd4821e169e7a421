"""The HTTP service's overhead: ``GET /v2/jobs/{id}`` latency while jobs run, and submit-to-running.

    .venv/bin/python -m benchmarks.service [--jobs 50] [--keys 5] [--replicas 1] [--clip PATH]

Starts ``bgservice serve`` (a local Ray, Serve, the runner, SQLite under a temp dir) on a free port,
uploads a clip (default: a generated 2 s 320x240 clip with audio) once per key, then

- submit-to-running on an idle service: 5 jobs one at a time, each polled every 20 ms;
- under load: submits ``--jobs`` jobs (0.4 s each, spread over ``--keys`` keys) while a second thread
  polls every job in turn until all have ended. Every poll is a ``GET`` latency sample; a job's
  submit-to-running latency is the time from its 202 to the first poll that sees it ``running`` (at
  most one polling round late), queueing behind the other jobs included.

Prints p50/p99/max and the wall time. Numbers, not assertions: the machine's other load shows in them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.serve_process import ServeProcess


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _clip(scratch: Path) -> Path:
    from bgservice.media.ffmpeg import ClipSpec, synth_clip

    path = scratch / "clip.mp4"
    synth_clip(str(path), ClipSpec(fmt="mp4"))
    return path


def _idle_latency(client: httpx.Client, asset: str, n: int) -> list[float]:
    """Submit-to-running with nothing else queued: one job at a time, polled every 20 ms."""
    out: list[float] = []
    for _ in range(n):
        t0 = time.monotonic()
        job_id = client.post("/v1/proxy/studio-background", json={"videoUrl": asset, "end": 0.4}).json()
        job_id = job_id["job"]["id"]
        while client.get(f"/v2/jobs/{job_id}").json()["status"] == "queued":
            time.sleep(0.02)
        out.append(time.monotonic() - t0)
        while client.get(f"/v2/jobs/{job_id}").json()["status"] == "running":
            time.sleep(0.1)
    return out


def _load(
    clients: dict[str, httpx.Client], assets: dict[str, str], keys: list[str], jobs: int
) -> tuple[list[float], dict[str, float], dict[str, str], float]:
    """Submit ``jobs`` jobs while a second thread polls every known job in turn until all have ended:
    (GET latencies in ms, submit-to-running per job in s, final states, wall seconds)."""
    submitted: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()
    done_submitting = threading.Event()
    get_ms: list[float] = []
    to_running: dict[str, float] = {}
    final: dict[str, str] = {}

    def poll() -> None:
        while True:
            with lock:
                pending = [j for j in submitted if j not in final]
            if not pending:
                if done_submitting.is_set():
                    return
                time.sleep(0.01)
                continue
            for job_id in pending:
                k, t_submit = submitted[job_id]
                t0 = time.monotonic()
                job = clients[k].get(f"/v2/jobs/{job_id}").json()
                t1 = time.monotonic()
                get_ms.append((t1 - t0) * 1000)
                if job["status"] != "queued" and job_id not in to_running:
                    to_running[job_id] = t1 - t_submit
                if job["status"] in ("completed", "failed", "cancelled"):
                    final[job_id] = job["status"]

    poller = threading.Thread(target=poll)
    started = time.monotonic()
    poller.start()
    for i in range(jobs):
        k = keys[i % len(keys)]
        r = clients[k].post("/v1/proxy/studio-background", json={"videoUrl": assets[k], "end": 0.4})
        with lock:
            submitted[r.json()["job"]["id"]] = (k, time.monotonic())
    done_submitting.set()
    poller.join()
    return get_ms, to_running, final, time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--clip", type=Path)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bgservice-bench-") as tmp:
        scratch = Path(tmp)
        clip = args.clip or _clip(scratch)
        keys = [f"bench-key-{i}" for i in range(args.keys)]
        service = ServeProcess(
            scratch / "data",
            env={
                "BGSERVICE_API_KEYS": ",".join(f"k{i}:{k}" for i, k in enumerate(keys)),
                "BGSERVICE_RATE_LIMIT_PER_MINUTE": "100000",
            },
            args=("--replicas", str(args.replicas)),
        )
        try:
            service.start()
            base = service.base
            clients = {k: httpx.Client(base_url=base, headers={"X-API-Key": k}, timeout=60) for k in keys}
            assets = {}
            for k, c in clients.items():
                with open(clip, "rb") as fh:
                    assets[k] = c.post("/v1/assets", files={"file": ("clip.mp4", fh)}).json()["asset_id"]
            idle = _idle_latency(clients[keys[0]], assets[keys[0]], 5)
            get_ms, to_running, final, wall = _load(clients, assets, keys, args.jobs)
            print(f"{args.jobs} jobs from {len(keys)} keys, {args.replicas} replica(s): {wall:.1f} s wall")
            outcomes = {s: list(final.values()).count(s) for s in sorted(set(final.values()))}
            print(f"  outcomes: {outcomes}")
            print(
                f"  GET /v2/jobs/{{id}} while jobs run ({len(get_ms)} requests): "
                f"p50 {_pct(get_ms, 0.5):.1f} ms, p99 {_pct(get_ms, 0.99):.1f} ms, max {max(get_ms):.1f} ms"
            )
            print(
                f"  submit -> running, idle service ({len(idle)} jobs one at a time): "
                f"p50 {_pct(idle, 0.5):.2f} s, max {max(idle):.2f} s"
            )
            lat = list(to_running.values())
            print(
                f"  submit -> running under the 50-job burst: p50 {_pct(lat, 0.5):.2f} s, "
                f"p99 {_pct(lat, 0.99):.2f} s, mean {statistics.mean(lat):.2f} s "
                "(queueing included: 2 jobs run at once on 2 cores)"
            )
            return 0
        finally:
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
