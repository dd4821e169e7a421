"""Every ffmpeg command line of the project lives here.

Commands are built with ffmpeg-python and run with the ffmpeg binary shipped by imageio-ffmpeg
(``imageio_ffmpeg.get_ffmpeg_exe()``), so a fresh machine needs no system ffmpeg. Inputs are always local
files, handed to ffmpeg as ``file:<absolute path>`` so that no name is ever read as a protocol or an option,
opened with :func:`bgservice.media.container.ffmpeg_input_options` (``protocol_whitelist=file`` and no
playlist / stream-description demuxer: no input can make ffmpeg read another file), and with the demuxer
the probe found (``-f``) so ffmpeg does not guess again.

* :func:`finalize` -- the last stage of a job: the encoded video (copied) + the first audio track of the
  source, trimmed to the job's window, into the output's container: a ``+faststart`` MP4 (AAC), a WebM
  (Opus) or a ``+faststart`` QuickTime MOV (AAC copied, else 16-bit PCM).
* :func:`synth_clip` -- the command that generates test clips (testsrc2 / smptebars / a still image,
  sine audio, any codec, rotation metadata, variable frame rate); used by ``tests/media_factory.py``.

Errors from ffmpeg become :class:`~bgservice.errors.EncodeFailed` carrying the last lines of its stderr.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ffmpeg
import imageio_ffmpeg
import numpy as np

from bgservice.errors import EncodeFailed
from bgservice.media.container import ffmpeg_input_options
from bgservice.media.timing import first_frame_time
from bgservice.media.types import TrimWindow, VideoInfo

AUDIO_BITRATE = "192k"
OPUS_BITRATE = "128k"
# the demuxer that reads back each container of an encoded video-only file (named: no probing)
_DEMUXERS = {"mp4": "mp4", "mov": "mov", "webm": "matroska"}
_STDERR_LINES = 12


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary from the imageio-ffmpeg wheel."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def file_arg(path: str) -> str:
    """The name under which ffmpeg gets a local file: ``file:`` + absolute path (never a protocol/option)."""
    return "file:" + os.path.abspath(path)


def run(stream: Any, what: str) -> bytes:
    """Run an ffmpeg-python stream spec and return its stdout; on failure raise EncodeFailed with the
    last stderr lines."""
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *ffmpeg.get_args(stream)]
    try:
        proc = subprocess.run(args, capture_output=True, check=False)
    except OSError as exc:  # binary missing or not executable
        raise EncodeFailed(f"{what}: cannot run ffmpeg: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-_STDERR_LINES:]
        detail = " | ".join(tail) or f"exit status {proc.returncode}"
        raise EncodeFailed(f"{what}: ffmpeg failed: {detail}")
    return proc.stdout


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.6f}"


def finalize(
    video_only: str,
    source: str,
    info: VideoInfo,
    window: TrimWindow,
    out_path: str,
    *,
    container: str = "mp4",
    alpha: bool = False,
) -> None:
    """Mux the encoded video (copied) with the source's first audio track, trimmed to ``window``, into
    ``container`` (``mp4``, ``webm`` or ``mov``).

    Audio/video alignment: the video written by :class:`~bgservice.media.encode.VideoWriter` starts with
    the first frame of the window at t=0 and its last frame lasts until ``window.end``. The audio is cut
    from the same source instant (the first window frame's time, which is ``window.start`` rounded up to
    a frame) to ``window.end``, measured on ffmpeg's input clock (container start) via
    ``info.video_start``; so both streams start together and end together.

    The audio is copied when it is AAC, the window is the whole video and the video starts with the
    container clock (``video_start`` ~ 0); otherwise it is re-encoded to AAC 192k (a sample-accurate cut).
    No audio track -> a video-only file. ``-movflags +faststart`` always (MP4, MOV).
    WebM: the audio is always encoded to Opus (128k; resampled to 48 kHz). MOV: copied under the same
    conditions as MP4's AAC, else 16-bit PCM (what editors take without a decoder). The VP9 alpha
    (WebM BlockAdditional) survives the copy; ``alpha`` tags the WebM video ``alpha_mode=1`` again (the
    stream metadata is not carried over), which is what makes browsers use it.
    """
    if container not in _DEMUXERS:
        raise ValueError(f"unknown container {container!r}")
    video = ffmpeg.input(file_arg(video_only), format=_DEMUXERS[container], **ffmpeg_input_options())
    out_opts: dict[str, Any] = {"vcodec": "copy", "map_metadata": "-1"}
    if container != "webm":
        out_opts["movflags"] = "+faststart"
    elif alpha:
        out_opts["metadata:s:v:0"] = "alpha_mode=1"
    streams: list[Any] = [video["v:0"]]
    if info.audio is not None:
        t_first = 0.0 if window.start <= 0 else first_frame_time(source, window.start)
        start = info.video_start + t_first
        duration = window.end - t_first
        copy = info.audio.codec == "aac" and window.is_full and abs(info.video_start) < 1e-3
        audio_in_opts: dict[str, Any] = {"t": _seconds(duration), **ffmpeg_input_options()}
        if info.container_format:
            audio_in_opts["format"] = info.container_format
        if start > 0:
            audio_in_opts["ss"] = _seconds(start)
        audio = ffmpeg.input(file_arg(source), **audio_in_opts)
        streams.append(audio[str(info.audio.index)])
        if container == "webm":
            out_opts.update(acodec="libopus", audio_bitrate=OPUS_BITRATE)
        elif copy:
            out_opts["acodec"] = "copy"
        elif container == "mov":
            out_opts["acodec"] = "pcm_s16le"
        else:
            out_opts.update(acodec="aac", audio_bitrate=AUDIO_BITRATE)
    stream = ffmpeg.output(*streams, out_path, format=container, **out_opts)
    run(stream, "finalize")


# --------------------------------------------------------------------------------------------------------
# Test clips. Kept here so that every ffmpeg command line of the project lives in this module.


@dataclass(frozen=True)
class ClipSpec:
    """What :func:`synth_clip` generates. Sizes are coded sizes; durations in seconds.

    source: a lavfi video source (``testsrc2``, ``smptebars``, ``testsrc`` -- the latter allows odd sizes)
            or ``image:<path>`` for a still picture looped for ``duration``.
    rate:   frame rate as ffmpeg spells it (``25``, ``24000/1001``).
    vfr_every: when set, every ``vfr_every``-th frame is followed by a gap of ``vfr_gap`` frame periods
            (setpts), written with ``-fps_mode passthrough``: a genuinely variable-frame-rate file.
    display_rotation: written as a display matrix (counter-clockwise degrees, ffmpeg ``-display_rotation``),
            by remuxing the encoded clip (as a phone does: pixels unrotated + metadata).
    video_filters: extra filters appended to the chain (e.g. ``format=yuv444p``, ``crop=321:241:0:0``);
            ``audio_filters`` the same for the sine.
    video_delay: the video starts this many seconds after the audio on the container clock (like the
            CREMA-D FLVs, whose video starts 27 ms late).
    video_opts: extra output options (``{"colorspace": "bt709", "x265-params": "log-level=error"}``).
    audio_codec: ``None`` -> no audio track.
    """

    width: int = 320
    height: int = 240
    rate: str = "25"
    duration: float = 2.0
    source: str = "testsrc2"
    vcodec: str = "libx264"
    pix_fmt: str = "yuv420p"
    video_filters: Sequence[str] = ()
    video_opts: dict[str, str] = field(default_factory=dict)
    vfr_every: int | None = None
    vfr_gap: int = 3
    display_rotation: int | None = None
    display_hflip: bool = False
    audio_codec: str | None = "aac"
    audio_frequency: int = 440
    audio_rate: int = 44100
    audio_duration: float | None = None  # default: same as the video
    audio_filters: Sequence[str] = ()
    audio_expr: str | None = None  # aevalsrc expression of t instead of the sine (sample-exact events)
    video_delay: float = 0.0  # seconds the video starts after the audio (container clock)
    fmt: str | None = None  # container format; default from the file extension


def _apply_filter(stream: Any, text: str) -> Any:
    """``name`` / ``name=a:b`` / ``name=k=v:k2=v2`` -> ffmpeg-python filter node."""
    name, _, args = text.partition("=")
    if not args:
        return stream.filter(name)
    parts = args.split(":")
    if all("=" in p for p in parts):
        return stream.filter(name, **dict(p.split("=", 1) for p in parts))
    return stream.filter(name, *parts)


def synth_clip(out_path: str, spec: ClipSpec, *, video: bool = True) -> str:
    """Generate a clip with real ffmpeg (lavfi sources, real encoders); return ``out_path``.

    ``video=False`` writes the audio track alone (an audio-only file)."""
    streams: list[Any] = []
    out_opts: dict[str, Any] = {}
    if video:
        if spec.source.startswith("image:"):
            image = file_arg(spec.source[6:])
            vin = ffmpeg.input(image, loop=1, t=_seconds(spec.duration), framerate=spec.rate)
        else:
            lavfi = f"{spec.source}=size={spec.width}x{spec.height}:rate={spec.rate}:duration={spec.duration}"
            vin = ffmpeg.input(lavfi, format="lavfi")
        vstream = vin["v"]
        if spec.video_delay:
            vstream = vstream.filter("setpts", f"PTS+{spec.video_delay}/TB")
        for flt in spec.video_filters:
            vstream = _apply_filter(vstream, flt)
        out_opts.update(vcodec=spec.vcodec, pix_fmt=spec.pix_fmt, **spec.video_opts)
        if spec.vfr_every:
            expr = f"(N+floor(N/{spec.vfr_every})*{spec.vfr_gap})/(({spec.rate})*TB)"
            vstream = vstream.filter("setpts", expr)
            out_opts["fps_mode"] = "passthrough"
        streams.append(vstream)
    if spec.audio_codec is not None:
        a_dur = spec.duration if spec.audio_duration is None else spec.audio_duration
        if spec.audio_expr:
            src = f"aevalsrc=exprs={spec.audio_expr}:sample_rate={spec.audio_rate}:duration={a_dur}"
        else:
            src = f"sine=frequency={spec.audio_frequency}:sample_rate={spec.audio_rate}:duration={a_dur}"
        astream = ffmpeg.input(src, format="lavfi")["a"]
        for flt in spec.audio_filters:
            astream = _apply_filter(astream, flt)
        streams.append(astream)
        out_opts["acodec"] = spec.audio_codec
    if spec.fmt:
        out_opts["format"] = spec.fmt
    rotate = video and (spec.display_rotation is not None or spec.display_hflip)
    ext = os.path.splitext(out_path)[1]
    target = f"{out_path}.norot{ext}" if rotate else out_path
    run(ffmpeg.output(*streams, target, **out_opts), "synth_clip")
    if rotate:
        try:
            in_opts: dict[str, Any] = {"display_rotation": str(spec.display_rotation or 0)}
            if spec.display_hflip:
                in_opts["display_hflip"] = None
            rotated = ffmpeg.input(file_arg(target), **in_opts)
            copy_opts: dict[str, Any] = {"codec": "copy"}
            if spec.fmt:
                copy_opts["format"] = spec.fmt
            run(ffmpeg.output(rotated, out_path, **copy_opts), "synth_clip rotation")
        finally:
            os.unlink(target)
    return out_path


def reference_frames(path: str, width: int, height: int, count: int = 1) -> np.ndarray:
    """The first ``count`` frames as ffmpeg's CLI shows them (autorotate on), RGB uint8 [n,H,W,3].

    A reference for tests (orientation as a player displays it); ``width`` x ``height`` is the displayed
    size."""
    stream = ffmpeg.input(file_arg(path)).output(
        "pipe:", format="rawvideo", pix_fmt="rgb24", frames=count, **{"fps_mode": "passthrough"}
    )
    data = np.frombuffer(run(stream, "reference decode"), dtype=np.uint8)
    return data.reshape(-1, height, width, 3)


def plain_reencode(source: str, out_path: str, *, crf: int, preset: str, audio: str = "aac") -> None:
    """The benchmarks' baseline: decode + x264 re-encode, what a plain ``ffmpeg -i`` job costs
    (``audio="copy"`` for ``-c:a copy``)."""
    src = ffmpeg.input(file_arg(source))
    stream = ffmpeg.output(
        src,
        out_path,
        format="mp4",
        vcodec="libx264",
        preset=preset,
        crf=crf,
        pix_fmt="yuv420p",
        acodec=audio,
        movflags="+faststart",
    )
    run(stream, "plain re-encode")


def plain_reencode_args(source: str, out_path: str, *, crf: int, preset: str) -> list[str]:
    """The speed benchmark's baseline as a command line: ``ffmpeg -i IN -c:v libx264 -preset P -crf N
    -c:a copy OUT`` (run as its own process, so its CPU time is measured like a job's)."""
    stream = ffmpeg.output(
        ffmpeg.input(file_arg(source)), out_path, vcodec="libx264", preset=preset, crf=crf, acodec="copy"
    )
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *ffmpeg.get_args(stream)]


def loop_clip(
    source: str,
    out_path: str,
    *,
    seconds: float,
    width: int | None = None,
    height: int | None = None,
    audio: bool = True,
) -> None:
    """``source`` looped (or cut) to ``seconds``, optionally scaled to ``width`` x ``height``, as H.264
    CRF 16 (+ AAC when ``audio``: the source has a track): the speed benchmark's test clips."""
    src = ffmpeg.input(file_arg(source), stream_loop=-1)
    video = src.video if width is None or height is None else src.video.filter("scale", width, height)
    streams = [video, src.audio] if audio else [video]
    opts: dict[str, Any] = {"acodec": "aac"} if audio else {}
    stream = ffmpeg.output(
        *streams, out_path, t=f"{seconds:.3f}", vcodec="libx264", preset="veryfast", crf=16,
        pix_fmt="yuv420p", format="mp4", **opts,
    )
    run(stream, "loop clip")
