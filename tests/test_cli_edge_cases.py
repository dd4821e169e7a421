"""`bgservice process` on generated edge cases: rotation, VFR, 23.976, odd size, no audio, trim, codecs.

Each test runs the real CLI entry point in this process (model loaded once) and reads the output back
with PyAV, checking what a player would show: size, frame count, every frame's timestamp, audio.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bgservice.cli import main
from tests.media_factory import MediaFactory
from tests.outputs import Facts, frames, inspect


def process(src: Path, out: Path, *extra: str) -> Facts:
    code = main(["process", str(src), "-o", str(out), "--engine", "local", *extra])
    assert code == 0
    return inspect(str(out))


def test_rotation_is_applied(media_factory: MediaFactory, tmp_path: Path) -> None:
    src = media_factory.rotated(90)
    facts = process(src, tmp_path / "rot.mp4")
    assert (facts.width, facts.height) == (240, 320)  # stored 320x240, displayed portrait
    with av.open(str(tmp_path / "rot.mp4")) as c:
        first = next(c.decode(video=0))
    assert "DISPLAYMATRIX" not in first.side_data  # upright pixels, no matrix left


def test_variable_frame_rate_keeps_every_timestamp(media_factory: MediaFactory, tmp_path: Path) -> None:
    src = media_factory.vfr()
    facts = process(src, tmp_path / "vfr.mp4")
    source = inspect(str(src))
    assert facts.frames == source.frames
    first_in, first_out = source.pts_seconds[0], facts.pts_seconds[0]
    drift = np.abs(
        (np.array(facts.pts_seconds) - first_out) - (np.array(source.pts_seconds) - first_in)
    ).max()
    assert drift <= 0.001, f"timestamps moved by up to {drift * 1000:.2f} ms"
    gaps = np.diff(facts.pts_seconds)
    assert gaps.max() > 2.5 * gaps.min()  # really variable: the gaps survived
    assert facts.audio_duration is not None
    assert abs(facts.audio_duration - facts.video_duration) <= 1 / 30
    assert abs(facts.video_duration - source.video_duration) <= 1e-3


def test_ntsc_film_rate_and_count(media_factory: MediaFactory, tmp_path: Path) -> None:
    facts = process(media_factory.ntsc_film(), tmp_path / "film.mp4")
    assert facts.frames == 48
    assert facts.avg_rate is not None and abs(float(facts.avg_rate) - 24000 / 1001) < 1e-3
    assert abs(facts.video_duration - 48 * 1001 / 24000) <= 1e-3


def test_odd_size_loses_at_most_one_pixel(media_factory: MediaFactory, tmp_path: Path) -> None:
    facts = process(media_factory.odd_size(), tmp_path / "odd.mp4")
    assert (facts.width, facts.height) == (320, 240)
    assert facts.pix_fmt == "yuv420p"
    assert facts.audio_codec is None


def test_no_audio_gives_video_only_mp4(media_factory: MediaFactory, tmp_path: Path) -> None:
    facts = process(media_factory.no_audio(), tmp_path / "silent.mp4")
    assert facts.audio_codec is None
    assert facts.frames == 50


def test_trim_on_variable_frame_rate(media_factory: MediaFactory, tmp_path: Path) -> None:
    src = media_factory.vfr()
    source = inspect(str(src))
    t0 = source.pts_seconds[0]
    start, end = 0.7, 1.9
    expected = sum(1 for t in source.pts_seconds if start - 1e-6 <= t - t0 < end - 1e-6)
    facts = process(src, tmp_path / "vfr-trim.mp4", "--start", str(start), "--end", str(end))
    assert facts.frames == expected
    assert facts.audio_duration is not None and abs(facts.audio_duration - (end - start)) <= 0.05


@pytest.mark.parametrize("kind", ["hevc10", "vp9", "mpeg4"])
def test_other_codecs_decode_to_8bit_h264(kind: str, media_factory: MediaFactory, tmp_path: Path) -> None:
    src = getattr(media_factory, kind)()
    source = inspect(str(src))
    facts = process(src, tmp_path / f"{kind}.mp4")
    assert (facts.codec, facts.pix_fmt) == ("h264", "yuv420p")
    assert (facts.width, facts.height) == (source.width, source.height)
    assert facts.frames == source.frames
    assert facts.audio_codec == "aac"


def test_frames_without_a_person_are_all_background(media_factory: MediaFactory, tmp_path: Path) -> None:
    out = tmp_path / "empty-scene.mp4"
    process(media_factory.basic(), out, "--background", "#00FF00", "--end", "0.5")
    for frame in frames(str(out)):
        green = frame.reshape(-1, 3).astype(np.int16)
        share = ((green[:, 1] > 200) & (green[:, 0] < 60) & (green[:, 2] < 60)).mean()
        assert share > 0.97, f"only {share:.1%} of a person-free frame became background"
