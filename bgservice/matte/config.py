"""Switches and knobs of the matte refinement (each step can be turned off for the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass, replace

QUALITIES = ("fast", "best")


@dataclass(frozen=True)
class MatteConfig:
    """What :class:`bgservice.matte.Matter` does after the model.

    The defaults are the product, tuned on the benchmark's clips (see benchmarks/RESULTS.md). The
    benchmark (``benchmarks/quality.py``) switches steps off one at a time to show what each buys; with
    every switch off (:meth:`raw`) the matte is the model's mask upsampled bilinearly.
    """

    # the low-resolution grid (long side, pixels) where masks are filtered and smoothed
    work_long_side: int = 320
    # edge-aware upsampling (fast guided filter guided by the frame)
    guided: bool = True
    guided_radius: float = 3.0  # box radius, in the model's output pixels (scaled to the work grid)
    guided_eps: float = 3e-4  # regularisation (guide in 0..1 units, squared)
    sharpen: float = 2.0  # contrast gain applied after the guided filter (1 = none) ...
    sharpen_center: float = 0.5  # ... around this level (mapped to 0.5)
    detail: float = 0.3  # weight of the frame's full-resolution detail added to the smoothed matte
    # temporal smoothing of the work-grid mattes over a finite window of neighbour frames
    temporal: bool = True
    temporal_radius: int = 4  # frames on each side -> Matter.context_before / context_after
    temporal_sigma_mask: float = 0.6  # neighbour weight falls off with the mask change (motion guard)
    # blur-fusion foreground colour estimation (Forte & Pitie 2021), only where 0 < alpha < 1
    fusion: bool = True
    # second model pass on a crop around small subjects
    crop_pass: bool = True
    crop_max_fraction: float = 0.5  # crop pass when a subject's box is under this share of the frame
    crop_margin: float = 0.15  # box enlarged by this share of its size on each side
    crop_threshold: float = 0.1  # mask level that defines a subject's component (low: keep faint limbs)
    crop_aspect: float = 0.75  # each side at least this share of the other (the model squeezes to square)
    crop_window: int = 1  # a frame's crop box covers the subject's boxes in frames t-K..t+K
    # the crop pass's model: "pose_full" (MediaPipe Pose's person segmentation, trained on whole bodies) sees
    # a square of ``crop_context`` x the box's long side centred on the box (black beyond the frame, as
    # MediaPipe's pose ROI), its mask is cut back to the box; where it finds nobody (pose presence < 0.9),
    # or with "", the main model runs on the box itself (boxes under crop_max_fraction only)
    crop_model: str = "pose_full"
    crop_context: float = 1.3
    crop_model_max_fraction: float = 0.8  # the crop model also runs on boxes up to this share of the frame
    # main model on crops: averaged with its mirrored run (the landscape partner distorts portrait crops)
    crop_flip: bool = True
    # ensemble: geometric mean with the other Selfie Segmentation variant (general <-> landscape): a pixel
    # is a person only where both models agree, which removes most false positives on busy backgrounds
    ensemble: bool = True
    # alpha within ``snap`` of 0 / 1 becomes exactly 0 / 1 (keeps the uncertain band, and the work, small)
    snap: float = 1.0 / 255.0
    # prior (fast mode): MODNet at a low resolution multiplies the first-pass mask, after its person mask
    # (> prior_threshold) is grown by prior_grow x the model grid's diagonal and feathered: what the
    # matting model calls background far from the person (a cup behind the head) stops being "person"
    prior_model: str = ""
    prior_short_side: int = 192  # 128 misses parts of the head on busy photos (tuning set)
    prior_threshold: float = 0.3
    prior_grow: float = 0.03
    prior_min_area: float = 0.02
    # the prior is sampled on every 4th frame of the video (the others use the nearest one); as the gate's
    # opinion only, it is asked on the sampled frames whose answer can change a decision (Matter)
    prior_every: int = 4
    # multiply the mask by the prior (False: the prior is only the gate's second opinion). Off: on the
    # tuning set it changed nothing on the talking heads, did not remove a cup behind the head (MODNet
    # mattes it too) and cost the DAVIS dancer 0.808 -> 0.795 IoU
    prior_mask: bool = False
    # drop the mask's connected parts the prior's person does not touch (another person in the footage)
    prior_components: bool = False
    # person-presence gate: a frame is "nobody there" (all background) when the main mask and a second
    # opinion (fast: the prior; best: the Selfie ensemble) disagree -- under gate_agreement of either's
    # > 0.5 mask inside the other's while their union covers >= gate_min_area of the frame -- and
    # MediaPipe Pose's presence score on the whole frame is under gate_pose. Hysteresis: a frame stays
    # "person" while any frame within +-gate_hold of it is one (a person briefly occluded does not blink
    # out); gate_hold is within the context frames, so the decision does not depend on where the video is
    # cut.
    gate: bool = True
    gate_agreement: float = 0.3
    gate_min_area: float = 0.01
    gate_pose: float = 0.98  # 0.9 let a motorcycle photo through (pose presence 0.96; people: 0.99+)
    gate_hold: int = 5
    # the quality this configuration belongs to (recorded in the job's result)
    quality: str = "fast"

    @property
    def prior_borrowed(self) -> bool:
        """Whether frames other than the prior's sampled ones use it (it multiplies the mask or drops its
        components): they then need the nearest sampled frame as context. Else the prior is only the
        gate's opinion on its sampled frames, all within the gate's hold."""
        return self.prior_mask or self.prior_components

    @classmethod
    def raw(cls) -> MatteConfig:
        """The baseline: the model's mask upsampled bilinearly, nothing else."""
        return cls(guided=False, temporal=False, fusion=False, crop_pass=False, ensemble=False,
                   sharpen=1.0, snap=0.0, gate=False)

    @classmethod
    def fast(cls) -> MatteConfig:
        """``fast``: MediaPipe Selfie (+ landscape ensemble, pose crop pass); MODNet at short side 192 on
        every 4th frame is the person gate's second opinion."""
        return cls(prior_model="modnet")

    @classmethod
    def best(cls) -> MatteConfig:
        """``best``: MODNet with the refinement re-tuned for it on the tuning set (benchmarks/RESULTS.md):
        guided filter, contrast and temporal window kept (each pays on the talking heads), no ensemble;
        the crop pass for small subjects runs MediaPipe Pose on the crop (DAVIS IoU 0.804; MODNet on the
        crop 0.550, no crop pass 0.694)."""
        return replace(cls(), quality="best", ensemble=False)

    @classmethod
    def for_quality(cls, quality: str) -> MatteConfig:
        if quality == "fast":
            return cls.fast()
        if quality == "best":
            return cls.best()
        raise ValueError(f"unknown quality {quality!r}; expected one of {', '.join(QUALITIES)}")
