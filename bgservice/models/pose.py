"""MediaPipe Pose (BlazePose GHUM 3D, full; Apache-2.0): its person segmentation, for crops around one
person. Converted to ONNX by :mod:`bgservice.models.convert` (``pose_landmark_full.onnx``).

The network takes a 256x256 RGB crop (float 0..1) around *one* person and, besides landmarks, returns a
256x256 map of segmentation logits; MediaPipe's pose graph turns it into the person mask with a sigmoid.
It is trained on full bodies (the Selfie model on selfies), so on a small full-body subject it finds the
arms, legs and upper body the Selfie model misses. It is meant for a crop, not a whole frame: the service
runs it only in the matte's crop pass (:class:`bgservice.matte.MatteConfig` ``crop_model``).

:class:`PoseSegmentation` ("pose_full") follows the :class:`~bgservice.models.SegmentationModel`
protocol: uint8 RGB frames of any size in, float32 person probability ``[N, 256, 256]`` out, covering
the whole input frame. MediaPipe feeds the model keeping the aspect ratio (``keep_aspect_ratio`` in its
ImageToTensorCalculator); so do we: a frame that is not square is resized to fit 256 px on its long side
(area average when shrinking) and centred on black bars, and the mask's part under the frame is resized
back to 256x256. Give it square crops where possible (the crop pass does): the bars carry no context.

Cost on this 2-core machine (ONNX Runtime CPU): see ``benchmarks/RESULTS.md``; about 20x the Selfie
model per image, which is why it runs only on crops of small subjects.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
import numpy.typing as npt

from bgservice.models.selfie import OnnxSelfieModel, model_resize

SEGMENTATION_OUTPUT = "Identity_2"  # [N, 256, 256, 1] logits (the tflite's own output name)
PRESENCE_OUTPUT = "Identity_1"  # [N, 1] pose presence score 0..1 (sigmoid inside the graph)
LOGIT_CLIP = 30.0  # sigmoid(+-30) is 1 - 1e-13 / 1e-13: exact in float32, and exp() cannot overflow


def letterbox_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """Where a ``h x w`` frame lands in a ``size x size`` square when fitted with its aspect ratio kept,
    centred: ``(y0, x0, rh, rw)`` (offset and size of the resized frame, each side at least 1 px)."""
    scale = size / max(h, w)
    rh = min(size, max(1, round(h * scale)))
    rw = min(size, max(1, round(w * scale)))
    return (size - rh) // 2, (size - rw) // 2, rh, rw


def letterbox_input(frames: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.float32]:
    """uint8 RGB ``[N, H, W, 3]`` -> float32 NHWC ``[N, size, size, 3]`` in 0..1, aspect ratio kept: the
    frame resized (area average when shrinking, else bilinear) and centred on black bars."""
    n, h, w = frames.shape[:3]
    y0, x0, rh, rw = letterbox_box(h, w, size)
    square = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        square[i, y0 : y0 + rh, x0 : x0 + rw] = model_resize(frames[i], rw, rh)
    x = square.astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x


class PoseSegmentation(OnnxSelfieModel):
    """Person segmentation of MediaPipe Pose (full), for a crop around one person: 256x256 input."""

    name = "pose_full"
    input_size = (256, 256)
    filename = "pose_landmark_full.onnx"
    max_batch: ClassVar[int] = 8  # 256x256x8 activations at float32: ~2 MB per frame per layer
    # No mask (all zeros) below this pose presence score. MediaPipe's pose graph drops the mask under 0.5;
    # we ask for 0.9: on crops boxed from another model's mask (which may hold a coffee cup next to a
    # small, off-centre person) scores of 0.5-0.9 came with wrong masks (the cup's spoon marked as
    # person at 0.53), while on the DAVIS dancer 12 of 134 crops score under 0.9 and dropping their
    # masks changed nothing measurable (mean IoU 0.831 at both thresholds).
    min_presence: ClassVar[float] = 0.9

    def __init__(self, device: str = "auto", *, intra_op_threads: int | None = None) -> None:
        super().__init__(device, intra_op_threads=intra_op_threads)
        outputs = {o.name for o in self._session.get_outputs()}
        if not {SEGMENTATION_OUTPUT, PRESENCE_OUTPUT} <= outputs:
            raise RuntimeError(f"{self.path.name}: outputs {sorted(outputs)} lack the segmentation")
        self._output_name = SEGMENTATION_OUTPUT

    def preprocess(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 RGB ``[N, H, W, 3]`` -> float32 NHWC ``[N, 256, 256, 3]`` in 0..1, aspect ratio kept
        (the frame centred on black bars)."""
        return letterbox_input(frames, self.input_size[0])

    def logits(
        self, frames: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The raw outputs for uint8 RGB frames: segmentation logits ``[N, 256, 256]`` on the letterboxed
        square (not yet cut back to the frame) and the pose presence score ``[N]``."""
        self._check(frames)
        size = self.input_size[0]
        n = frames.shape[0]
        seg = np.empty((n, size, size), np.float32)
        presence = np.empty(n, np.float32)
        for start in range(0, n, self.max_batch):
            x = self.preprocess(frames[start : start + self.max_batch])
            s, p = self._session.run([SEGMENTATION_OUTPUT, PRESENCE_OUTPUT], {self._input_name: x})
            seg[start : start + x.shape[0]] = s[..., 0]
            presence[start : start + x.shape[0]] = p[:, 0]
        return seg, presence

    def predict(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Person probability (sigmoid of the segmentation logits), float32 ``[N, 256, 256]`` in 0..1,
        covering the whole input frame; all zeros for a frame whose pose presence score is under
        ``min_presence`` (without that gate a textured image with nobody on it gets up to a quarter of
        its pixels marked as person)."""
        seg, presence = self.logits(frames)
        size = self.input_size[0]
        y0, x0, rh, rw = letterbox_box(frames.shape[1], frames.shape[2], size)
        out = np.empty_like(seg)
        for i in range(seg.shape[0]):
            z = seg[i, y0 : y0 + rh, x0 : x0 + rw]
            if (rh, rw) != (size, size):
                z = np.asarray(cv2.resize(z, (size, size), interpolation=cv2.INTER_LINEAR), np.float32)
            np.clip(z, -LOGIT_CLIP, LOGIT_CLIP, out=out[i])
            if presence[i] < self.min_presence:
                out[i] = -LOGIT_CLIP
        np.negative(out, out=out)
        np.exp(out, out=out)
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
        return out

    @staticmethod
    def _check(frames: npt.NDArray[np.uint8]) -> None:
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            got = getattr(frames, "dtype", type(frames))
            raise TypeError(f"frames must be a uint8 numpy array, got {got}")
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be [N, H, W, 3] RGB, got shape {frames.shape}")
