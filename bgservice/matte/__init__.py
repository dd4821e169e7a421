"""Matte refinement and compositing: pure numpy / cv2 functions on float32 arrays.

:class:`Matter` sequences the steps for a shard of frames; :func:`composite` lays the result over a plate.
"""

from bgservice.matte.composite import composite
from bgservice.matte.config import MatteConfig
from bgservice.matte.matter import FrameCache, Matter

__all__ = ["FrameCache", "MatteConfig", "Matter", "composite"]
