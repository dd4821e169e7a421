"""Installed without the ``cpu`` / ``gpu`` extra (no onnxruntime), every command says so in one line.

The missing package is simulated: a ``sys.meta_path`` finder that refuses ``onnxruntime`` runs before the
command in a fresh interpreter (what ``pip install .`` without an extra leaves).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BLOCKER = """
import runpy, sys
class _NoOnnxRuntime:
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoOnnxRuntime())
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, module, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("bgservice.cli", ["process", "in.mp4", "-o", "OUT"]),
        ("bgservice.batch", ["MANIFEST"]),
        ("bgservice.jobs.runner", []),
        ("bgservice.cli", ["serve", "--port", "0"]),
    ],
)
def test_each_command_names_the_extra_to_install(module: str, args: list[str], tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"videoUrl": "/v.mp4", "output": "/tmp/o.mp4"}\n')
    args = [str(manifest) if a == "MANIFEST" else str(tmp_path / "o.mp4") if a == "OUT" else a for a in args]
    proc = _run(module, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("error: invalid_settings: onnxruntime is not installed")
    assert "[cpu]" in lines[0] and "[gpu]" in lines[0]
    assert not (tmp_path / "o.mp4").exists()


def test_the_version_needs_no_extra() -> None:
    proc = _run("bgservice.cli", "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("bgservice ")
