"""Helpers shared by the Ray DAG tests (one real local Ray per test module, real clips, real model)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bgservice.settings import Settings
from tests.conftest import REPO
from tests.outputs import frames

TALKING_HEAD = "talking_head_cremad_1001_DFA_ANG_XX.flv"  # 480x360, 29.97 fps, 2.2 s, MP3 audio


@contextlib.contextmanager
def local_ray(num_cpus: int, **kwargs: Any) -> Iterator[None]:
    """One local Ray for a test module; the pool (a detached actor) goes with it."""
    import ray

    from bgservice.engines.ray.pool import shutdown_pool

    ray.init(
        address="local",  # a fresh Ray for this module, never a cluster another process left running
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        **kwargs,
    )
    try:
        yield
    finally:
        try:
            shutdown_pool()
        finally:
            # always disconnect: a driver left connected to a Ray whose GCS is gone exits the whole test
            # run (exit 1, no summary) about a minute later
            ray.shutdown()


def dag_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"tmp_dir": tmp / "scratch", "pool_min": 2, "pool_max": 2}
    values.update(overrides)
    return Settings(**values)


def worst_frame_diff(a: str, b: str) -> tuple[float, int, int]:
    """(worst frame's mean absolute pixel difference, frames in a, frames in b), streamed."""
    worst = 0.0
    na = nb = 0
    ib, it_b = None, frames(b)
    for fa in frames(a):
        na += 1
        ib = next(it_b, None)
        if ib is None:
            continue
        nb += 1
        worst = max(worst, float(np.abs(fa.astype(np.float32) - ib.astype(np.float32)).mean()))
    nb += sum(1 for _ in it_b)
    return worst, na, nb


def scratch_files(settings: Settings) -> list[Path]:
    base = settings.tmp_dir
    return sorted(base.rglob("*")) if base is not None and base.exists() else []
