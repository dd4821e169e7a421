"""``python -m bgservice.batch``: a manifest with good and bad lines, run against a real local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgservice.batch import default_report_path, parse_line
from bgservice.errors import InvalidBackground, InvalidManifest, InvalidRequest, InvalidTrim
from bgservice.media.ffmpeg import ClipSpec, synth_clip
from tests.dagtools import REPO, TALKING_HEAD, local_ray
from tests.outputs import inspect


def _batch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgservice.batch", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lines_are_validated_like_every_other_entry_point(tmp_path: Path) -> None:
    out = str(tmp_path / "o.mp4")
    spec = parse_line(
        json.dumps({"videoUrl": "/v.mp4", "back_ground": "#abc", "start": "0:01", "end": 3, "output": out})
    )
    assert (spec.input_url, spec.start, spec.end, spec.background.colour) == (
        "/v.mp4",
        1.0,
        3.0,
        (170, 187, 204),
    )
    assert parse_line(
        json.dumps({"videoUrl": "s3://b/v.mp4", "imageUrl": "s3://b/bg.png", "output": "s3://b/o.mp4"})
    )
    cases = [
        ("{not json", InvalidManifest),
        ("[1, 2]", InvalidManifest),
        (json.dumps({"output": out}), InvalidManifest),
        (json.dumps({"videoUrl": "/v.mp4", "output": "relative.mp4"}), InvalidManifest),
        (json.dumps({"videoUrl": "/v.mp4", "output": out, "colour": "#fff"}), InvalidManifest),
        (json.dumps({"videoUrl": "/v.mp4", "output": out, "back_ground": "blue"}), InvalidBackground),
        (
            json.dumps({"videoUrl": "/v.mp4", "output": out, "back_ground": "#fff", "imageUrl": "/i.png"}),
            InvalidBackground,
        ),
        (json.dumps({"videoUrl": "/v.mp4", "output": out, "start": "-3"}), InvalidTrim),
    ]
    for raw, error in cases:
        with pytest.raises(error):
            parse_line(raw)
    assert parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out, "quality": "best"})).quality == "best"
    assert parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out})).quality is None
    for bad in ("ultra", 1):
        with pytest.raises(InvalidRequest, match="quality"):
            parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out, "quality": bad}))
    assert default_report_path("/x/jobs.jsonl") == "/x/jobs.report.jsonl"
    assert default_report_path("s3://b/m/jobs.jsonl") == "s3://b/m/jobs.report.jsonl"


def test_unreadable_manifest_exits_2(tmp_path: Path) -> None:
    missing = _batch(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: invalid_manifest:")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert _batch(str(binary)).returncode == 2



def test_a_manifest_on_an_unreachable_store_is_fetch_failed_exit_1(tmp_path: Path) -> None:
    """Not an internal error with a traceback: the store did not answer (a retry may succeed)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    down = _batch("s3://jobs/manifest.jsonl", env=env)
    assert down.returncode == 1, down.stderr
    assert down.stderr.startswith("error: fetch_failed: cannot fetch the manifest s3://jobs/manifest.jsonl")
    assert "Traceback" not in down.stderr


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    import ray

    with local_ray(num_cpus=2):
        yield str(ray.get_runtime_context().gcs_address)


@pytest.mark.ray
def test_manifest_with_one_bad_line_runs_the_rest_and_exits_1(
    ray_address: str, shared_data: Path, tmp_path: Path
) -> None:
    clip = synth_clip(str(tmp_path / "clip.mp4"), ClipSpec(width=320, height=240, duration=1))
    head = str(shared_data / "videos" / TALKING_HEAD)
    manifest = tmp_path / "jobs.jsonl"
    lines = [
        {
            "videoUrl": head,
            "back_ground": "#1E90FF",
            "start": "0.5",
            "end": "1.5",
            "output": str(tmp_path / "a.mp4"),
        },
        {"videoUrl": clip, "back_ground": "not-a-colour", "output": str(tmp_path / "b.mp4")},
        {"videoUrl": clip, "output": str(tmp_path / "out" / "c.mp4")},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")

    proc = _batch(str(manifest), env={"RAY_ADDRESS": ray_address})
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = [json.loads(row) for row in Path(default_report_path(str(manifest))).read_text().splitlines()]
    assert [(r["line"], r["status"], r["error_code"]) for r in report] == [
        (1, "done", None),
        (2, "failed", "invalid_background"),
        (3, "done", None),
    ]
    assert report[0]["duration_seconds"] == pytest.approx(1.0, abs=0.05)
    assert report[0]["quality"] == "fast"  # BGSERVICE_QUALITY=auto on a CPU pool
    assert report[2]["duration_seconds"] == pytest.approx(1.0, abs=0.05)
    assert inspect(str(tmp_path / "a.mp4")).frames == 30
    assert inspect(str(tmp_path / "out" / "c.mp4")).frames == 25
    assert not (tmp_path / "b.mp4").exists()
    assert "invalid_background" in proc.stdout and "2/3 done" in proc.stdout

    # an explicit report path, and every line good: exit 0
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(lines[2]) + "\n")
    proc = _batch(
        str(good), "--report", str(tmp_path / "r" / "good-report.jsonl"), env={"RAY_ADDRESS": ray_address}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "good-report.jsonl").read_text())["status"] == "done"
