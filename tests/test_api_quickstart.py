"""The README's quickstart works as printed: ``bgservice serve`` with everything by default (the data
dir under ``~/.local/share``, the dev key), then the README's curl block run by bash. The only change
made to the block is the port (the tests may not take 8000 on a shared machine)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api_server import REPO, ServeProcess
from tests.conftest import SHARED_DATA, need
from tests.outputs import inspect

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RESULT = REPO / "out" / "talking_head_api.mp4"


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- quickstart-curl[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert m, "the README lost its quickstart curl block"
    return m.group(1)


def test_readme_quickstart_curl_block(tmp_path: Path) -> None:
    need((SHARED_DATA / "videos").is_dir(), "shared test media")
    need(shutil.which("curl") is not None, "curl")
    block = readme_block()
    assert "bgservice serve" in (REPO / "README.md").read_text().split("## Command line")[0]
    home = tmp_path / "home"
    proc = ServeProcess(home / ".local" / "share" / "bgservice", home=home)
    RESULT.unlink(missing_ok=True)
    try:
        proc.start()
        assert f"dev key:   {proc.dev_key()}" in proc.output()
        script = block.replace("http://127.0.0.1:8000", proc.base)
        run = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=REPO,
            env={**proc.env, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "completed 1.0" in run.stdout
        facts = inspect(str(RESULT))
        assert facts.video_duration == pytest.approx(2.0, abs=0.1)
        assert facts.audio_codec == "aac"
    finally:
        proc.stop()
        RESULT.unlink(missing_ok=True)
