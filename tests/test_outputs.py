"""Outputs beyond the seed, end to end through ``bgservice process`` (``--engine local`` unless said):
transparent WebM / MOV, the matte, blurred and video backgrounds, fit modes, and every invalid combination.

Every output is probed (codec, pixel format with alpha, size, frames, duration, audio) and decoded back.
The alpha of webm / mov / matte is compared with the matte the ``mp4`` pipeline composites with
(:meth:`bgservice.stages.ShardProcessor.matte` on the same shards, in this process).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bgservice.batch import parse_line
from bgservice.cli import main
from bgservice.errors import InvalidBackground, InvalidManifest, InvalidOutput
from bgservice.media.decode import FrameReader
from bgservice.media.ffmpeg import ClipSpec, ffmpeg_exe, synth_clip
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.stages import ShardProcessor, prepared_input
from tests.conftest import need
from tests.dagtools import local_ray
from tests.media_factory import MediaFactory
from tests.outputs import frames, grey_frames, inspect, rgba_frames
from tests.test_browser import chromium, run_page, served, video_page  # noqa: F401  (served: a fixture)

TALKING_HEAD = "talking_head_cremad_1001_DFA_NEU_XX.flv"  # 480x360, 61 frames, 2.035 s, green screen
BUSY = "hair_busy_bg_tears_of_steel_640x360.mp4"  # a textured background (for the blur)
FRAMES, DURATION = 61, 2.035


def process(*args: str, engine: str = "local") -> None:
    """``bgservice process`` in this process (the CLI's own code path); fails the test on a non-zero exit."""
    code = main(["process", *args, "--engine", engine])
    assert code == 0, f"bgservice process {' '.join(args)} exited {code}"


def reference_alpha(src: Path, start: float | None = None, end: float | None = None) -> np.ndarray:
    """The matte the mp4 pipeline composites with, as uint8 [N,H,W] (rounded like the outputs)."""
    settings = Settings()
    proc = ShardProcessor(settings)
    out = []
    spec = JobSpec.build(str(src), "/x.mp4", start=start, end=end)
    with (
        prepared_input(spec, settings) as (path, info, window),
        FrameReader(path, info, window) as reader,
    ):
        for shard in reader.shards(settings.shard_frames, proc.context_before, proc.context_after):
            alpha, _ = proc.matte(shard)
            out.append(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.concatenate(out)


def audio_seconds(path: str) -> float:
    """Decoded audio length (WebM stores no per-stream duration)."""
    samples, rate = 0, 0
    with av.open(path) as c:
        for frame in c.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def key_regions(rgb: np.ndarray, erode: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(sure background, sure subject) of a green-screen frame, both eroded away from the edge."""
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    green = ((g > r + 30) & (g > b + 30)).astype(np.uint8)
    kernel = np.ones((erode, erode), np.uint8)
    return cv2.erode(green, kernel).astype(bool), cv2.erode(1 - green, kernel).astype(bool)


@pytest.fixture(scope="module")
def head(videos: Path) -> Path:
    return videos / TALKING_HEAD


@pytest.fixture(scope="module")
def head_alpha(head: Path) -> np.ndarray:
    return reference_alpha(head)


@pytest.fixture(scope="module")
def outputs(head: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Lazily made outputs of the talking head, one per format (each made once per module)."""
    root = tmp_path_factory.mktemp("formats")
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            if fmt == "matte":
                out = root / "matte.mp4"
                process(str(head), "-o", str(out), "--format", "matte")
            else:
                out = root / f"transparent.{fmt}"
                process(str(head), "-o", str(out))  # the extension implies the format
            made[fmt] = out
        return made[fmt]

    return get


def decoded_alpha(path: Path, fmt: str) -> np.ndarray:
    if fmt == "matte":
        return np.stack(list(grey_frames(str(path))))
    return np.stack([f[..., 3] for f in rgba_frames(str(path))])


def assert_alpha_agrees(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    band = (ref > 0) & (ref < 255)
    assert band.sum() > 1000  # the clip has a soft edge to compare
    assert diff.mean() <= 2.0, f"mean alpha difference {diff.mean():.2f}"
    assert diff[band].mean() <= 8.0, f"mean alpha difference in the band {diff[band].mean():.2f}"


# ---------------------------------------------------------------------------------------------------------
# formats


def test_the_shipped_ffmpeg_builds_have_the_encoders() -> None:
    """PyAV's FFmpeg encodes the video (VP9 with alpha, ProRes 4444 with alpha, x264), imageio-ffmpeg's
    binary muxes and encodes the audio (Opus, PCM, AAC)."""
    def pix_fmts(encoder: str) -> set[str]:
        return {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}

    assert pix_fmts("libvpx-vp9") >= {"yuva420p", "yuv420p"}
    assert pix_fmts("prores_ks") >= {"yuva444p10le", "yuv444p10le"}
    assert av.codec.Codec("libvpx-vp9", "r")  # the decoder that reads the alpha back (tests, browsers' own)
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             check=True).stdout
    for encoder in ("libopus", "pcm_s16le", "aac"):
        assert f" {encoder} " in listing, encoder


@pytest.mark.parametrize(
    ("fmt", "codec", "audio"),
    [("webm", "vp9", "opus"), ("mov", "prores", "pcm_s16le"), ("matte", "h264", "aac")],
)
def test_format_is_probed_and_its_alpha_matches_the_mp4_pipeline(
    fmt: str, codec: str, audio: str, outputs: Callable[[str], Path], head_alpha: np.ndarray
) -> None:
    out = outputs(fmt)
    facts = inspect(str(out))
    assert facts.codec == codec
    assert (facts.width, facts.height, facts.frames) == (480, 360, FRAMES)
    assert abs(facts.video_duration - DURATION) < 0.02
    assert facts.audio_codec == audio
    assert abs(audio_seconds(str(out)) - DURATION) < 0.06
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        if fmt == "webm":
            assert stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE")) == "1"
            decoder = av.codec.CodecContext.create("libvpx-vp9", "r")
            first = next(f for p in c.demux(stream) for f in decoder.decode(p))
            assert first.format.name == "yuva420p"
        elif fmt == "mov":
            assert facts.profile == "4444"
            assert facts.pix_fmt.startswith("yuva444p")  # ProRes 4444 with its alpha plane
            assert facts.faststart
        else:
            assert facts.pix_fmt == "yuvj420p"  # full range: 0 background .. 255 subject
            assert facts.faststart
    assert_alpha_agrees(decoded_alpha(out, fmt), head_alpha)


@pytest.mark.parametrize("fmt", ["webm", "mov"])
def test_transparent_colours_are_the_foreground_not_the_green_screen(
    fmt: str, outputs: Callable[[str], Path], head: Path
) -> None:
    """Straight alpha with the estimated foreground colours: no green in the soft edge, nor under
    alpha = 0 next to it (where chroma subsampling and an editor's scaling would pull it in)."""
    decoded = list(rgba_frames(str(outputs(fmt))))
    source = list(frames(str(head)))
    soft_src, soft_out, ring_out = [], [], []
    for rgba, src in zip(decoded[::10], source[::10], strict=True):
        a = rgba[..., 3]
        soft = (a > 25) & (a < 230)
        ring = (a == 0) & (cv2.dilate((a > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)

        def green(px: np.ndarray) -> np.ndarray:
            px = px.astype(np.float32)
            return np.asarray(px[:, 1] - np.maximum(px[:, 0], px[:, 2]))

        soft_src.append(green(src[soft]))
        soft_out.append(green(rgba[..., :3][soft]))
        ring_out.append(green(rgba[..., :3][ring]))
    s_src, s_out, r_out = (float(np.concatenate(x).mean()) for x in (soft_src, soft_out, ring_out))
    assert s_src > 20, "the source's soft edge should be mixed with the green screen"
    assert s_out < s_src / 3, (s_out, s_src)
    assert r_out < 10, r_out


def test_extension_implies_the_format_and_the_background_makes_it_opaque(
    head: Path, tmp_path: Path
) -> None:
    """``--fit contain`` with a wide image into a WebM: an opaque VP9 (no alpha), the image whole, centred
    between black bars, its circle still round."""
    image = tmp_path / "wide.png"
    # 2:1 image; contained in 480x360 it is 480x240 at y 60..300 (scale 0.6). Circle centred at output
    # (80, 130), radius 45 -> image (133, 117), radius 75: left of the subject.
    img = Image.new("RGB", (800, 400), (200, 200, 200))
    ImageDraw.Draw(img).ellipse((133 - 75, 117 - 75, 133 + 75, 117 + 75), fill=(0, 0, 0))
    img.save(image)
    out = tmp_path / "contain.webm"
    process(str(head), "-o", str(out), "--background-image", str(image), "--fit", "contain")
    facts = inspect(str(out))
    assert (facts.codec, facts.frames, facts.width, facts.height) == ("vp9", FRAMES, 480, 360)
    with av.open(str(out)) as c:
        assert c.streams.video[0].metadata.get("alpha_mode", "0") != "1"
    frame = next(frames(str(out)))
    assert frame[5:50, 5:140].mean() < 25  # the top bar (left of the head)
    assert frame[310:355, 420:475].mean() < 25  # the bottom bar (right of the shoulders)
    assert frame[70:100, 420:475].mean() > 170  # the image's grey
    assert_round(frame, (80, 130), 45)


def test_cover_fills_the_frame_and_keeps_the_circle_round(head: Path, tmp_path: Path) -> None:
    """``--fit cover`` with a square image into a MOV (opaque ProRes): no bars, the circle round."""
    image = tmp_path / "square.png"
    # 600x600 covering 480x360: scale 0.8 -> 480x480, 60 px cropped top and bottom. Output circle at
    # (80, 130), radius 45 -> image (100, 237.5), radius 56.
    img = Image.new("RGB", (600, 600), (200, 200, 200))
    ImageDraw.Draw(img).ellipse((100 - 56, 237 - 56, 100 + 56, 237 + 56), fill=(0, 0, 0))
    img.save(image)
    out = tmp_path / "cover.mov"
    process(str(head), "-o", str(out), "--background-image", str(image), "--fit", "cover")
    facts = inspect(str(out))
    assert (facts.codec, facts.frames) == ("prores", FRAMES)
    assert not facts.pix_fmt.startswith("yuva")
    frame = next(frames(str(out)))
    assert frame[5:50, 5:140].mean() > 170  # no bar: the image reaches the top
    assert frame[310:355, 420:475].mean() > 170
    assert_round(frame, (80, 130), 45)


def assert_round(frame: np.ndarray, centre: tuple[int, int], radius: int) -> None:
    """The dark disc around ``centre`` has the expected width and height (a stretch would squash it)."""
    x, y = centre
    box = frame[y - radius - 15 : y + radius + 15, max(0, x - radius - 15) : x + radius + 15]
    dark = box.max(axis=2) < 100
    ys, xs = np.nonzero(dark)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width - 2 * radius) <= 4 and abs(height - 2 * radius) <= 4, (width, height)
    assert abs(dark.sum() - np.pi * radius**2) < 0.06 * np.pi * radius**2


def test_transparent_webm_shows_the_page_through_in_chromium(
    outputs: Callable[[str], Path], head: Path, served: tuple[Path, str]  # noqa: F811
) -> None:
    browser = chromium()
    need(browser is not None, "Debian's chromium is not installed (.ci/run installs it)")
    root, base = served
    (root / "out.webm").write_bytes(outputs("webm").read_bytes())
    (root / "index.html").write_text(RED_PAGE)
    result = run_page(f"{base}/index.html", root)
    assert "error" not in result, f"the browser refused the file: MediaError code {result.get('error')}"
    assert (result["width"], result["height"]) == (480, 360)
    png = np.frombuffer(base64.b64decode(result["png"].split(",", 1)[1]), np.uint8)
    shown = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    src = list(frames(str(head)))[15]  # currentTime 0.5 s = frame 15 (29.97 fps)
    sure_bg, sure_fg = key_regions(src)
    red = np.abs(shown[sure_bg].astype(np.int16) - np.array([255, 0, 0])).mean(axis=0)
    assert (red <= 12).all(), red
    # the subject as in the source (Chromium's YUV -> RGB of a VP9-with-alpha frame differs from FFmpeg's by
    # ~8 levels on the textured face, with no bias: the same +-12 the mp4 browser test allows)
    diff = shown[sure_fg].astype(np.int16) - src[sure_fg].astype(np.int16)
    assert np.abs(diff).mean() <= 12, np.abs(diff).mean()
    assert (np.abs(diff.mean(axis=0)) <= 4).all(), diff.mean(axis=0)


RED_PAGE = video_page(
    "out.webm",
    """g.fillStyle = getComputedStyle(document.body).backgroundColor;  // the page under the video
  g.fillRect(0, 0, c.width, c.height);
  g.drawImage(v, 0, 0);
  out({width: v.videoWidth, height: v.videoHeight, png: c.toDataURL("image/png")});""",
    page_style="background: rgb(255, 0, 0); margin: 0",
)


# ---------------------------------------------------------------------------------------------------------
# backgrounds


def test_blurred_background_keeps_the_subject_sharp_and_leaves_no_sharp_ring(
    videos: Path, tmp_path: Path
) -> None:
    src = videos / BUSY
    out = tmp_path / "blur.mp4"
    # 4.0..4.5 s: a close-up of an actor against the busy city (24 fps: frames 96..107)
    process(str(src), "-o", str(out), "--background-blur", "20", "--start", "4", "--end", "4.5")
    alpha = reference_alpha(src, start=4.0, end=4.5)
    produced, source = list(frames(str(out))), list(frames(str(src)))[96 : 96 + len(alpha)]
    assert len(produced) == len(alpha)

    def hf(img: np.ndarray, mask: np.ndarray) -> float:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float((cv2.Laplacian(grey, cv2.CV_32F) ** 2)[mask].mean())

    ring_px = 0
    for a, out_f, src_f in list(zip(alpha, produced, source, strict=True))[::4]:
        subject = (a > 0).astype(np.uint8)
        near = cv2.dilate(subject, np.ones((25, 25), np.uint8)).astype(bool)
        background = ~cv2.dilate(subject, np.ones((5, 5), np.uint8)).astype(bool)
        far = background & ~near
        ring = background & near  # 2..12 px outside the subject
        ring_px += int(ring.sum())
        assert hf(out_f, far) <= 0.5 * hf(src_f, far)
        assert hf(out_f, ring) <= 0.5 * hf(src_f, ring)
        core = cv2.erode((a == 255).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert core.sum() > 2000
        assert np.abs(out_f[core].astype(np.int16) - src_f[core].astype(np.int16)).mean() <= 3.0
    assert ring_px > 1000


def _counter_clip(path: Path, seconds: float) -> Path:
    """A 10 fps grey clip whose frame k shows grey :func:`_level` (k) (so the frame shown can be read)."""
    spec = ClipSpec(
        width=160,
        height=120,
        rate="10",
        duration=seconds,
        source="testsrc2",
        video_filters=("geq=lum=16+N*7:cb=128:cr=128",),  # limited range: RGB = 7k x 255/219
        audio_codec="aac",
    )
    return Path(synth_clip(str(path), spec))


def _level(k: int) -> float:
    return 7 * k * 255 / 219


def test_video_background_at_t_is_its_frame_at_t_mod_its_duration(head: Path, tmp_path: Path) -> None:
    """0.8 s: looped (2.5 times) by the one-process engine (the Ray DAG's case is below)."""
    check_video_background(head, tmp_path, 0.8, "local")


def check_video_background(head: Path, tmp_path: Path, seconds: float, engine: str) -> None:
    bg = _counter_clip(tmp_path / "counter.mp4", seconds)
    out = tmp_path / "moving.mp4"
    process(str(head), "-o", str(out), "--background-video", str(bg), engine=engine)
    facts = inspect(str(out))
    assert (facts.frames, facts.audio_codec) == (FRAMES, "aac")
    assert abs(facts.video_duration - DURATION) < 0.02
    source = list(frames(str(head)))
    for t, shown, src in zip(facts.pts_seconds, frames(str(out)), source, strict=True):
        sure_bg, _ = key_regions(src)
        k = int(np.floor(round((t % seconds) * 10, 6)))
        level = float(shown[sure_bg].mean())
        assert abs(level - _level(k)) <= 3, f"t={t:.3f}: background level {level:.1f}, expected frame {k}"


def test_video_background_reader_is_streaming(tmp_path: Path) -> None:
    """Reading the background at increasing times holds a few frames, whatever the loop count."""
    from bgservice.backgrounds import BackgroundVideo

    bg = _counter_clip(tmp_path / "counter.mp4", 0.5)
    video = BackgroundVideo(str(bg), 32, 24, "stretch", Settings())
    try:
        assert video.duration == pytest.approx(0.5)
        pts = np.arange(0, 40, dtype=np.int64)  # 0..3.9 s at 10 fps: eight loops
        shown = video.frames_for(pts, Fraction(1, 10))
        assert [round(f.mean() / _level(1)) for f in shown] == [k % 5 for k in range(40)]
    finally:
        video.close()


_RSS_CHILD = """
import sys
from fractions import Fraction
import numpy as np
from bgservice.backgrounds import BackgroundVideo
from bgservice.settings import Settings

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

video = BackgroundVideo(sys.argv[1], 320, 240, "cover", Settings())
n = int(float(sys.argv[2]) * 25)  # the whole background once and then half of it again: one loop
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM): measure the reading, not the imports and the probe
start = status("VmRSS")
total = 0.0
for first in range(0, n, 8):  # shards of 8 output frames at 25 fps
    pts = np.arange(first, min(n, first + 8), dtype=np.int64)
    total += float(video.frames_for(pts, Fraction(1, 25)).mean())
video.close()
print(n, start, status("VmHWM"))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_video_background_memory_is_flat_in_its_length(media_factory: MediaFactory) -> None:
    """Reading a 30 s background (and looping it) peaks no higher than an 8 s one: it is decoded as a
    stream, never held."""
    repo = Path(__file__).resolve().parents[1]

    def peak(path: Path, seconds: float) -> int:
        done = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(seconds * 1.5)], cwd=repo,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        _, start, high = (int(v) for v in done.stdout.split())
        return high - start

    frame = 320 * 240 * 3
    short, long = peak(media_factory.long_clip(8.0), 8.0), peak(media_factory.long_clip(30.0), 30.0)
    # the 30 s background is 750 frames (165 MB); slack of 20 frames for allocator noise
    assert long < short + 20 * frame, (short, long)
    assert long < 100 * frame


# ---------------------------------------------------------------------------------------------------------
# the Ray DAG (one local Ray for these tests; the CLI leaves a Ray it did not start running)


@pytest.fixture(scope="class")
def ray_session() -> Iterator[None]:
    with local_ray(num_cpus=2):
        yield


@pytest.mark.usefixtures("ray_session")
class TestOnTheRayDag:
    def test_the_ray_dag_writes_the_same_transparent_webm(
        self, head: Path, head_alpha: np.ndarray, tmp_path: Path
    ) -> None:
        """RGBA shards through the object store, the Segmenter pool and the encoder actor."""
        out = tmp_path / "dag.webm"
        process(str(head), "-o", str(out), engine="ray")
        facts = inspect(str(out))
        assert (facts.codec, facts.frames, facts.audio_codec) == ("vp9", FRAMES, "opus")
        assert_alpha_agrees(decoded_alpha(out, "webm"), head_alpha)

    def test_video_background_longer_than_the_input_is_cut(self, head: Path, tmp_path: Path) -> None:
        """3 s behind a 2 s input: the decoder actor reads it along with the input, shard by shard."""
        check_video_background(head, tmp_path, 3.0, "ray")


# ---------------------------------------------------------------------------------------------------------
# invalid combinations


INVALID = [
    (["-o", "{tmp}/o.mp4", "--format", "webm"], "invalid_output"),
    (["-o", "{tmp}/o.webm", "--format", "matte"], "invalid_output"),
    (["-o", "{tmp}/o.mov", "--format", "mp4"], "invalid_output"),
    (["-o", "{tmp}/o.mp4", "--format", "gif"], "invalid_output"),
    (["-o", "{tmp}/o.mp4", "--background", "#fff", "--background-image", "x.png"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background", "#fff", "--background-blur", "10"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-image", "x.png", "--background-video", "v.mp4"],
     "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-video", "v.mp4", "--background-blur", "5"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-blur", "0"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-blur", "101"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-blur", "soft"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--fit", "cover"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background", "#000", "--fit", "contain"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-blur", "10", "--fit", "stretch"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-image", "x.png", "--fit", "zoom"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--format", "matte", "--background", "#000"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--format", "matte", "--background-blur", "3"], "invalid_background"),
    (["-o", "{tmp}/o.mp4", "--background-video", "{tmp}/missing.mp4"], "invalid_background_video"),
    (["-o", "{tmp}/o.mp4", "--background-video", "{tmp}/notes.mp4"], "invalid_background_video"),
]


@pytest.mark.parametrize(("args", "code"), INVALID, ids=[" ".join(a[2:]) for a, _ in INVALID])
def test_invalid_combinations_exit_2_with_their_code(
    args: list[str], code: str, head: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    argv = ["process", str(head), *(a.format(tmp=tmp_path) for a in args), "--engine", "local"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {code}: "), err
    assert not (tmp_path / "o.mp4").exists()


def test_batch_lines_take_the_same_fields(tmp_path: Path) -> None:
    out = str(tmp_path / "o.webm")
    spec = parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out, "backgroundVideoUrl": "/b.mp4",
                                  "fit": "cover"}))
    assert (spec.output_format, spec.background.kind, spec.background.fit) == ("webm", "video", "cover")
    spec = parse_line(json.dumps({"videoUrl": "/v.mp4", "output": str(tmp_path / "m.mp4"),
                                  "outputFormat": "matte"}))
    assert (spec.output_format, spec.render) == ("matte", "matte")
    spec = parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out, "backgroundBlur": 40}))
    assert (spec.background.blur, spec.render) == (40, "composite")
    bad: list[tuple[dict[str, object], type[Exception]]] = [
        ({"outputFormat": "gif"}, InvalidOutput),
        ({"outputFormat": "mov"}, InvalidOutput),  # contradicts .webm
        ({"backgroundBlur": "10"}, InvalidBackground),
        ({"backgroundBlur": True}, InvalidBackground),
        ({"backgroundBlur": 10, "back_ground": "#fff"}, InvalidBackground),
        ({"fit": "cover"}, InvalidBackground),
        ({"backgroundVideoUrl": 3}, InvalidManifest),
    ]
    for extra, error in bad:
        with pytest.raises(error):
            parse_line(json.dumps({"videoUrl": "/v.mp4", "output": out, **extra}))
