"""The committed person model, as the service uses it: get_model -> predict on real frames."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from bgservice.models import (
    DeviceUnavailable,
    ModelIntegrityError,
    SegmentationModel,
    get_model,
    model_names,
)
from bgservice.models.onnx_session import CPU, CUDA, choose_providers, create_session, verify_sha256
from bgservice.models.selfie import OnnxSelfieModel, data_path

NAMES = ["selfie", "selfie_landscape"]
HAS_CUDA = CUDA in ort.get_available_providers()

# Measured on DAVIS dance-twirl frames 0/30/60 (probability upsampled to 854x480, GT mask regions):
# mean inside 0.67-0.87, mean outside 0.008-0.023, IoU at 0.5 0.63-0.75 (both models). The crowd
# behind the dancer is real people the GT calls background, hence the non-zero outside.
DAVIS_FRAMES = (0, 30, 60)
MIN_INSIDE = 0.5
MAX_OUTSIDE = 0.08
MIN_IOU = 0.5
# Measured on a smooth colour gradient and a blurred-noise texture: mean <= 0.0022, at most 0.02 % of
# pixels above 0.5.
MAX_EMPTY_MEAN = 0.02
MAX_EMPTY_FRACTION = 0.005


@pytest.fixture(scope="module")
def davis(shared_data: Path) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]:
    root = shared_data / "matting_gt" / "davis2016_dance-twirl"
    out = []
    for i in DAVIS_FRAMES:
        bgr = cv2.imread(str(root / "images" / f"{i:05d}.jpg"))
        mask = cv2.imread(str(root / "masks" / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
        assert bgr is not None and mask is not None
        out.append((np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8), np.asarray(mask > 127)))
    return out


def no_person_images() -> dict[str, npt.NDArray[np.uint8]]:
    h, w = 480, 854
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 4)
    texture = np.asarray(cv2.normalize(blurred, np.empty_like(blurred), 0, 255, cv2.NORM_MINMAX), np.uint8)
    return {"gradient": gradient, "texture": texture}


@pytest.mark.parametrize("name", NAMES)
def test_loads_through_the_registry(name: str) -> None:
    model = get_model(name)
    assert isinstance(model, SegmentationModel)
    assert model.name == name
    assert get_model(name) is model, "a loaded model is cached per process"
    assert isinstance(model, OnnxSelfieModel)
    # the shipped file is the one SHA256SUMS records (checked at load; checked here independently)
    assert model.path == data_path(model.filename)
    verify_sha256(model.path, data_path("SHA256SUMS"))
    assert pickle.loads(pickle.dumps(model)) is model, "pickles by name, reloads from the cache"


def test_unknown_name_lists_the_models() -> None:
    assert model_names() == tuple(NAMES)
    with pytest.raises(ValueError, match=r"unknown model 'modnet'.*selfie, selfie_landscape"):
        get_model("modnet")


@pytest.mark.parametrize("name", NAMES)
def test_finds_the_person_on_a_real_photo(
    name: str, davis: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]
) -> None:
    model = get_model(name)
    frames = np.stack([img for img, _ in davis])
    probs = model.predict(frames)
    assert probs.shape == (len(davis), *model.input_size)
    assert probs.dtype == np.float32
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    for (img, gt), prob in zip(davis, probs, strict=True):
        up = cv2.resize(prob, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        inside, outside = float(up[gt].mean()), float(up[~gt].mean())
        iou = float(((up > 0.5) & gt).sum() / ((up > 0.5) | gt).sum())
        assert inside > MIN_INSIDE, f"{name}: mean probability on the dancer {inside:.3f}"
        assert outside < MAX_OUTSIDE, f"{name}: mean probability off the dancer {outside:.3f}"
        assert iou > MIN_IOU, f"{name}: IoU {iou:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_no_person_gives_an_empty_mask(name: str) -> None:
    model = get_model(name)
    images = no_person_images()
    probs = model.predict(np.stack(list(images.values())))
    for label, prob in zip(images, probs, strict=True):
        assert float(prob.mean()) < MAX_EMPTY_MEAN, label
        assert float((prob > 0.5).mean()) < MAX_EMPTY_FRACTION, label


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_batch_gives_the_same_per_frame_results(
    name: str, davis: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]
) -> None:
    model = get_model(name)
    imgs = [img for img, _ in davis] + list(no_person_images().values())
    batch = np.stack(imgs)  # N = 5
    together = model.predict(batch)
    assert together.shape == (5, *model.input_size)
    for i, img in enumerate(imgs):
        alone = model.predict(img[None])  # N = 1
        np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
    # more frames than one internal chunk, and N = 0
    many = np.concatenate([batch] * 4)  # 20 > max_batch
    np.testing.assert_allclose(model.predict(many)[15:20], together, atol=1e-5)
    assert model.predict(batch[:0]).shape == (0, *model.input_size)


def test_predict_rejects_what_is_not_uint8_rgb_frames() -> None:
    model = get_model("selfie")
    with pytest.raises(TypeError, match="uint8"):
        model.predict(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        model.predict(np.zeros((64, 64, 3), np.uint8))


def test_small_and_odd_frames_are_resized_too() -> None:
    """Frames smaller than the model input (upscaled) and odd sizes give a full-size map."""
    model = get_model("selfie_landscape")
    for h, w in ((90, 160), (241, 321)):
        probs = model.predict(np.full((2, h, w, 3), 128, np.uint8))
        assert probs.shape == (2, 144, 256)


def test_provider_choice() -> None:
    # the rule, for the provider lists onnxruntime (cpu) and onnxruntime-gpu report
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(DeviceUnavailable, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU])
    with pytest.raises(ValueError, match="unknown device"):
        choose_providers("tpu", [CPU])


def providers_of(model: SegmentationModel) -> list[str]:
    assert isinstance(model, OnnxSelfieModel)
    return model.providers


def test_this_machine_runs_where_it_should() -> None:
    providers = providers_of(get_model("selfie", "auto"))
    if HAS_CUDA:
        assert providers[0] == CUDA
        assert providers_of(get_model("selfie", "cuda"))[0] == CUDA
    else:
        assert providers == [CPU]
        with pytest.raises(DeviceUnavailable) as err:
            get_model("selfie", "cuda")
        assert err.value.code == "internal"
        assert "BGSERVICE_DEVICE" in str(err.value)
    assert providers_of(get_model("selfie", "cpu")) == [CPU]


def test_a_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "selfie_segmentation.onnx"
    shutil.copy(data_path("selfie_segmentation.onnx"), model)
    shutil.copy(data_path("SHA256SUMS"), tmp_path / "SHA256SUMS")
    assert create_session(model, "cpu").get_providers() == [CPU]
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        create_session(model, "cpu")
    other = tmp_path / "other.onnx"
    shutil.copy(data_path("selfie_segmentation.onnx"), other)
    with pytest.raises(ModelIntegrityError, match="not listed"):
        create_session(other, "cpu")
