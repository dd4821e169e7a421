"""The second pass for small subjects: boxes around the people the first pass found, and the paste-back.

A person far from the camera covers a few dozen of the model's 256 pixels, so its mask is a blob. Running
the model again on a crop around it gives it the whole input resolution. Every person found is
foreground: each of the largest components gets its own crop (up to ``max_crops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bgservice.matte._types import F32


@dataclass(frozen=True)
class Box:
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def subject_boxes(mask: F32, frame_hw: tuple[int, int], *, max_fraction: float, margin: float = 0.3,
                  max_crops: int = 3, min_fraction: float = 0.0005, threshold: float = 0.5,
                  aspect: float = 0.75) -> list[Box]:
    """Boxes (in frame pixels) around the people in a low-resolution ``mask`` worth a second pass.

    Components with mask > ``threshold`` smaller than ``min_fraction`` of the frame are noise and ignored;
    a box is returned only when, enlarged by ``margin`` on each side, it covers less than
    ``max_fraction`` of the frame (otherwise the first pass already saw the subject at the model's full
    resolution).
    """
    fh, fw = frame_hw
    mh, mw = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > threshold).astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    order = 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA])
    sy, sx = fh / mh, fw / mw
    boxes: list[Box] = []
    for c in order[:max_crops]:
        x, y, w, h, area = (int(v) for v in stats[c])
        if area < min_fraction * mh * mw:
            break
        # square-ish crops: the model squeezes its input to 256x256
        cy, cx = (y + h / 2) * sy, (x + w / 2) * sx
        bh, bw = h * sy * (1 + 2 * margin), w * sx * (1 + 2 * margin)
        side_h = max(bh, aspect * bw)
        side_w = max(bw, aspect * bh)
        y0, y1 = max(0, round(cy - side_h / 2)), min(fh, round(cy + side_h / 2))
        x0, x1 = max(0, round(cx - side_w / 2)), min(fw, round(cx + side_w / 2))
        box = Box(y0, x0, y1, x1)
        if box.area < max_fraction * fh * fw and y1 - y0 >= 16 and x1 - x0 >= 16:
            boxes.append(box)
    return boxes


def paste_crops(work: F32, frame_hw: tuple[int, int], boxes: list[Box], crop_masks: list[F32]) -> F32:
    """Blend crop masks into the work-resolution mask (in place, returned): the crop's mask inside its box,
    feathered into the first pass over the outer 15% of the box (where boxes overlap, later ones
    blend over earlier ones: each sees the whole of the overlap)."""
    wh, ww = work.shape
    fh, fw = frame_hw
    sy, sx = wh / fh, ww / fw
    for box, cm in zip(boxes, crop_masks, strict=True):
        y0, y1 = int(box.y0 * sy), min(wh, int(np.ceil(box.y1 * sy)))
        x0, x1 = int(box.x0 * sx), min(ww, int(np.ceil(box.x1 * sx)))
        h, w = y1 - y0, x1 - x0
        if h < 2 or w < 2:
            continue
        patch = cv2.resize(cm, (w, h), interpolation=cv2.INTER_LINEAR)
        # feather weight: 1 inside, ramping to 0 at the box edge (but not where the box meets the frame edge)
        ry = np.minimum(np.arange(h, dtype=np.float32) + 0.5, h - np.arange(h, dtype=np.float32) - 0.5)
        rx = np.minimum(np.arange(w, dtype=np.float32) + 0.5, w - np.arange(w, dtype=np.float32) - 0.5)
        if box.y0 == 0:
            ry[: h // 2] = h
        if box.y1 == fh:
            ry[h // 2:] = h
        if box.x0 == 0:
            rx[: w // 2] = w
        if box.x1 == fw:
            rx[w // 2:] = w
        fy = np.clip(ry / max(1.0, 0.15 * h), 0.0, 1.0)
        fx = np.clip(rx / max(1.0, 0.15 * w), 0.0, 1.0)
        wgt = fy[:, None] * fx[None, :]
        region = work[y0:y1, x0:x1]
        region += wgt * (patch - region)
    return work
