"""The one way a media file is opened: local file protocol only, no demuxer that opens other files.

Every container open of a job's input (probe, frame times, decode) goes through :func:`open_input`, and
the ffmpeg command lines in :mod:`bgservice.media.ffmpeg` take their input options from
:func:`ffmpeg_input_options`. Both pass:

- ``protocol_whitelist=file``: nothing is read over the network (``http:``, ``tcp:``, ``rtmp:`` ...), even
  when a file names a URL inside it;
- ``format_whitelist``: every demuxer ffmpeg has except :data:`INDIRECT_FORMATS`, the ones that read
  further files or streams named inside the input (an HLS playlist or an ffconcat list naming another
  job's video by path, a DASH manifest, an SDP/RTP description, an IMF composition, a lavfi graph, script
  demuxers) or a device. ffmpeg checks the whitelist after guessing the format and *before* the demuxer
  reads its header, so a refused playlist opens nothing it lists.

A refused file is :class:`~bgservice.errors.InvalidInput` (or the caller's error class): "a playlist or
stream description is not a video file" when its first bytes say so, else "not a video file".
"""

from __future__ import annotations

import functools
import os
from typing import Any

import av
import av.container

from bgservice.errors import BgServiceError, InvalidInput

INDIRECT_FORMATS = frozenset(
    {
        # playlists / manifests / descriptions that open what they list
        "hls",
        "applehttp",
        "dash",
        "concat",
        "sdp",
        "rtp",
        "rtp_mpegts",
        "rtsp",
        "sap",
        "imf",
        # graphs and scripts
        "lavfi",
        "avisynth",
        "vapoursynth",
        # devices and screen grabs
        "alsa",
        "oss",
        "fbdev",
        "kmsgrab",
        "x11grab",
        "video4linux2",
        "v4l2",
        "pulse",
        "jack",
        "lavfi_indev",
    }
)
"""Demuxers never used on an input (refused by name and left out of the whitelist)."""

_PLAYLIST_HEADS = (b"#EXTM3U", b"ffconcat", b"v=0", b"<?xml", b"<MPD", b"RTSP/")


@functools.cache
def format_whitelist() -> str:
    """ffmpeg's ``format_whitelist`` value: every demuxer of this build but :data:`INDIRECT_FORMATS`."""
    names: set[str] = set()
    for name in av.formats_available:
        try:
            if not av.ContainerFormat(name).is_input:
                continue
        except ValueError:
            continue
        names.update(part for part in name.split(",") if part)
    return ",".join(sorted(names - INDIRECT_FORMATS))


def open_options() -> dict[str, str]:
    """Options for ``avformat_open_input`` (PyAV ``av.open(..., options=...)``)."""
    return {"protocol_whitelist": "file", "format_whitelist": format_whitelist()}


def ffmpeg_input_options() -> dict[str, Any]:
    """The same rules as ffmpeg CLI input options (ffmpeg-python ``ffmpeg.input(name, **options)``)."""
    return {"protocol_whitelist": "file", "format_whitelist": format_whitelist()}


def _looks_like_playlist(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(_PLAYLIST_HEADS)


def describe(exc: BaseException, path: str | None = None) -> str:
    """A one-line reason for a user-facing message: ffmpeg's error text, without file paths."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        text = str(exc.strerror)
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
    if path:
        for p in {path, os.path.abspath(path)}:
            text = text.replace(p, "<input>")
    return text[:300]


def open_input(
    path: str, *, error: type[BgServiceError] = InvalidInput, what: str = "not a video file"
) -> av.container.InputContainer:
    """Open the local file ``path`` for demuxing under the rules above; the caller closes it.

    Any failure to open raises ``error`` (a playlist-looking file says so)."""
    absolute = os.path.abspath(path)
    try:
        container = av.open(absolute, container_options=open_options())
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        if _looks_like_playlist(absolute):
            raise error(
                "a playlist or stream description is not a video file: give the video itself"
            ) from exc
        raise error(f"{what} ({describe(exc, path)})") from exc
    names = set(container.format.name.split(","))
    if names & INDIRECT_FORMATS:  # the whitelist already refused it; belt and braces
        container.close()
        raise error("a playlist or stream description is not a video file: give the video itself")
    return container


def input_format(container: av.container.InputContainer) -> str:
    """The demuxer's short name (``mov`` for ``mov,mp4,m4a,3gp,3g2,mj2``), usable as ffmpeg ``-f``."""
    return str(container.format.name).split(",")[0]
