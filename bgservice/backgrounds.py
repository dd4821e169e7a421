"""What a job composites over: white, a solid colour, an image (stretched, covering or contained), a
looped background video (decoded streaming), or the frame's own background blurred -- or nothing, for the
transparent and matte outputs (:class:`Backdrop`)."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bgservice.errors import (
    DecodeFailed,
    InvalidBackgroundImage,
    InvalidBackgroundVideo,
    InvalidInput,
    InvalidTrim,
)
from bgservice.media.decode import FrameReader
from bgservice.media.probe import probe
from bgservice.media.timing import frame_times
from bgservice.media.types import TrimWindow, VideoInfo
from bgservice.settings import Settings
from bgservice.spec import Background, Fit, JobSpec, Render, blur_sigma
from bgservice.storage import local_input

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


def decode_image(path: str) -> np.ndarray:
    """Read a JPEG/PNG/WebP as RGB uint8: EXIF orientation applied, transparency flattened over white."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format not in SUPPORTED_FORMATS:
                    raise InvalidBackgroundImage(
                        f"background image must be JPEG, PNG or WebP, got {img.format or 'unknown'}"
                    )
                img.load()
                oriented = ImageOps.exif_transpose(img)
                has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                    oriented.mode == "P" and "transparency" in oriented.info
                )
                if has_alpha:
                    rgba = oriented.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(white, rgba).convert("RGB")
                else:
                    rgb = oriented.convert("RGB")
                return np.asarray(rgb, dtype=np.uint8)
    except InvalidBackgroundImage:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        SyntaxError,
    ) as exc:
        raise InvalidBackgroundImage(f"background image cannot be read: {exc}") from exc


def stretch(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to exactly ``width`` x ``height`` (aspect not kept: the product stretches to the frame)."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    shrinking = image.shape[1] * image.shape[0] > width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def fit_image(
    image: np.ndarray,
    width: int,
    height: int,
    fit: Fit = "stretch",
    *,
    src_sar: Fraction = Fraction(1),
    dst_sar: Fraction = Fraction(1),
) -> np.ndarray:
    """``image`` (uint8 [h,w,3]) as a ``width`` x ``height`` plate.

    ``stretch``: resized to the frame (aspect not kept: the seed's behaviour); ``cover``: scaled to fill
    the frame, the overflow cropped, centred; ``contain``: scaled to fit whole, centred, black bars.
    Shapes are kept as displayed: ``src_sar`` / ``dst_sar`` are the pixel aspect ratios of the image
    (a background video's) and of the output (an anamorphic output keeps its SAR)."""
    if fit == "stretch":
        return stretch(image, width, height)
    ih, iw = image.shape[:2]
    src_w, src_h = iw * float(src_sar), float(ih)  # display units
    dst_w, dst_h = width * float(dst_sar), float(height)
    if fit == "cover":
        s = max(dst_w / src_w, dst_h / src_h)
        crop_w = min(iw, max(1, round(dst_w / s / float(src_sar))))
        crop_h = min(ih, max(1, round(dst_h / s)))
        x0, y0 = (iw - crop_w) // 2, (ih - crop_h) // 2
        return stretch(image[y0 : y0 + crop_h, x0 : x0 + crop_w], width, height)
    if fit == "contain":
        s = min(dst_w / src_w, dst_h / src_h)
        in_w = min(width, max(1, round(src_w * s / float(dst_sar))))
        in_h = min(height, max(1, round(src_h * s)))
        plate = np.zeros((height, width, 3), np.uint8)
        x0, y0 = (width - in_w) // 2, (height - in_h) // 2
        plate[y0 : y0 + in_h, x0 : x0 + in_w] = stretch(image, in_w, in_h)
        return plate
    raise ValueError(f"unknown fit {fit!r}")


def load_plate(
    background: Background,
    width: int,
    height: int,
    settings: Settings,
    *,
    sar: Fraction = Fraction(1),
    untrusted: bool = False,
    resolve_asset: Callable[[str], str] | None = None,
) -> np.ndarray:
    """uint8 [height, width, 3] RGB plate for the job's background (white for blur/video: unused).
    ``untrusted``: a stranger's job (the image URL goes through the safe fetcher's rules;
    ``resolve_asset`` maps asset ids to storage)."""
    if background.kind != "image" or background.image_url is None:
        plate = np.empty((height, width, 3), dtype=np.uint8)
        plate[:] = background.colour
        return plate
    with local_input(
        background.image_url,
        settings,
        max_bytes=settings.max_background_image_bytes,
        limit_name="BGSERVICE_MAX_BACKGROUND_IMAGE_BYTES",
        error=InvalidBackgroundImage,
        what="background image",
        service="image" if untrusted else None,
        field="imageUrl",
        resolve_asset=resolve_asset,
    ) as path:
        image = decode_image(path)
    return fit_image(image, width, height, background.fit, dst_sar=sar)


@dataclass(frozen=True)
class Backdrop:
    """What a job's frames become, for the stage that composites (pickled to every Segmenter).

    ``render``: ``composite`` over ``plate`` (or over per-frame plates that come with each shard:
    ``Shard.background``, a video background), over each frame's own background blurred
    (``blur_sigma`` > 0), ``transparent`` (RGBA) or ``matte`` (the alpha alone)."""

    render: Render = "composite"
    plate: np.ndarray | None = None  # uint8 [H,W,3]; None for per-frame plates, blur, transparent, matte
    blur_sigma: float = 0.0


class BackgroundVideo:
    """A background video's frames at the output's times: looped when shorter (frame at ``t mod its
    duration``), cut when longer, fitted to the output size, audio ignored.

    Streaming: one decoder, a few frames of the background at a time (memory flat in either video's
    length); times must increase except where the loop restarts it. Undecodable ->
    InvalidBackgroundVideo."""

    def __init__(
        self, path: str, width: int, height: int, fit: Fit, settings: Settings, *, sar: Fraction = Fraction(1)
    ) -> None:
        self._path, self._width, self._height, self._fit, self._sar = path, width, height, fit, sar
        try:
            self.info = probe(path, settings)
            times = frame_times(path)
        except (InvalidInput, DecodeFailed) as exc:
            raise InvalidBackgroundVideo(f"the background video cannot be decoded: {exc.message}") from exc
        self._time_base = times.time_base
        self._rel = times.rel.astype(np.int64)
        self._period = max(1, times.duration_units)  # the loop, in the background's time base
        self._window = TrimWindow(0.0, self.info.duration, True)
        self._reader: FrameReader | None = None
        self._frames: Iterator[np.ndarray] | None = None
        self._index = -1  # the background frame decoded last
        self._fitted: np.ndarray | None = None
        self._fitted_index = -1

    @property
    def duration(self) -> Fraction:
        """The loop's length in seconds (the last frame's end)."""
        return self._period * self._time_base

    def index_at(self, seconds: Fraction) -> int:
        """The background frame shown at output time ``seconds``: the last one starting at or before
        ``seconds mod duration``."""
        units = (Fraction(seconds) / self._time_base) % self._period
        return max(0, int(np.searchsorted(self._rel, math.floor(units), side="right")) - 1)

    def _restart(self) -> None:
        self.close()
        try:
            self._reader = FrameReader(self._path, self.info, self._window)
        except (InvalidInput, DecodeFailed, InvalidTrim) as exc:
            raise InvalidBackgroundVideo(f"the background video cannot be decoded: {exc.message}") from exc
        self._frames = (f for shard in self._reader.shards(4) for f in shard.frames)
        self._index = -1

    def _advance_to(self, index: int) -> np.ndarray:
        if self._fitted is not None and index == self._fitted_index:
            return self._fitted
        if self._frames is None or index < self._index:
            self._restart()
        assert self._frames is not None
        frame: np.ndarray | None = None
        try:
            while self._index < index:
                frame = next(self._frames)
                self._index += 1
        except StopIteration:
            raise InvalidBackgroundVideo("the background video ended before its announced frames") from None
        except DecodeFailed as exc:
            raise InvalidBackgroundVideo(f"the background video cannot be decoded: {exc.message}") from exc
        assert frame is not None
        self._fitted = fit_image(
            frame,
            self._width,
            self._height,
            self._fit,
            src_sar=self.info.sample_aspect_ratio,
            dst_sar=self._sar,
        )
        self._fitted_index = index
        return self._fitted

    def frames_for(self, pts: np.ndarray, time_base: Fraction) -> np.ndarray:
        """uint8 [N,H,W,3]: the background for output frames at ``pts`` (``time_base`` units, 0 = the
        output's first frame)."""
        out = np.empty((len(pts), self._height, self._width, 3), np.uint8)
        for i, p in enumerate(pts):
            out[i] = self._advance_to(self.index_at(int(p) * time_base))
        return out

    def close(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None and hasattr(frames, "close"):
            frames.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


@contextlib.contextmanager
def open_backdrop(
    spec: JobSpec, info: VideoInfo, settings: Settings
) -> Iterator[tuple[Backdrop, BackgroundVideo | None]]:
    """The job's :class:`Backdrop` and, for a video background, its open :class:`BackgroundVideo` (the
    caller sets ``shard.background = video.frames_for(shard.pts, info.time_base)`` on every shard)."""
    bg = spec.background
    w, h, sar = info.out_width, info.out_height, info.sample_aspect_ratio
    render = spec.render
    if render != "composite":
        yield Backdrop(render=render), None
        return
    if bg.kind == "blur" and bg.blur is not None:
        yield Backdrop(blur_sigma=blur_sigma(bg.blur, h)), None
        return
    if bg.kind != "video" or bg.video_url is None:
        plate = load_plate(
            bg, w, h, settings, sar=sar, untrusted=spec.untrusted, resolve_asset=spec.resolve_asset
        )
        yield Backdrop(plate=plate), None
        return
    with local_input(
        bg.video_url,
        settings,
        error=InvalidBackgroundVideo,
        what="background video",
        service="video" if spec.untrusted else None,
        field="backgroundVideoUrl",
        resolve_asset=spec.resolve_asset,
    ) as path:
        video = BackgroundVideo(path, w, h, bg.fit, settings, sar=sar)
        try:
            yield Backdrop(), video
        finally:
            video.close()
