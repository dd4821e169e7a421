"""MediaPipe Selfie Segmentation (Apache-2.0), converted to ONNX by :mod:`bgservice.models.convert`.

Two models, both person probability 0..1 at the model's own resolution:

- :class:`SelfieSegmentation` ("selfie"): general, 256x256 input (square; frames are stretched).
- :class:`SelfieSegmentationLandscape` ("selfie_landscape"): 144x256 input, for 16:9 frames.

The resize to the model input is deliberate. MediaPipe's own pipeline (ImageToTensorCalculator, CPU)
samples with ``cv::warpPerspective(INTER_LINEAR)`` mapping the frame's *edges* to the tensor's edges, so
output pixel ``x`` reads source ``x * W / w``: no anti-aliasing, and the mask ends up shifted by
``(W / w - 1) / 2`` source pixels towards the top-left. We downscale with ``cv2.INTER_AREA`` (pixel-area
average, pixel centres aligned) and use ``cv2.INTER_LINEAR`` only when an axis is upscaled.

Measured on the shared test media (probability upsampled bilinearly to full size, threshold 0.5):

=============================================  ==========  ==========  ===============
                                               INTER_AREA  INTER_LIN.  MediaPipe warp
=============================================  ==========  ==========  ===============
DAVIS dance-twirl 854x480, 90 frames, IoU in
the dancer's box, general / landscape          .651/.645   .651/.640   .647/.636
same, IoU in a 20 px band around the edge      .551/.551   .552/.546   .548/.538
1080p laptop clip, 60 frames, mean |p_t -
p_t-1| (flicker), general / landscape          .028/.017   .034/.019   .029/.022
CREMA-D green screen 480x360 (chroma-key GT),
IoU general / landscape                        .985/.982   .985/.981   .986/.986
=============================================  ==========  ==========  ===============

INTER_AREA is as good or better on the ground truth and steadier over time, most clearly at 1080p
(a 7.5x downscale, where bilinear sampling aliases); it disagrees with plain bilinear on ~0.45 % of
pixels and with MediaPipe's warp on ~0.95 % (all at edges, which the matte stage refines at full
resolution anyway) and keeps the mask aligned with the frame for that refinement.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import numpy.typing as npt

from bgservice.models.onnx_session import create_session

DATA_PACKAGE = "bgservice.models"
DATA_DIR = "data"


def data_path(filename: str) -> Path:
    """Path of a file shipped in ``bgservice/models/data`` (package data)."""
    return Path(str(resources.files(DATA_PACKAGE).joinpath(DATA_DIR, filename)))


def halve(image: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.uint8]:
    """``image`` [H,W,C] halved by 2x2 block averages (OpenCV's exact-2x area path; an odd last row /
    column is dropped), into ``out`` when given."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    half: npt.NDArray[np.uint8] = np.asarray(
        cv2.resize(image[: 2 * h, : 2 * w], (w, h), dst=out, interpolation=cv2.INTER_AREA))
    return half


def model_resize(frame: npt.NDArray[np.uint8], w: int, h: int) -> npt.NDArray[np.uint8]:
    """One RGB frame resized to ``w`` x ``h`` for a model: area average when shrinking both axes, else
    bilinear (pixel-centre aligned).

    A frame at least twice the target on both axes is first halved (2x2 block average, the odd last
    row / column dropped) while that holds: OpenCV's exact-2x path costs ~0.15 ms on a 960x540 image
    where one area average by a fractional factor (960x540 -> 256x256) costs ~3.5 ms (the pose crop
    pass's squares, frames of 1440x1080 halved once for the models). The result is the
    same average but for the window edges, which fall on 2x2 blocks instead of pixels (the models see
    256-px inputs; measured on 1080p footage: benchmarks/RESULTS.md, "model inputs halved first")."""
    src = np.ascontiguousarray(frame)
    if src.shape[:2] == (h, w):
        return src
    while src.shape[0] >= 2 * h and src.shape[1] >= 2 * w and min(src.shape[:2]) >= 2:
        src = halve(src)
    if src.shape[:2] == (h, w):
        return src
    interp = cv2.INTER_AREA if src.shape[0] >= h and src.shape[1] >= w else cv2.INTER_LINEAR
    out: npt.NDArray[np.uint8] = np.asarray(cv2.resize(src, (w, h), interpolation=interp))
    return out


def resize_frame(frame: npt.NDArray[np.uint8], size: tuple[int, int], out: npt.NDArray[np.uint8]) -> None:
    """Resize one RGB frame to ``size`` = (h, w) into ``out`` (:func:`model_resize`)."""
    out[...] = model_resize(frame, size[1], size[0])


class OnnxSelfieModel:
    """Shared runtime of the two Selfie Segmentation models."""

    name: str
    input_size: tuple[int, int]
    filename: ClassVar[str]
    max_batch: ClassVar[int] = 16  # bounds the activations' memory for a large N; results do not change

    def __init__(self, device: str = "auto", *, intra_op_threads: int | None = None) -> None:
        self.device = device
        self.path = data_path(self.filename)
        self._session = create_session(self.path, device, intra_op_threads=intra_op_threads)
        self.providers: list[str] = list(self._session.get_providers())
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [*self.input_size, 3]:
            raise RuntimeError(f"{self.path.name}: unexpected input {inputs[0].shape}")
        self._input_name: str = inputs[0].name
        self._output_name: str = self._session.get_outputs()[0].name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, providers={self.providers})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A session cannot be pickled; rebuild from the registry (cached per process) on the other side.
        from bgservice.models.registry import get_model

        return (get_model, (self.name, self.device))

    def preprocess(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 RGB ``[N, H, W, 3]`` -> float32 NHWC ``[N, h, w, 3]`` in 0..1 (the model's input)."""
        h, w = self.input_size
        small = np.empty((frames.shape[0], h, w, 3), np.uint8)
        for i in range(frames.shape[0]):
            resize_frame(frames[i], self.input_size, small[i])
        x = small.astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        return x

    def predict(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Person probability, float32 ``[N, h, w]`` in 0..1, for uint8 RGB frames ``[N, H, W, 3]``."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            got = getattr(frames, "dtype", type(frames))
            raise TypeError(f"frames must be a uint8 numpy array, got {got}")
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be [N, H, W, 3] RGB, got shape {frames.shape}")
        h, w = self.input_size
        n = frames.shape[0]
        result = np.empty((n, h, w), np.float32)
        for start in range(0, n, self.max_batch):
            x = self.preprocess(frames[start : start + self.max_batch])
            y = self._session.run([self._output_name], {self._input_name: x})[0]
            result[start : start + x.shape[0]] = y[..., 0]
        return result


class SelfieSegmentation(OnnxSelfieModel):
    """MediaPipe Selfie Segmentation, general model: 256x256 input."""

    name = "selfie"
    input_size = (256, 256)
    filename = "selfie_segmentation.onnx"


class SelfieSegmentationLandscape(OnnxSelfieModel):
    """MediaPipe Selfie Segmentation, landscape model: 144x256 input (16:9 frames)."""

    name = "selfie_landscape"
    input_size = (144, 256)
    filename = "selfie_segmentation_landscape.onnx"
