"""Segmentation models behind one small interface, chosen by name.

``get_model("selfie" | "selfie_landscape" | "pose_full", device="auto" | "cpu" | "cuda")`` returns a
:class:`SegmentationModel`: uint8 RGB frames ``[N, H, W, 3]`` in, float32 person probability
``[N, h, w]`` out at the model's own resolution. "pose_full" (MediaPipe Pose) is for crops around one
person, not whole frames.
"""

from bgservice.models.base import SegmentationModel
from bgservice.models.onnx_session import DeviceUnavailable, ModelIntegrityError
from bgservice.models.registry import get_model, model_names

__all__ = ["DeviceUnavailable", "ModelIntegrityError", "SegmentationModel", "get_model", "model_names"]
