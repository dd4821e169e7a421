"""The matte for a shard of frames: model -> crop pass -> temporal smoothing -> guided upsampling ->
foreground colour. Each step is a pure function in its own module; this class only sequences them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, f32, resize
from bgservice.matte.config import MatteConfig
from bgservice.matte.crop import paste_crops, subject_boxes
from bgservice.matte.fusion import estimate_foreground
from bgservice.matte.guided import apply_coefficients, guided_coefficients, upsample
from bgservice.matte.temporal import temporal_smooth
from bgservice.models import SegmentationModel, get_model

ENSEMBLE_PARTNER = {"selfie": "selfie_landscape", "selfie_landscape": "selfie"}


@dataclass(frozen=True)
class Geometry:
    """Sizes for one frame size: full (H, W), work (h, w) and the reduction factor."""

    height: int
    width: int
    work_h: int
    work_w: int

    @property
    def scale(self) -> float:
        return self.width / self.work_w

    @classmethod
    def of(cls, height: int, width: int, long_side: int) -> Geometry:
        s = max(1.0, max(height, width) / long_side)
        return cls(height, width, max(1, round(height / s)), max(1, round(width / s)))


class Matter:
    """Alpha matte and foreground colour for consecutive frames, given context frames around them.

    ``context_before`` / ``context_after`` frames on each side are what the temporal window needs; given
    them, the result for a frame is the same wherever the video is cut into shards.
    """

    def __init__(self, model: SegmentationModel, config: MatteConfig | None = None, *,
                 partner: SegmentationModel | None = None) -> None:
        self.model = model
        self.config = config if config is not None else MatteConfig()
        self.partner: SegmentationModel | None = None
        if self.config.ensemble:
            # the other Selfie Segmentation variant, on the same device, unless the caller gives one
            self.partner = partner if partner is not None else get_model(
                ENSEMBLE_PARTNER.get(model.name, "selfie_landscape"), getattr(model, "device", "auto"))
        r = self.config.temporal_radius if self.config.temporal else 0
        self.context_before = r
        self.context_after = r

    # --- per-frame low-resolution masks (independent of the shard) ---------------------------------------

    def _segment(self, frames: U8) -> F32:
        """Person probability [N,h,w] on the main model's grid (geometric mean with the partner's)."""
        masks = f32(self.model.predict(frames))
        if self.partner is not None:
            h, w = masks.shape[1:]
            other = self.partner.predict(frames)
            for i in range(masks.shape[0]):
                masks[i] *= resize(f32(other[i]), w, h)
            np.sqrt(masks, out=masks)
        return masks

    def _work_masks(self, frames: U8, geo: Geometry) -> F32:
        """Model masks of ``frames`` on the work grid, with the crop pass applied."""
        cfg = self.config
        low = self._segment(frames)
        out = np.empty((frames.shape[0], geo.work_h, geo.work_w), np.float32)
        for i in range(frames.shape[0]):
            out[i] = cv2.resize(low[i], (geo.work_w, geo.work_h), interpolation=cv2.INTER_LINEAR)
            if not cfg.crop_pass:
                continue
            boxes = subject_boxes(low[i], (geo.height, geo.width), max_fraction=cfg.crop_max_fraction)
            if not boxes:
                continue
            crops = [self._segment(np.ascontiguousarray(frames[i, b.y0:b.y1, b.x0:b.x1])[None])[0]
                     for b in boxes]
            paste_crops(out[i], (geo.height, geo.width), boxes, crops)
        return out

    @staticmethod
    def _guides(frames: U8, geo: Geometry) -> F32:
        """The frames at the work size, RGB float32 0..1 [M,h,w,3] (the guided filter's guide)."""
        out = np.empty((frames.shape[0], geo.work_h, geo.work_w, 3), np.float32)
        for i in range(frames.shape[0]):
            if (geo.work_h, geo.work_w) != frames.shape[1:3]:
                out[i] = cv2.resize(frames[i], (geo.work_w, geo.work_h), interpolation=cv2.INTER_AREA)
            else:
                out[i] = frames[i]
        out *= np.float32(1.0 / 255.0)
        return out

    # --- the shard --------------------------------------------------------------------------------------

    def __call__(self, frames: U8, before: U8, after: U8) -> tuple[F32, U8]:
        cfg = self.config
        n, h, w = frames.shape[:3]
        geo = Geometry.of(h, w, cfg.work_long_side)
        kb = min(len(before), self.context_before)
        ka = min(len(after), self.context_after)
        parts = [p for p in (before[len(before) - kb:], frames, after[:ka]) if len(p)]
        masks = np.concatenate([self._work_masks(p, geo) for p in parts])
        guides = np.concatenate([self._guides(p, geo) for p in parts]) if cfg.guided else None

        # 1. edge-aware filtering of every mask at the work size (context frames too: the window needs them)
        radius = max(1, round(cfg.guided_radius * geo.work_w / self.model.input_size[1]))
        coeffs: list[tuple[F32, F32] | None] = [None] * len(masks)
        filtered = masks
        if guides is not None:
            filtered = np.empty_like(masks)
            for t in range(len(masks)):
                ab = guided_coefficients(guides[t], masks[t], radius, cfg.guided_eps)
                coeffs[t] = ab
                filtered[t] = apply_coefficients(ab[0], ab[1], guides[t])

        alpha = np.empty((n, h, w), np.float32)
        fg = frames.copy() if cfg.fusion else frames
        for i in range(n):
            t = kb + i
            # 2. temporal smoothing over the window t-R..t+R (motion-aware weights)
            if cfg.temporal:
                q_small = temporal_smooth(filtered, t, cfg.temporal_radius, cfg.temporal_sigma_mask)
                detail_of: F32 | None = filtered[t]
            else:
                q_small, detail_of = filtered[t], None
            # 3. full resolution: bilinear + this frame's guided-filter detail in the uncertain band
            q, band = upsample(q_small, frames[i], coeffs[t], gain=cfg.sharpen, detail_of=detail_of)
            alpha[i] = _finish(q, cfg.sharpen, cfg.snap)
            # 4. foreground colour where the matte is uncertain
            if cfg.fusion:
                estimate_foreground(frames[i], alpha[i], fg[i], work_scale=geo.scale, band=band)
        return alpha, fg


def _finish(q: F32, gain: float, snap: float) -> F32:
    """Contrast around 0.5, clip to 0..1, snap near-0/near-1 to exact 0/1."""
    if gain != 1.0:
        q -= np.float32(0.5)
        q *= np.float32(gain)
        q += np.float32(0.5)
    np.clip(q, 0.0, 1.0, out=q)
    if snap > 0.0:
        q[q < snap] = 0.0
        q[q > 1.0 - snap] = 1.0
    return q
