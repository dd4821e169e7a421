"""A real PostgreSQL server for tests: Debian's binaries, one server per session on 127.0.0.1.

Fixtures (a pytest plugin, loaded by tests/conftest.py):

- ``postgres_server`` (session): starts ``initdb`` + ``pg_ctl`` in a temporary directory on a free port
  (as the ``postgres`` user through ``runuser`` when the tests run as root), yields the server's base URL
  ``postgresql+psycopg://postgres@127.0.0.1:PORT``, stops the server at the end. Skips when the binaries
  are missing (``apt-get install postgresql``), fails under ``CI=true``.
- ``postgres_url`` (per test): a fresh, empty database on that server; yields its URL, drops it after.
- ``job_store_url`` (per test, parametrized ``sqlite`` / ``postgresql``): a URL for a fresh job store,
  a SQLite file under ``tmp_path`` or a fresh PostgreSQL database.
- ``job_store`` (per test, parametrized the same way): an open :class:`~bgservice.jobs.store.JobStore`
  on ``job_store_url``, closed after the test.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import need

if TYPE_CHECKING:
    from bgservice.jobs.store import JobStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bindir() -> Path | None:
    """Debian's ``/usr/lib/postgresql/<major>/bin`` (the newest), else ``initdb`` on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """Root may not run the server: drop to the ``postgres`` user with ``runuser``."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    bindir = postgres_bindir()
    need(bindir is not None, "PostgreSQL binaries not found (apt-get install postgresql)")
    assert bindir is not None
    if os.geteuid() == 0:
        need(shutil.which("runuser") is not None, "runuser not found (util-linux)")
    root = Path(tempfile.mkdtemp(prefix="bgservice-pg-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    root.chmod(0o700)
    port = _free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\n{detail.decode(errors='replace')}\n{server_log}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _admin(server: str, sql: str) -> None:
    import psycopg

    dsn = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards (its connections closed by force)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    _admin(postgres_server, f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_server}/{name}"
    finally:
        _admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def job_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for a fresh job store: a SQLite file under ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def job_store(job_store_url: str) -> Iterator[JobStore]:
    """An open job store on ``job_store_url`` (SQLite, then PostgreSQL), closed after the test."""
    from bgservice.jobs.store import JobStore

    store = JobStore(job_store_url)
    try:
        yield store
    finally:
        store.close()
