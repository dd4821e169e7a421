"""Small test clips generated with real ffmpeg (lavfi testsrc2 / smptebars / still images + sine audio).

Every command goes through :func:`bgservice.media.ffmpeg.synth_clip` (the one module holding ffmpeg
command lines). Clips are 1-3 s and small, generated once per test session and cached by name.

``tests/conftest.py`` registers this module as a plugin, so every test can ask for the session-scoped
fixture ``media_factory``::

    def test_something(media_factory: MediaFactory) -> None:
        clip = media_factory.vfr()          # a pathlib.Path

Clips (all 320x240 unless said, AAC mono 44.1 kHz sine audio unless said):

=======================  =======================================================================
``basic()``              H.264 yuv420p, 25 fps, 2 s (50 frames)
``rotated(deg)``         ``basic`` remuxed with a display matrix (``deg`` counter-clockwise, like
                         ``ffmpeg -display_rotation``; a phone's portrait clip is ``rotated(90)``);
                         ``mirrored=True`` adds a horizontal flip
``vfr()``                genuinely variable frame rate: 30 fps base, a 3-frame gap after every 7th
                         frame (setpts, ``-fps_mode passthrough``), 2.8 s, 60 frames
``ntsc_film()``          24000/1001 fps, 2.002 s, 48 frames
``odd_size()``           321x241, H.264 High 4:4:4 (4:2:0 cannot be odd), no audio
``no_audio()``           ``basic`` without an audio track
``hevc10()``             HEVC Main 10 (libx265 yuv420p10le), with audio
``vp9()``                VP9 in WebM with Opus audio
``mpeg4()``              MPEG-4 part 2 in AVI with MP3 audio
``flash_and_beep(...)``  black + silence, then white + a 1 kHz tone from the same instant (A/V sync)
``long_clip(s)``         ``s`` seconds of 320x240 video, no audio (memory flatness)
``patches(...)``         colour patches (:data:`PATCH_COLOURS`) encoded with a given matrix/range,
                         tagged or untagged, SD or HD, H.264 or 10-bit HEVC; see :func:`patch_means`
``truncated()``          a faststart MP4 cut at 60 %
``empty()``              0 bytes
``text()``               a text file named ``.mp4``
``audio_only()``         AAC in an M4A (no video stream)
``unknown_codec()``      an AVI whose FourCC no decoder knows
``anamorphic()``         352x288 with 12:11 pixels
=======================  =======================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgservice.media.ffmpeg import ClipSpec, synth_clip

# Patch colours (RGB) laid out in a 4x2 grid: saturated primaries, a skin tone, greys, yellow.
PATCH_COLOURS = np.array(
    [
        [200, 40, 40],
        [40, 180, 60],
        [50, 60, 200],
        [224, 172, 140],
        [128, 128, 128],
        [230, 220, 60],
        [30, 30, 30],
        [235, 235, 235],
    ],
    dtype=np.uint8,
)


def patch_image(width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), dtype=np.uint8)
    pw, ph = width // 4, height // 2
    for i, colour in enumerate(PATCH_COLOURS):
        row, col = divmod(i, 4)
        img[row * ph : (row + 1) * ph, col * pw : (col + 1) * pw] = colour
    return img


def patch_means(frame: np.ndarray) -> np.ndarray:
    """Mean RGB (float32 [8,3]) of the central half of each patch of a decoded patch frame."""
    h, w = frame.shape[:2]
    pw, ph = w // 4, h // 2
    out = np.zeros((len(PATCH_COLOURS), 3), dtype=np.float32)
    for i in range(len(PATCH_COLOURS)):
        row, col = divmod(i, 4)
        y0, x0 = row * ph + ph // 4, col * pw + pw // 4
        out[i] = frame[y0 : y0 + ph // 2, x0 : x0 + pw // 2].reshape(-1, 3).astype(np.float32).mean(0)
    return out


def patch_error(frame: np.ndarray) -> np.ndarray:
    """Mean absolute error per channel (float32 [3]) of a decoded patch frame against the true colours."""
    err: np.ndarray = np.abs(patch_means(frame) - PATCH_COLOURS.astype(np.float32)).mean(0)
    return err


class MediaFactory:
    """Generates (once) and returns test clips under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _make(self, name: str, build: Callable[[Path], object]) -> Path:
        path = self.root / name
        if not path.exists():
            tmp = path.with_name(f".part-{name}")
            build(tmp)
            tmp.rename(path)
        return path

    def clip(self, name: str, spec: ClipSpec) -> Path:
        """Any clip: ``name`` (with its extension) caches it, ``spec`` says what it is."""
        fmt = spec.fmt or {".mp4": "mp4", ".webm": "webm", ".avi": "avi", ".mkv": "matroska"}.get(
            Path(name).suffix
        )
        full = ClipSpec(**{**spec.__dict__, "fmt": fmt})
        return self._make(name, lambda p: synth_clip(str(p), full))

    # --- the edge cases -----------------------------------------------------------------------------------
    def basic(self) -> Path:
        return self.clip("basic.mp4", ClipSpec())

    def rotated(self, degrees: int = 90, *, mirrored: bool = False) -> Path:
        spec = ClipSpec(display_rotation=degrees, video_opts={"x264-params": "log-level=error"})
        if mirrored:
            spec = ClipSpec(**{**spec.__dict__, "display_rotation": degrees, "display_hflip": True})
        return self.clip(f"rotated_{degrees}{'_mirrored' if mirrored else ''}.mp4", spec)

    def vfr(self) -> Path:
        return self.clip(
            "vfr.mp4", ClipSpec(rate="30", duration=2.0, vfr_every=7, vfr_gap=3, audio_duration=2.8)
        )

    def ntsc_film(self) -> Path:
        return self.clip("ntsc_film.mp4", ClipSpec(rate="24000/1001", duration=2.002))

    def odd_size(self) -> Path:
        spec = ClipSpec(
            width=321, height=241, source="testsrc", duration=1.0, pix_fmt="yuv444p", audio_codec=None
        )
        return self.clip("odd_321x241.mp4", spec)

    def no_audio(self) -> Path:
        return self.clip("no_audio.mp4", ClipSpec(audio_codec=None))

    def hevc10(self) -> Path:
        spec = ClipSpec(
            vcodec="libx265",
            pix_fmt="yuv420p10le",
            duration=1.0,
            video_opts={"x265-params": "log-level=error", "tag:v": "hvc1"},
        )
        return self.clip("hevc10.mp4", spec)

    def vp9(self) -> Path:
        spec = ClipSpec(vcodec="libvpx-vp9", duration=1.0, audio_codec="libopus", audio_rate=48000)
        return self.clip("vp9.webm", spec)

    def mpeg4(self) -> Path:
        return self.clip("mpeg4.avi", ClipSpec(vcodec="mpeg4", duration=1.0, audio_codec="libmp3lame"))

    def patches(
        self,
        matrix: str = "bt709",
        color_range: str = "tv",
        *,
        tagged: bool = True,
        hd: bool = False,
        vcodec: str = "libx264",
    ) -> Path:
        """Colour patches converted to YUV with ``matrix`` (bt709 | bt601) and ``color_range`` (tv | pc);
        ``tagged=False`` clears the colour tags (what a player must then guess)."""
        width, height = (1280, 720) if hd else (320, 240)
        image = self._make(
            f"patches_{width}x{height}.png",
            lambda p: Image.fromarray(patch_image(width, height)).save(p, format="PNG"),
        )
        filters = [f"scale=out_color_matrix={matrix}:out_range={color_range}"]
        opts: dict[str, str] = {}
        if tagged:
            tag = "bt709" if matrix == "bt709" else "smpte170m"
            opts = {"colorspace": tag, "color_primaries": tag, "color_trc": tag, "color_range": color_range}
        else:
            filters.append("setparams=colorspace=unknown:color_primaries=unknown:color_trc=unknown")
        pix_fmt = "yuv420p"
        if vcodec == "libx265":
            pix_fmt = "yuv420p10le"
            opts["x265-params"] = "log-level=error:lossless=1"
        else:
            opts["crf"] = "1"
        spec = ClipSpec(
            width=width,
            height=height,
            rate="25",
            duration=0.4,
            source=f"image:{image}",
            vcodec=vcodec,
            pix_fmt=pix_fmt,
            video_filters=tuple(filters),
            video_opts=opts,
            audio_codec=None,
        )
        name = f"patches_{matrix}_{color_range}_{'tag' if tagged else 'untagged'}_{width}_{vcodec}.mp4"
        return self.clip(name, spec)

    def flash_and_beep(self, *, at: float = 1.0, video_delay: float = 0.0, rate: str = "25") -> Path:
        """Black frames and silence until ``at`` seconds (container clock), then white frames and a tone:
        the sync reference. ``video_delay`` starts the video late, as in the CREMA-D FLVs."""
        spec = ClipSpec(
            source="color",
            rate=rate,
            duration=2.0,
            video_delay=video_delay,
            video_filters=(f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable=gte(t,{at})",),
            audio_expr=f"0.5*gte(t\\,{at})*sin(2*PI*1000*t)",
            audio_duration=2.0 + video_delay,
        )
        return self.clip(f"flash_{at}_{video_delay}_{rate.replace('/', '_')}.mp4", spec)

    def long_clip(self, seconds: float = 30.0) -> Path:
        """A longer small clip (for memory measurements)."""
        return self.clip(f"long_{seconds}.mp4", ClipSpec(duration=seconds, audio_codec=None))

    def anamorphic(self) -> Path:
        """352x288 with 12:11 pixels (PAL CIF, displayed 4:3)."""
        spec = ClipSpec(
            width=352, height=288, duration=1.0, video_filters=("setsar=12/11",), audio_codec=None
        )
        return self.clip("anamorphic.mp4", spec)

    # --- bad inputs ----------------------------------------------------------------------------------------
    def truncated(self) -> Path:
        source = self.clip("faststart.mp4", ClipSpec(video_opts={"movflags": "+faststart"}))

        def cut(p: Path) -> None:
            data = source.read_bytes()
            p.write_bytes(data[: len(data) * 6 // 10])

        return self._make("truncated.mp4", cut)

    def empty(self) -> Path:
        return self._make("empty.mp4", lambda p: p.write_bytes(b""))

    def text(self) -> Path:
        return self._make("text.mp4", lambda p: p.write_text("this is not a video\n" * 50))

    def unknown_codec(self) -> Path:
        """The MPEG-4 AVI with its FourCC changed to one no decoder knows."""
        source = self.mpeg4()

        def patch(p: Path) -> None:
            data = source.read_bytes()
            p.write_bytes(data[:4096].replace(b"FMP4", b"ZZZZ") + data[4096:])

        return self._make("unknown_codec.avi", patch)

    def audio_only(self) -> Path:
        spec = ClipSpec(audio_codec="aac", fmt="ipod", duration=1.0)
        return self._make("audio_only.m4a", lambda p: synth_clip(str(p), spec, video=False))


@pytest.fixture(scope="session", name="media_factory")
def media_factory_fixture(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    """Session-wide factory; clips are generated on first use."""
    return MediaFactory(tmp_path_factory.mktemp("media"))
