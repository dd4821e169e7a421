"""The committed ONNX models are a faithful conversion of MediaPipe's tflite files.

Reference: ai-edge-litert running the original tflite (read out of the mediapipe 0.10.14 wheel) on real
photos. The wheel comes from ``BGSERVICE_MEDIAPIPE_WHEEL`` or ``.cache/mediapipe/*.whl`` (fetched by
``tools/fetch_mediapipe.sh``). Missing wheel or litert: skipped locally, a failure under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from bgservice.models.convert import SOURCES, ConversionError, convert_wheel
from bgservice.models.selfie import SelfieSegmentation, SelfieSegmentationLandscape, data_path, resize_frame
from tests.conftest import REPO, need

TOLERANCE = 1e-3  # issue 2: ONNX vs tflite on a real photo
MODELS = {
    "selfie_segmentation.onnx": SelfieSegmentation.input_size,
    "selfie_segmentation_landscape.onnx": SelfieSegmentationLandscape.input_size,
}


def find_wheel() -> Path | None:
    env = os.environ.get("BGSERVICE_MEDIAPIPE_WHEEL")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = sorted((REPO / ".cache" / "mediapipe").glob("mediapipe-0.10.14-*.whl"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def wheel() -> Path:
    path = find_wheel()
    need(
        path is not None,
        "mediapipe 0.10.14 wheel not found (set BGSERVICE_MEDIAPIPE_WHEEL or run tools/fetch_mediapipe.sh)",
    )
    assert path is not None
    return path


@pytest.fixture(scope="module")
def converted(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    convert_wheel(wheel, out)
    return out


@pytest.fixture(scope="module")
def litert() -> object:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        need(False, "ai-edge-litert is not installed (dev extra)")
    return interpreter


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> dict[str, npt.NDArray[np.uint8]]:
    """Real RGB frames: a DAVIS photo (full body, busy crowd) and a talking-head video frame."""
    bgr = cv2.imread(str(shared_data / "matting_gt" / "davis2016_dance-twirl" / "images" / "00000.jpg"))
    need(bgr is not None, "DAVIS frame missing")
    assert bgr is not None
    frames = {"davis_dance_twirl_00000": np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)}
    with av.open(str(shared_data / "videos" / "talking_head_cremad_1001_DFA_NEU_XX.flv")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 10:
                frames["cremad_neu_frame10"] = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
                break
    assert len(frames) == 2
    return frames


def model_input(frame: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    small = np.empty((*size, 3), np.uint8)
    resize_frame(frame, size, small)
    return (small.astype(np.float32) / np.float32(255.0))[None]


def run_tflite(litert: object, tflite_bytes: bytes, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    interp = litert.Interpreter(model_content=tflite_bytes)  # type: ignore[attr-defined]
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    out: npt.NDArray[np.float32] = interp.get_tensor(interp.get_output_details()[0]["index"])
    return out


def run_onnx(path: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: npt.NDArray[np.float32] = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return out


@pytest.mark.parametrize("onnx_name", list(MODELS))
def test_onnx_matches_tflite_on_real_photos(
    onnx_name: str,
    wheel: Path,
    converted: Path,
    litert: object,
    photos: dict[str, npt.NDArray[np.uint8]],
) -> None:
    source = next(s for s in SOURCES if s.onnx_name == onnx_name)
    with zipfile.ZipFile(wheel) as zf:
        tflite_bytes = zf.read(source.wheel_member)
    size = MODELS[onnx_name]
    xs = {name: model_input(frame, size) for name, frame in photos.items()}
    refs = {name: run_tflite(litert, tflite_bytes, x) for name, x in xs.items()}
    batch = np.concatenate(list(xs.values()))
    for label, path in (("fresh", converted / onnx_name), ("committed", data_path(onnx_name))):
        # all photos in one batch: the dynamic batch dimension must not change a frame's result
        got = run_onnx(path, batch)
        assert got.shape == (len(xs), *size, 1)
        for i, (name, ref) in enumerate(refs.items()):
            assert ref.shape == (1, *size, 1)
            # the photo must give a real mask, so the comparison is not between two blank maps
            assert (ref > 0.5).mean() > 0.02, f"{name}: tflite sees no person"
            diff = float(np.abs(got[i : i + 1] - ref).max())
            print(f"{onnx_name} ({label}) on {name}: max |onnx - tflite| = {diff:.2e}")
            assert diff <= TOLERANCE, f"{onnx_name} ({label}) on {name}: max diff {diff:.2e}"


def test_committed_files_are_what_the_converter_writes(converted: Path) -> None:
    """Regenerating from the pinned wheel reproduces the committed models, NOTICE and SHA256SUMS."""
    for name in [*MODELS, "SHA256SUMS", "NOTICE"]:
        fresh = (converted / name).read_bytes()
        committed = data_path(name).read_bytes()
        assert fresh == committed, f"{name} differs from a fresh conversion: rerun bgservice.models.convert"


def test_converter_refuses_a_tflite_it_was_not_checked_against(wheel: Path, tmp_path: Path) -> None:
    """A different tflite (another mediapipe release) must not be converted silently."""
    fake = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(fake, "w") as dst:
        for source in SOURCES:
            data = src.read(source.wheel_member)
            dst.writestr(source.wheel_member, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ConversionError, match="sha256"):
        convert_wheel(fake, tmp_path / "out")
    assert not (tmp_path / "out" / "SHA256SUMS").exists()


@pytest.fixture
def cli_out(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "cli"
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_regenerate_command(wheel: Path, cli_out: Path) -> None:
    """``python -m bgservice.models.convert --wheel W --out DIR`` writes the four files."""
    from bgservice.models.convert import main

    assert main(["--wheel", str(wheel), "--out", str(cli_out)]) == 0
    assert sorted(p.name for p in cli_out.iterdir()) == sorted([*MODELS, "NOTICE", "SHA256SUMS"])
    sums = (cli_out / "SHA256SUMS").read_text()
    for name in MODELS:
        assert name in sums
    assert main(["--wheel", str(cli_out / "missing.whl"), "--out", str(cli_out)]) == 2
