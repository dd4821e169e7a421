"""The interface every segmentation model offers the rest of the service."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class SegmentationModel(Protocol):
    """A person segmenter.

    ``predict`` takes uint8 RGB frames ``[N, H, W, 3]`` of any size and returns float32 person
    probabilities 0..1 ``[N, h, w]`` at the model's own resolution ``input_size == (h, w)``; the model
    resizes the frames itself (a deliberate choice per model, see :mod:`bgservice.models.selfie`).
    ``N`` may be anything from 0 up; each frame's result does not depend on the others in the batch.
    """

    name: str
    input_size: tuple[int, int]  # (h, w)

    def predict(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]: ...
