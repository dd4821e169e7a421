"""How a process's connection to a local Ray begins and ends, on a real local Ray in a child process.

Two ways a driver could lose its Ray without asking, both of which end the driver (exit 1, no message)
a minute after Ray's GCS is gone:

- a local Ray started from a thread that then ends (a job's thread in an in-process runner): Linux's
  ``PR_SET_PDEATHSIG``, which Ray sets on its processes, fires when the *thread* that started them ends;
- a Ray call made by one of our background threads after ``ray.shutdown()`` (the warm decoder/encoder
  pool's spare and reaper threads): Ray's auto-init starts a new local Ray from that short-lived thread.

The child runs without ``RAY_ENABLE_AUTO_CONNECT=0`` (which the test suite and the CLI set), so it sees
what a Python user of the library would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.ray

SCRIPT = r"""
import json, threading, time

import ray

from bgservice.engines.ray import iopool
from bgservice.engines.ray.dag import ensure_ray

report = {}

# 1. a local Ray started from a thread outlives that thread
t = threading.Thread(target=ensure_ray)
t.start()
t.join()
time.sleep(3)  # PR_SET_PDEATHSIG would have killed the GCS and raylet by now
node = ray._private.worker._global_node
report["ray_processes_alive"] = all(
    info.process.poll() is None for infos in node.all_processes.values() for info in infos
)
report["round_trip"] = ray.get(ray.remote(lambda: 41).remote(), timeout=120) + 1

# 2. after ray.shutdown(), the pool's background threads do not start another Ray
iopool.WARM_IDLE_SECONDS = 2.0  # the reaper looks every 0.5 s
node_id = ray.get_runtime_context().get_node_id()
iopool.IO_POOL.warm(node_id, 1)  # an idle pair, and the reaper thread watching it
spare_pool = iopool.IOPool()
spare_pool.keep_spare(node_id)  # a spare pair starting in the background
ray.shutdown()
time.sleep(6)
report["initialized_after_shutdown"] = ray.is_initialized()
report["threads"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("bgservice-"))
print("REPORT " + json.dumps(report), flush=True)
"""


def test_a_local_ray_outlives_the_thread_that_started_it_and_shutdown_is_final() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_AUTO_CONNECT")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=400
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    assert report["ray_processes_alive"] is True
    assert report["round_trip"] == 42
    assert report["initialized_after_shutdown"] is False, report
    # the only one of ours left is the thread that owned the local Ray (it lives as long as the process)
    assert report["threads"] == ["bgservice-ray-owner"], report
