"""Property-based checks of the whole HTTP API against its own OpenAPI document (Schemathesis, fixed
seed, capped examples): the runner paused (``--no-runner``: jobs stay queued) and the rate limit raised.
No answer may be a 5xx, and every answer must match the status and schema the document declares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api_server import ServeProcess

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KEY = "schema-key-1"
SEED = 20261201
MAX_EXAMPLES = 15


def test_openapi_properties(tmp_path: Path) -> None:
    proc = ServeProcess(
        tmp_path / "data",
        env={"BGSERVICE_API_KEYS": f"st:{KEY}", "BGSERVICE_RATE_LIMIT_PER_MINUTE": "1000000"},
        args=("--no-runner",),
    )
    try:
        proc.start()
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{proc.base}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "60",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--exclude-path",  # 503 by design while the runner is paused; tested in test_api.py
            "/readyz",
            "--suppress-health-check",
            "all",
        ]
        run = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
            check=False,
        )
        report = run.stdout[-8000:] + run.stderr[-3000:]
        assert run.returncode == 0, report
        assert "passed" in run.stdout, report
    finally:
        proc.stop()
