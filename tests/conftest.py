"""Shared fixtures: the real test media beside the repo, scratch dirs, settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports ray: a Ray API called while this process is not connected (a job's thread
# finishing after its module's Ray was shut down) must raise, not start a hidden local Ray of its own
# from a thread that ends soon after, which kills that Ray and, a minute later, the whole test run.
# bgservice's CLI sets the same default; tests/test_ray_lifecycle.py checks the product without it.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")

from bgservice.settings import Settings

# moto S3 fixtures: s3_server (module), s3 (per test); media_factory: generated edge-case clips (session);
# postgres: postgres_server (session), postgres_url (per test), job_store_url (sqlite | postgresql)
pytest_plugins = ["tests.s3", "tests.media_factory", "tests.postgres", "tests.client_service"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, why: str) -> None:
    """Skip when a test asset is missing; under CI=true a missing asset is a failure, not a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need((SHARED_DATA / "videos").is_dir(), f"test media not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def videos(shared_data: Path) -> Path:
    return shared_data / "videos"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(tmp_dir=tmp_path / "scratch")


@pytest.fixture(scope="module", autouse=True)
def _no_ray_connection_outlives_its_module() -> Iterator[None]:
    """A module that leaves this process connected to a Ray (an in-process ``bgservice process --engine
    ray``, a fixture that failed half-way) must not take the rest of the run with it: if that Ray goes,
    Ray ends the driver -- the whole pytest process -- with exit 1 about a minute later."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
