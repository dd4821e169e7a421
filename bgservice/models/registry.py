"""Models by name, one loaded instance per (name, device) per process."""

from __future__ import annotations

import threading

from bgservice.models.base import SegmentationModel
from bgservice.models.modnet import ModnetMatting
from bgservice.models.pose import PoseSegmentation
from bgservice.models.selfie import OnnxSelfieModel, SelfieSegmentation, SelfieSegmentationLandscape

MODELS: dict[str, type[OnnxSelfieModel] | type[ModnetMatting]] = {
    SelfieSegmentation.name: SelfieSegmentation,
    SelfieSegmentationLandscape.name: SelfieSegmentationLandscape,
    PoseSegmentation.name: PoseSegmentation,  # for crops around one person (the matte's crop pass)
    ModnetMatting.name: ModnetMatting,  # portrait matting: the ``best`` quality (bgservice.matte.config)
}

_cache: dict[tuple[str, str], SegmentationModel] = {}
_lock = threading.Lock()


def model_names() -> tuple[str, ...]:
    return tuple(MODELS)


def get_model(name: str = "selfie", device: str = "auto") -> SegmentationModel:
    """The model called ``name`` on ``device`` (auto | cpu | cuda), loaded once per process.

    Raises ValueError for an unknown name or device, ``DeviceUnavailable`` for ``cuda`` without CUDA,
    ``ModelIntegrityError`` when the shipped file does not match SHA256SUMS.
    """
    cls = MODELS.get(name)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    key = (name, device)
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = cls(device)
            _cache[key] = model
        return model


def clear_cache() -> None:
    """Forget the loaded models (tests; a process that wants to free the sessions)."""
    with _lock:
        _cache.clear()
