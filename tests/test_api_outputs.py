"""Issue 13's output formats and backgrounds and issue 11's quality through the service's entry points:
the HTTP submit body, :class:`bgservice.client.Client` and ``bgservice submit``, against one real
``bgservice serve`` (tests/client_service.py). Short trims (0.5 s of a 320x240 clip) keep the jobs cheap;
what each format's pixels look like is tests/test_outputs.py's business."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from bgservice.client import Client, Job
from tests.client_service import LiveService
from tests.media_factory import MediaFactory
from tests.outputs import inspect
from tests.test_submit_cli import env_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOB_SECONDS = 300.0
SUBMIT = "/v1/proxy/studio-background"
URL = "https://example.com/a.mp4"


def webm_has_alpha(path: Path) -> bool:
    """VP9 alpha: the WebM track says alpha_mode=1 and libvpx decodes yuva420p frames."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE")) != "1":
            return False
        decoder = av.codec.CodecContext.create("libvpx-vp9", "r")
        first = next(f for p in c.demux(stream) for f in decoder.decode(p))
        return bool(first.format.name == "yuva420p")


def wait_job(c: Client, job_id: str) -> Job:
    job = c.wait(job_id, timeout=JOB_SECONDS)
    assert job.status == "completed", job.error
    assert job.result_data is not None
    return job


def test_formats_and_backgrounds_over_http(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path
) -> None:
    """A transparent webm, a blurred background and an uploaded background video, submitted together."""
    clip = media_factory.basic()  # 320x240, 2 s, H.264 + AAC
    with Client(live_service.base, live_service.key("outputs")) as c:
        video = c.upload(clip).asset_id
        bg_video = c.upload(media_factory.patches()).asset_id
        webm = c.submit(video, end=0.5, output_format="webm", quality="fast")
        blur = c.submit(video, start=0.5, end=1.0, background_blur=30)
        moving = c.submit(video, end=0.5, background_video=bg_video, fit="cover")

        job = wait_job(c, webm.id)
        result = job.result_data
        assert result is not None
        assert result.content_type == "video/webm" and result.output_format == "webm"
        assert result.key == f"{result.folder_id}/{webm.id}.webm"
        assert job.request["outputFormat"] == "webm" and job.request["quality"] == "fast"
        assert result.usage.billed_seconds == pytest.approx(0.5)  # billing does not look at the format
        out = c.download(job, tmp_path / f"out{result.extension}")
        assert out.suffix == ".webm"
        facts = inspect(str(out))
        assert (facts.codec, facts.width, facts.height) == ("vp9", 320, 240)
        assert webm_has_alpha(out)
        assert result.url is not None
        with httpx.Client(base_url=live_service.base) as raw:  # the signed file route serves its type
            head = raw.get(result.url, headers={"Range": "bytes=0-15"})
        assert head.status_code == 206 and head.headers["content-type"] == "video/webm"

        job = wait_job(c, blur.id)
        assert job.result_data is not None and job.result_data.content_type == "video/mp4"
        assert job.result_data.key.endswith(f"/{blur.id}.mp4")
        assert job.request == {
            "videoUrl": video, "back_ground": None, "imageUrl": None, "backgroundBlur": 30,
            "start": 0.5, "end": 1.0,
        }  # fmt: skip
        blurred = c.download(job, tmp_path / "blur.mp4")
        assert inspect(str(blurred)).video_duration == pytest.approx(0.5, abs=0.1)

        job = wait_job(c, moving.id)
        assert job.request["backgroundVideoUrl"] == bg_video and job.request["fit"] == "cover"
        moved = c.download(job, tmp_path / "moving.mp4")
        facts = inspect(str(moved))
        assert (facts.width, facts.height) == (320, 240)
        assert facts.video_duration == pytest.approx(0.5, abs=0.1)


def test_quality_is_accepted_and_recorded(live_service: LiveService, media_factory: MediaFactory) -> None:
    with Client(live_service.base, live_service.key("outputs")) as c:
        video = c.upload(media_factory.basic()).asset_id
        # start past the 2 s clip: each job fails at its probe (invalid_trim), before any model runs
        for quality in ("best", "fast"):
            job = c.wait(
                c.submit(video, start=10, quality=quality).id, timeout=JOB_SECONDS, raise_on_failure=False
            )
            assert job.status == "failed" and job.error is not None
            assert job.error.code == "invalid_trim"
            assert job.request["quality"] == quality
        done = wait_job(c, c.submit(video, end=0.3, quality="fast").id)
        assert done.result_data is not None
        if done.result_data.quality is None:
            pytest.skip("this engine does not record the quality that ran yet (issue 11, branch matte)")
        assert done.result_data.quality == "fast"


BAD = [
    ({"back_ground": "#fff", "backgroundBlur": 10}, "invalid_background", "back_ground"),
    ({"imageUrl": URL, "backgroundVideoUrl": URL}, "invalid_background", "imageUrl"),
    ({"backgroundVideoUrl": URL, "backgroundBlur": 5}, "invalid_background", "backgroundVideoUrl"),
    ({"fit": "cover"}, "invalid_background", "fit"),
    ({"fit": "contain", "back_ground": "#123"}, "invalid_background", "fit"),
    ({"fit": "cover", "backgroundBlur": 5}, "invalid_background", "fit"),
    ({"outputFormat": "matte", "back_ground": "#123"}, "invalid_background", "outputFormat"),
    ({"outputFormat": "matte", "backgroundBlur": 20}, "invalid_background", "outputFormat"),
    ({"outputFormat": "gif"}, "invalid_request", "outputFormat"),
    ({"outputFormat": 4}, "invalid_request", "outputFormat"),
    ({"backgroundBlur": 0}, "invalid_background", "backgroundBlur"),
    ({"backgroundBlur": 101}, "invalid_background", "backgroundBlur"),
    ({"backgroundBlur": "20"}, "invalid_request", "backgroundBlur"),
    ({"backgroundBlur": 2.5}, "invalid_request", "backgroundBlur"),
    ({"fit": "tile", "imageUrl": URL}, "invalid_request", "fit"),
    ({"quality": "ultra"}, "invalid_request", "quality"),
    ({"quality": 1}, "invalid_request", "quality"),
    ({"backgroundVideoUrl": "http://10.0.0.7/bg.mp4"}, "url_not_allowed", "backgroundVideoUrl"),
    ({"backgroundVideoUrl": "http://127.0.0.1:1/bg.mp4"}, "url_not_allowed", "backgroundVideoUrl"),
    ({"backgroundVideoUrl": "file:///etc/passwd"}, "url_not_allowed", "backgroundVideoUrl"),
    ({"backgroundVideoUrl": "asset_000000000000000000000000"}, "invalid_asset", "backgroundVideoUrl"),
]


@pytest.mark.parametrize(
    ("extra", "code", "field"), BAD, ids=[f"{i}-{c}-{f}" for i, (_, c, f) in enumerate(BAD)]
)
def test_submit_refused(live_service: LiveService, extra: dict[str, Any], code: str, field: str) -> None:
    with httpx.Client(base_url=live_service.base) as raw:
        r = raw.post(
            SUBMIT,
            json={"videoUrl": URL, **extra},
            headers={"Authorization": f"Bearer {live_service.key('refused')}"},
        )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["code"], err.get("field")) == (code, field), err
    assert err["message"]


def test_bgservice_submit_format_webm(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path
) -> None:
    """``bgservice submit --format webm`` without -o saves INPUT-bg.webm, transparent."""
    clip = media_factory.basic()
    run = subprocess.run(
        [sys.executable, "-m", "bgservice", "submit", str(clip), "--format", "webm", "--end", "0.5"],
        env=env_for(live_service, live_service.key("outputs")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=JOB_SECONDS,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / f"{clip.stem}-bg.webm"
    assert out.is_file(), sorted(p.name for p in tmp_path.iterdir())
    assert webm_has_alpha(out)
    assert inspect(str(out)).video_duration == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--format", "gif"], "invalid_output"),
        (["--format", "webm", "-o", "x.mp4"], "invalid_output"),
        (["--format", "matte", "--background-blur", "5"], "invalid_background"),
        (["--quality", "ultra"], "invalid_request"),
    ],
)
def test_bgservice_submit_refuses_before_uploading(
    live_service: LiveService, media_factory: MediaFactory, tmp_path: Path, args: list[str], code: str
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bgservice", "submit", str(media_factory.basic()), *args],
        env=env_for(live_service, live_service.key("refused")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert code in run.stderr and "Traceback" not in run.stderr
