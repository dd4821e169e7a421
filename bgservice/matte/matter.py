"""The matte for a shard of frames. Each step is a pure function in its own module; this class only
sequences them:

1. models: the frame halved while its long side stays >= 480 px, through MediaPipe Selfie Segmentation
   general and landscape, geometric mean (``ensemble``);
2. crop pass (``crop.py``): subjects under 80 % of the frame run again on a crop of the full frame
   (MediaPipe Pose's person segmentation, ``pose_full``, on a square around the subject; the main model
   and its mirror on the box where pose finds nobody), pasted into the mask on the 320-px work grid;
3. guided filter (``guided.py``): colour fast guided filter on the work grid;
4. temporal smoothing (``temporal.py``): motion-aware window of +-R frames over the filtered work grid;
5. full resolution (``guided.upsample_matte``): bilinear everywhere, the frame's own detail (a . I + b)
   in the uncertain band, contrast curve;
6. foreground colour (``fusion.py``): blur fusion in the uncertain band;
7. person-presence gate (``gate.py``): frames where nobody is found (with a hold of +-``gate_hold``
   frames) come out all background.

``best`` quality (:meth:`MatteConfig.best`) runs MODNet as the main model (no ensemble; the Selfie
ensemble is the gate's second opinion); ``fast`` (:meth:`MatteConfig.fast`) runs the Selfie ensemble
with MODNet at a low resolution on every 4th frame (``prior_model``) as the gate's second opinion, asked
only on the sampled frames whose answer can change a frame's decision (``_lazy_presence``: about one
frame in 8 with a person in view).

Context: the temporal window reads R frames each side and their crop boxes K more, so
``context_before = context_after = R + K`` (5 by default); frames beyond what is needed are ignored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from bgservice.matte._types import F32, U8, Bool, f32, resize
from bgservice.matte.config import MatteConfig
from bgservice.matte.crop import (
    Box,
    box_from_square,
    context_square,
    cut_square,
    merge_boxes,
    paste_crops,
    small_boxes,
    subject_boxes,
)
from bgservice.matte.fusion import estimate_foreground
from bgservice.matte.gate import apply_prior, hold, keep_prior_components, person_evidence
from bgservice.matte.guided import apply_coefficients, guided_coefficients, upsample_matte
from bgservice.matte.temporal import temporal_smooth
from bgservice.models import SegmentationModel, get_model
from bgservice.models.selfie import halve

REDUCED_LONG_SIDE = 480  # frames are halved for the model while their long side stays >= this
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


class FrameCache:
    """What the first pass found for single frames, kept for the shard next door.

    A shard's context frames are its neighbours' edge frames: without this cache every frame near a
    shard boundary goes through the models twice (10 of every 42 frames with 32-frame shards). The
    one-process engine gives one cache to all shards of a job; each :class:`Matter` stores, per video
    frame index, the reduced frame, the model mask and the work-grid guide of the frames near a shard's
    edges, and looks them up before computing. (The gate's answers were tried too: the neighbours'
    lazy gates never asked about the same frame on the talking-head clip.)
    Each entry depends on its frame alone, so the result is the same with or without the cache (bit for
    bit). Thread-safe; holds at most ``capacity`` frames (least recently used out).
    """

    def __init__(self, capacity: int = 48) -> None:
        self.capacity = max(1, capacity)
        self._frames: OrderedDict[tuple[int, int], tuple[U8, F32, F32]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # frames found (tests, benchmarks)

    def frames(self, keys: list[tuple[int, int]]) -> list[tuple[U8, F32, F32] | None]:
        with self._lock:
            out = [self._frames.get(k) for k in keys]
            for k, v in zip(keys, out, strict=True):
                if v is not None:
                    self._frames.move_to_end(k)
                    self.hits += 1
            return out

    def put_frame(self, key: tuple[int, int], value: tuple[U8, F32, F32]) -> None:
        with self._lock:
            self._frames[key] = value
            self._frames.move_to_end(key)
            while len(self._frames) > self.capacity:
                self._frames.popitem(last=False)


class Matter:
    """Alpha matte and foreground colour for consecutive frames, given context frames around them.

    ``context_before`` / ``context_after`` frames on each side are what the temporal window (and the
    crop boxes of the frames at its edges) need; given them, the result for a frame is the same wherever
    the video is cut into shards. At the start / end of a video fewer are given, the same as unsharded.
    ``partner``: the ensemble's second model (default: the other Selfie Segmentation variant loaded on
    the same device; none for models outside that pair). ``crop_model``: the crop pass's model (default:
    ``config.crop_model`` from the registry, same device).
    """

    def __init__(self, model: SegmentationModel, config: MatteConfig | None = None, *,
                 partner: SegmentationModel | None = None,
                 crop_model: SegmentationModel | None = None) -> None:
        self.model = model
        self.config = config if config is not None else MatteConfig()
        self.partner: SegmentationModel | None = None
        if self.config.ensemble:
            # the other Selfie Segmentation variant, on the same device, unless the caller gives one (a
            # model of another name gets no partner: the ensemble is then off)
            if partner is not None:
                self.partner = partner
            elif model.name in ENSEMBLE_PARTNER:
                self.partner = get_model(ENSEMBLE_PARTNER[model.name], getattr(model, "device", "auto"))
        cfg = self.config
        # the crop pass's model (config.crop_model on the main model's device), unless the caller gives one
        self.crop_model: SegmentationModel | None = None
        if cfg.crop_pass and cfg.crop_model:
            self.crop_model = crop_model or get_model(cfg.crop_model, getattr(model, "device", "auto"))
        device = getattr(model, "device", "auto")
        # fast mode's low-resolution matting prior
        self.prior: SegmentationModel | None = get_model(cfg.prior_model, device) if cfg.prior_model else None
        # the gate's second opinion: the prior (fast) or, for a main model outside the Selfie pair, the
        # Selfie ensemble (best); and MediaPipe Pose's presence score on the whole frame
        self.opinion: list[SegmentationModel] = []
        self.pose: SegmentationModel | None = None
        if cfg.gate:
            if self.prior is not None:
                self.opinion = [self.prior]
            elif model.name not in ENSEMBLE_PARTNER:
                self.opinion = [get_model(n, device) for n in ENSEMBLE_PARTNER]
            if self.opinion:
                self.pose = get_model("pose_full", device)
        # the temporal window reads R frames on each side; their crop boxes read K more; the gate's hold H
        ctx = (cfg.temporal_radius if cfg.temporal else 0) + (cfg.crop_window if cfg.crop_pass else 0)
        if self.opinion:
            ctx = max(ctx, cfg.gate_hold)
        if self.prior is not None and self._prior_borrowed:
            ctx += cfg.prior_every // 2  # the nearest sampled prior of the window's edge frames
        self.context_before = ctx
        self.context_after = ctx

    @property
    def quality(self) -> str:
        return self.config.quality

    @property
    def _prior_borrowed(self) -> bool:
        """:attr:`MatteConfig.prior_borrowed` (a property, so that a test can take the eager gate's path)."""
        return self.config.prior_borrowed

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

    def _segment_crop(self, frame: U8, box: Box) -> F32 | None:
        """Person probability over ``box`` of ``frame``: the crop model on a square around it, cut back to
        the box; without a crop model, or where it finds nobody (an all-zero mask: pose_full presence < 0.9),
        the main model on the box itself, averaged with its mirror -- only for a box under
        ``crop_max_fraction`` of the frame (else None: the first pass stays)."""
        cfg = self.config
        if self.crop_model is not None:
            square = context_square(box, cfg.crop_context)
            found = f32(self.crop_model.predict(cut_square(frame, square)[None]))[0]
            if float(found.max()) >= 0.5:
                return box_from_square(found, square, box)
        if box.area >= cfg.crop_max_fraction * frame.shape[0] * frame.shape[1]:
            return None
        batch = np.ascontiguousarray(frame[box.y0:box.y1, box.x0:box.x1])[None]
        mask: F32 = f32(self.model.predict(batch))[0]
        if self.config.crop_flip:
            mirrored = f32(self.model.predict(np.ascontiguousarray(batch[:, :, ::-1])))[0]
            mask += mirrored[:, ::-1]
            mask *= np.float32(0.5)
        return mask

    def _opinion(self, frames: U8) -> F32 | None:
        """The gate's second opinion [N,h,w] (the prior at its low resolution, or the Selfie ensemble)."""
        if not self.opinion:
            return None
        if self.prior is not None:
            return self._prior(frames)
        first = f32(self.opinion[0].predict(frames))
        h, w = first.shape[1:]
        for other in self.opinion[1:]:
            o = other.predict(frames)
            for i in range(first.shape[0]):
                first[i] *= resize(f32(o[i]), w, h)
        np.sqrt(first, out=first)
        return first

    def _prior(self, frames: U8) -> F32:
        assert self.prior is not None
        at = getattr(self.prior, "predict_at", None)
        return f32(at(frames, self.config.prior_short_side) if at else self.prior.predict(frames))

    def _seconds(self, reduced: list[U8], first_index: int | None
                 ) -> tuple[list[F32 | None], list[Bool | None]]:
        """The gate's second opinion (and fast mode's prior) for each part's reduced frames, and which
        frames it was computed on (the gate judges only those; its hold covers the others).

        The prior runs on the frames whose index in the video is a multiple of ``prior_every`` (every
        frame when ``first_index`` -- the video index of the first frame given -- is unknown); every
        other frame borrows the nearest such frame's (earlier one on a tie), which lies within the
        context frames, so the result does not depend on where the video is cut.
        """
        if not self.opinion:
            return [None] * len(reduced), [None] * len(reduced)
        if self.prior is None:
            return [self._opinion(r) for r in reduced], [None] * len(reduced)
        k = self.config.prior_every
        if first_index is None or k <= 1:
            return [self._prior(r) for r in reduced], [None] * len(reduced)
        total = sum(len(r) for r in reduced)
        frames = np.concatenate(reduced) if len(reduced) > 1 else reduced[0]
        sampled = [j for j in range(total) if (first_index + j) % k == 0] or [0]
        priors = self._prior(np.ascontiguousarray(frames[sampled]))
        near = np.searchsorted(np.asarray(sampled), np.arange(total))  # first sampled >= j
        out: list[F32 | None] = []
        exact: list[Bool | None] = []
        start = 0
        for r in reduced:
            part = np.empty((len(r), *priors.shape[1:]), np.float32)
            exact.append(np.array([(first_index + start + i) % k == 0 for i in range(len(r))], np.bool_))
            for i in range(len(r)):
                j = start + i
                hi = min(int(near[j]), len(sampled) - 1)
                lo = max(hi - 1, 0)
                pick = lo if abs(sampled[lo] - j) <= abs(sampled[hi] - j) else hi
                part[i] = priors[pick]
            out.append(part)
            start += len(r)
        return out, exact

    def _judge(self, low: F32, second: F32, reduced: U8, judged: Bool | None = None) -> Bool:
        """The gate's per-frame evidence of a person (frames not ``judged`` say no): the second opinion
        agrees with the mask, or (where it does not) pose finds a person (it costs ~10 ms a frame)."""
        cfg = self.config
        judged = np.ones(len(low), np.bool_) if judged is None else judged
        evidence = np.array([judged[i] and person_evidence(low[i], second[i], min_area=cfg.gate_min_area,
                                                           agreement=cfg.gate_agreement)
                             for i in range(len(low))], np.bool_)
        if self.pose is not None and not evidence[judged].all():
            unsure = np.flatnonzero(~evidence & judged)
            _, presence = self.pose.logits(np.ascontiguousarray(reduced[unsure]))  # type: ignore[attr-defined]
            evidence[unsure] = presence >= cfg.gate_pose
        return evidence

    def _evidence(self, low: F32, reduced: U8) -> Bool:
        """:meth:`_judge` of these frames (first-pass masks, reduced frames), asking the prior."""
        return self._judge(low, self._prior(np.ascontiguousarray(reduced)), reduced)

    def _lazy_presence(self, low: F32, reduced: U8, first_index: int, kb: int, n: int) -> Bool:
        """Whether each output frame ``kb .. kb+n-1`` (of the ``low`` frames) holds a person: the same
        decision as evidence on every frame whose video index is a multiple of ``prior_every`` followed
        by :func:`hold` (present when any such frame within +-``gate_hold`` shows a person), but asked
        only where the answer can change a decision. Rounds: the fewest sampled frames that cover every
        undecided output frame, in one batch; an output frame is decided once one of its
        sampled frames shows a person, or all of them have been asked and none does. With a person in
        view this asks about one frame in 8 (the windows are 2 * gate_hold + 1 wide) instead of one in
        ``prior_every``."""
        cfg = self.config
        k, radius, total = cfg.prior_every, cfg.gate_hold, low.shape[0]
        candidates = [j for j in range(total) if (first_index + j) % k == 0]
        window = {t: [j for j in candidates if abs(j - t) <= radius] for t in range(kb, kb + n)}
        answer: dict[int, bool] = {}
        present = np.zeros(total, np.bool_)  # indexed like ``low``; only the output frames are decided
        undecided = set(window)
        while undecided:
            # the fewest sampled frames not asked yet that cover every undecided frame whose window still
            # has one (points covering intervals: from the earliest such frame, the latest sampled frame
            # that reaches it)
            pick: list[int] = []
            reach = -1  # undecided frames up to here are covered by a picked frame
            for t in sorted(undecided):
                if t <= reach:
                    continue
                open_ = [j for j in window[t] if j not in answer]
                if open_:
                    pick.append(max(open_))
                    reach = max(open_) + radius
            if pick:
                for j, ev in zip(pick, self._evidence(low[pick], reduced[pick]), strict=True):
                    answer[j] = bool(ev)
            for t in list(undecided):
                if any(answer.get(j, False) for j in window[t]):
                    present[t] = True
                    undecided.discard(t)
                elif all(j in answer for j in window[t]):
                    undecided.discard(t)
            if not pick:  # nothing left to ask: the rest have no sampled frame showing a person
                break
        return present

    def _first_pass(self, frames: U8, reduced: U8, geo: Geometry, second: F32 | None,
                    exact: Bool | None = None) -> tuple[F32, F32, F32 | None]:
        """For consecutive frames: the model's masks at its own resolution [M,mh,mw] and the frames on the
        work grid, RGB float32 0..1 [M,h,w,3].

        The model is fed the frame halved (area average) while the long side stays >= REDUCED_LONG_SIDE:
        halving is ~10x cheaper than one area resize by a non-integer factor, and the model (256 px)
        cannot tell the difference. Crops for the second pass are cut from the full frame.
        """
        low = self._segment(reduced)
        evidence = None
        if second is not None:
            evidence = self._judge(low, second, reduced, exact).astype(np.float32)
        if self.prior is not None and second is not None and self.config.prior_components:
            for i in range(low.shape[0]):
                keep_prior_components(low[i], second[i], self.config.prior_min_area)
        if self.prior is not None and second is not None and self.config.prior_mask:
            for i in range(low.shape[0]):
                apply_prior(low[i], second[i], self.config.prior_threshold, self.config.prior_grow,
                            self.config.prior_min_area)
        guides = np.empty((frames.shape[0], geo.work_h, geo.work_w, 3), np.float32)
        for i in range(frames.shape[0]):
            if reduced.shape[1:3] != (geo.work_h, geo.work_w):
                guides[i] = cv2.resize(reduced[i], (geo.work_w, geo.work_h), interpolation=cv2.INTER_AREA)
            else:
                guides[i] = reduced[i]
        guides *= np.float32(1.0 / 255.0)
        return low, guides, evidence

    def _first_passes_judged(self, parts: list[U8], geo: Geometry, first_index: int | None
                             ) -> tuple[F32, F32, Bool]:
        """Masks and guides of every frame of ``parts`` (concatenated) with the gate's second opinion
        asked per part (the eager gate), and which frames hold a person after the hold."""
        reduced = [_halve_until(p, REDUCED_LONG_SIDE) for p in parts]
        seconds, exact = self._seconds(reduced, first_index)
        firsts = [self._first_pass(p, r, geo, s, e)
                  for p, r, s, e in zip(parts, reduced, seconds, exact, strict=True)]
        del seconds
        low = np.concatenate([x[0] for x in firsts])
        guides = np.concatenate([x[1] for x in firsts])
        evidence = np.concatenate([x[2] for x in firsts if x[2] is not None])
        return low, guides, hold(evidence > 0, self.config.gate_hold)

    def _first_passes(self, parts: list[U8], geo: Geometry, first_index: int, edge: int,
                      cache: FrameCache | None) -> tuple[U8, F32, F32]:
        """What :meth:`_first_pass` gives without a second opinion -- reduced frames, masks and guides of
        every frame of ``parts``, concatenated: each depends on its frame alone -- taking what ``cache``
        holds (if given) and storing there the frames within ``edge`` of either end (what the
        neighbouring shards read as context). ``first_index``: the video index of the first frame."""
        total = sum(len(p) for p in parts)
        keys = [(id(self), first_index + j) for j in range(total)]
        entries: list[tuple[U8, F32, F32] | None] = [None] * total
        if cache is not None:
            entries = cache.frames(keys)
        offset = 0
        for p in parts:
            j = 0
            while j < len(p):
                if entries[offset + j] is not None:
                    j += 1
                    continue
                a = j
                while j < len(p) and entries[offset + j] is None:
                    j += 1
                red = _halve_until(p[a:j], REDUCED_LONG_SIDE)
                low, guides, _ = self._first_pass(p[a:j], red, geo, None)
                for i in range(j - a):
                    pos = offset + a + i
                    entries[pos] = (red[i], low[i], guides[i])
                    if cache is not None and (pos < edge or pos >= total - edge):
                        # copies: a view would keep the whole batch alive in the cache
                        cache.put_frame(keys[pos], (red[i].copy(), low[i].copy(), guides[i].copy()))
            offset += len(p)
        done = [e for e in entries if e is not None]
        assert len(done) == total
        return (np.stack([e[0] for e in done]), np.stack([e[1] for e in done]),
                np.stack([e[2] for e in done]))

    # --- the shard --------------------------------------------------------------------------------------

    def __call__(self, frames: U8, before: U8, after: U8, start: int | None = None, *,
                 alpha_out: F32 | None = None, fg_out: U8 | None = None,
                 cache: FrameCache | None = None) -> tuple[F32, U8]:
        """Alpha [N,H,W] and foreground colour [N,H,W,3] of ``frames``, with context frames around them.
        ``start``: the video index of ``frames[0]`` (the shard's start), which fast mode's sparse prior
        needs to sample the same frames however the video is cut; without it the prior runs on every
        frame. ``alpha_out`` / ``fg_out``: where to write them (float32 [N,H,W] / uint8 [N,H,W,3]);
        ``fg_out`` may be ``frames`` itself (each frame is read before its band is overwritten) when the
        caller no longer needs the frames: a fresh 1080p buffer costs more in page faults than the maths
        that fills it. ``cache``: one :class:`FrameCache` shared by the shards of one video (needs
        ``start``; used where the first pass has no second opinion: fast mode's lazy gate, no gate)."""
        cfg = self.config
        n, h, w = frames.shape[:3]
        geo = Geometry.of(h, w, cfg.work_long_side)
        r = cfg.temporal_radius if cfg.temporal else 0
        k = cfg.crop_window if cfg.crop_pass else 0
        kb = min(len(before), self.context_before)
        ka = min(len(after), self.context_after)
        parts = [p for p in (before[len(before) - kb:], frames, after[:ka]) if len(p)]
        # fast mode with the prior as the gate's opinion only: the gate asks the prior (and pose) only on
        # the sampled frames whose answer can change an output frame's decision (see _lazy_presence)
        lazy = (self.prior is not None and start is not None and cfg.prior_every > 1
                and not self._prior_borrowed)
        present: Bool | None
        if lazy or not self.opinion:  # no second opinion in the first pass: per frame, cacheable
            first_index = (start or 0) - kb
            reduced, low, guides = self._first_passes(
                parts, geo, first_index, self.context_before + self.context_after,
                cache if start is not None else None)
            present = self._lazy_presence(low, reduced, first_index, kb, n) if lazy else None
            del reduced
        else:
            first = None if start is None else start - kb
            low, guides, present = self._first_passes_judged(parts, geo, first)
        total = low.shape[0]
        # frames whose matte the temporal window of the output frames reads
        lo, hi = max(0, kb - r), min(total, kb + n + r)

        def frame_at(j: int) -> U8:
            for p in parts:
                if j < len(p):
                    one: U8 = p[j]
                    return one
                j -= len(p)
            raise IndexError(j)

        # 0. model masks on the work grid; second pass on crops around small subjects, boxed from the
        #    first-pass masks of frames j-K..j+K (a frame where the model lost an arm or a head still gets
        #    a crop that contains it)
        masks = np.empty((total, geo.work_h, geo.work_w), np.float32)
        boxes = [subject_boxes(low[j], (h, w), margin=cfg.crop_margin, threshold=cfg.crop_threshold,
                               aspect=cfg.crop_aspect) if cfg.crop_pass else [] for j in range(total)]
        for j in range(lo, hi):
            masks[j] = cv2.resize(low[j], (geo.work_w, geo.work_h), interpolation=cv2.INTER_LINEAR)
            near = [b for jj in range(max(0, j - k), min(total, j + k + 1)) for b in boxes[jj]]
            max_fraction = max(cfg.crop_max_fraction, cfg.crop_model_max_fraction if self.crop_model else 0.0)
            crops_at = small_boxes(merge_boxes(near), (h, w), max_fraction)
            if crops_at:
                frame = frame_at(j)
                found = [(b, self._segment_crop(frame, b)) for b in crops_at]
                kept = [(b, m) for b, m in found if m is not None]
                paste_crops(masks[j], (h, w), [b for b, _ in kept], [m for _, m in kept])

        # 1. edge-aware filter of every mask on the work grid (context frames too: the window needs them)
        radius = max(1, round(cfg.guided_radius * geo.work_w / low.shape[2]))
        coeffs: list[tuple[F32, F32] | None] = [None] * len(masks)
        filtered = masks
        if cfg.guided:
            filtered = np.empty_like(masks)
            for t in range(lo, hi):
                ab = guided_coefficients(guides[t], masks[t], radius, cfg.guided_eps)
                coeffs[t] = ab
                filtered[t] = apply_coefficients(ab[0], ab[1], guides[t])

        alpha = alpha_out if alpha_out is not None else np.empty((n, h, w), np.float32)
        if alpha.shape != (n, h, w) or alpha.dtype != np.float32:
            raise ValueError(f"alpha_out {alpha.shape} {alpha.dtype} does not match frames {frames.shape}")
        fg = frames
        if cfg.fusion and fg_out is not frames:
            fg = fg_out if fg_out is not None else np.empty_like(frames)
            if fg.shape != frames.shape or fg.dtype != np.uint8:
                raise ValueError(f"fg_out {fg.shape} {fg.dtype} does not match frames {frames.shape}")
            np.copyto(fg, frames)
        for i in range(n):
            t = kb + i
            if present is not None and not present[t]:
                # 5. nobody in this frame (nor within +-gate_hold frames): all background
                alpha[i] = 0.0
                continue
            # 2. temporal smoothing over the window t-R..t+R (motion-aware weights)
            if cfg.temporal:
                q_smooth = temporal_smooth(filtered, t, cfg.temporal_radius, cfg.temporal_sigma_mask)
                q_raw: F32 | None = filtered[t]
            else:
                q_smooth, q_raw = filtered[t], None
            # 3. full resolution: bilinear, plus this frame's guided-filter detail in the uncertain band
            band, small = upsample_matte(q_smooth, q_raw, coeffs[t], frames[i], alpha[i], gain=cfg.sharpen,
                                         snap=cfg.snap, center=cfg.sharpen_center, detail=cfg.detail)
            # 4. foreground colour where the matte is uncertain
            if cfg.fusion:
                estimate_foreground(frames[i], alpha[i], fg[i], band, guides[t], small, scale=geo.scale)
        return alpha, fg


def _halve_until(frames: U8, long_side: int) -> U8:
    """Frames halved (2x2 area average) as long as the long side stays >= ``long_side``."""
    out = frames
    while max(out.shape[1:3]) // 2 >= long_side:
        h, w = out.shape[1] // 2, out.shape[2] // 2
        nxt = np.empty((out.shape[0], h, w, 3), np.uint8)
        for i in range(out.shape[0]):
            halve(out[i], nxt[i])
        out = nxt
    return out
