"""Run ``bgservice serve`` as a real subprocess on 127.0.0.1 (the API tests, the service benchmarks).

:class:`ServeProcess` starts it on a free port with its own ``BGSERVICE_DATA_DIR``, waits (polling, with
a deadline) until ``/readyz`` answers 200 (or ``/healthz`` with ``--no-runner``), keeps its console output
in a file, and stops it with SIGTERM (or SIGKILL for the crash tests). The process gets its own session,
so what it started (a local Ray) can be ended with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx

REPO = Path(__file__).resolve().parents[1]
START_SECONDS = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class ServeProcess:
    #: settings every instance starts with, under the ``env`` given to it (tests/api_server.py: a small pool)
    BASE_ENV: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        port: int | None = None,
        home: Path | None = None,
    ) -> None:
        """``home``: run with ``HOME=home`` and no ``BGSERVICE_DATA_DIR`` / ``XDG_DATA_HOME``, so the data
        dir is the default ``~/.local/share/bgservice`` (``data_dir`` must then be that directory)."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
            "BGSERVICE_DATA_DIR": str(data_dir),
            "BGSERVICE_TMP_DIR": str(data_dir / "tmp"),
            "RAY_ADDRESS": "",
            **self.BASE_ENV,
            **(env or {}),
        }
        if home is not None:
            self.env["HOME"] = str(home)
            self.env.pop("BGSERVICE_DATA_DIR", None)
            self.env.pop("XDG_DATA_HOME", None)
        self.log_path = data_dir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # --- life ----------------------------------------------------------------------------------------
    def start(self, *, ready: bool = True) -> ServeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgservice", "serve", "--port", str(self.port), *self.args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        path = "/readyz" if ready and "--no-runner" not in self.args else "/healthz"
        wait_for(
            lambda: self._ok(path), START_SECONDS, f"{path} of {self.base}\n{self.output()[-3000:]}", 0.5
        )
        # the banner (base URL, docs, dev key) is printed once the runner is up, which may be a moment
        # after /readyz already sees it
        wait_for(lambda: "studio-background is up at" in self.output(), 60, "the start-up banner", 0.2)
        return self

    def _ok(self, path: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"bgservice serve exited {self.proc.returncode}:\n{self.output()[-4000:]}")
        try:
            return httpx.get(self.base + path, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM and wait; what is left of its session is killed."""
        if self.proc is None:
            return None
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            code = self.proc.returncode
        self._kill_session()
        return code

    def kill(self) -> None:
        """SIGKILL the serve process only (a crash), then wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def _kill_session(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of each live process in its session (serve, Ray, the actors), by pid."""
        out: dict[int, float] = {}
        if self.proc is None:
            return out
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            # fields[0] is the state (stat field 3): session is field 6, utime 14, stime 15
            if int(fields[3]) == self.proc.pid:
                out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- HTTP ----------------------------------------------------------------------------------------
    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60, **kwargs)

    def dev_key(self) -> str:
        return (self.data_dir / "dev-api-key").read_text().strip()
