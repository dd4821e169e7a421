"""The second pass for small subjects: boxes around the people the first pass found, and the paste-back.

A person far from the camera covers a few dozen of the model's 256 pixels, so its mask is a blob. Running
the model again on a crop around it gives it the whole input resolution. Every person found is
foreground: each of the largest components gets its own crop (up to ``max_crops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, f32


@dataclass(frozen=True)
class Box:
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def subject_boxes(mask: F32, frame_hw: tuple[int, int], *, margin: float = 0.15, threshold: float = 0.2,
                  aspect: float = 0.75, max_crops: int = 3, min_fraction: float = 0.0005) -> list[Box]:
    """Boxes (in frame pixels) around the people in a low-resolution ``mask``.

    Components with mask > ``threshold`` smaller than ``min_fraction`` of the frame are noise and ignored;
    the ``max_crops`` largest are boxed, enlarged by ``margin`` of their size on each side and widened
    or heightened so that each side is at least ``aspect`` of the other (the model squeezes its input
    to a square).
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
        cy, cx = (y + h / 2) * sy, (x + w / 2) * sx
        bh, bw = h * sy * (1 + 2 * margin), w * sx * (1 + 2 * margin)
        side_h = max(bh, aspect * bw)
        side_w = max(bw, aspect * bh)
        y0, y1 = max(0, round(cy - side_h / 2)), min(fh, round(cy + side_h / 2))
        x0, x1 = max(0, round(cx - side_w / 2)), min(fw, round(cx + side_w / 2))
        boxes.append(Box(y0, x0, y1, x1))
    return boxes


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Union of the boxes that overlap, until no two overlap (boxes of one subject over a few frames)."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.y0 < b.y1 and b.y0 < a.y1 and a.x0 < b.x1 and b.x0 < a.x1:
                    out[i] = Box(min(a.y0, b.y0), min(a.x0, b.x0), max(a.y1, b.y1), max(a.x1, b.x1))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def small_boxes(boxes: list[Box], frame_hw: tuple[int, int], max_fraction: float) -> list[Box]:
    """The boxes worth a second pass: under ``max_fraction`` of the frame (a larger subject was already
    seen at the model's full resolution by the first pass) and at least 16 px on each side."""
    fh, fw = frame_hw
    return [b for b in boxes
            if b.area < max_fraction * fh * fw and b.y1 - b.y0 >= 16 and b.x1 - b.x0 >= 16]


def context_square(box: Box, context: float) -> Box:
    """A square of side ``context`` x the box's long side, centred on the box (in frame pixels; it may
    reach beyond the frame, as MediaPipe's pose ROI does): what a crop model that wants one whole person
    in a square input sees around a subject's box."""
    side = max(2, round(max(box.y1 - box.y0, box.x1 - box.x0) * context))
    y0 = round((box.y0 + box.y1 - side) / 2)
    x0 = round((box.x0 + box.x1 - side) / 2)
    return Box(y0, x0, y0 + side, x0 + side)


def cut_square(frame: U8, square: Box) -> U8:
    """The pixels of ``square`` (a fresh contiguous array), black where it reaches beyond the frame."""
    fh, fw = frame.shape[:2]
    out = np.zeros((square.y1 - square.y0, square.x1 - square.x0, 3), np.uint8)
    y0, y1 = max(0, square.y0), min(fh, square.y1)
    x0, x1 = max(0, square.x0), min(fw, square.x1)
    if y1 > y0 and x1 > x0:
        out[y0 - square.y0:y1 - square.y0, x0 - square.x0:x1 - square.x0] = frame[y0:y1, x0:x1]
    return out


def box_from_square(mask: F32, square: Box, box: Box) -> F32:
    """The part of ``mask`` (covering ``square``, at any resolution) under ``box``, at that resolution
    (pixel-centre aligned bilinear resampling; ``paste_crops`` takes it from there)."""
    mh, mw = mask.shape
    sy, sx = mh / (square.y1 - square.y0), mw / (square.x1 - square.x0)
    h = max(2, round((box.y1 - box.y0) * sy))
    w = max(2, round((box.x1 - box.x0) * sx))
    shift = np.array([[1.0, 0.0, (box.x0 - square.x0) * sx], [0.0, 1.0, (box.y0 - square.y0) * sy]],
                     np.float32)
    return f32(cv2.warpAffine(mask, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE))


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
